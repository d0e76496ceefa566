"""The language-modelling objective, shared by the trainer, evaluation and benchmarks.

One definition (`cross_entropy_reference`) and the paths that compute it fast, all in float32:
- float32 logits, or inside torch.compile: torch's fused `F.cross_entropy` (the compiler fuses
  the upcast into its kernels, so a bf16 (B, T, V) tensor is never copied to float32 in memory);
- bf16 / fp16 logits in eager mode: `ChunkedCrossEntropy`, which upcasts a slice of rows at a
  time and computes the gradient during the forward pass. The plain path would hold a float32
  copy of the logits, their float32 log-probabilities for backward and a float32 gradient: three
  times the size of bf16 logits twice over (~10 GB at GPT-2's vocabulary, batch 16 x 1024).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

CHUNK_ELEMENTS = 2**24  # float32 elements per slice of rows: 64 MB, whatever the vocabulary


def cross_entropy_reference(logits: Tensor, targets: Tensor) -> Tensor:
    """The definition: minus the log of the probability the model gave each target token,
    averaged over the positions whose target is not -100. logits: (B, T, V), targets: (B, T)."""
    log_probs = logits.float().log_softmax(dim=-1)  # (B, T, V): log softmax over the vocabulary
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    keep = targets != -100
    return -(picked * keep).sum() / keep.sum()


def cross_entropy_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean next-token cross-entropy in float32 (also under bf16 autocast): a fast path for
    `cross_entropy_reference` (see the module docstring for which one runs).

    logits: (B, T, V), targets: (B, T) with -100 marking positions to ignore.
    """
    flat, flat_targets = logits.flatten(0, 1), targets.flatten()  # (B*T, V), (B*T,)
    if logits.dtype == torch.float32 or torch.compiler.is_compiling():
        return F.cross_entropy(flat.float(), flat_targets, ignore_index=-100)
    return ChunkedCrossEntropy.apply(flat, flat_targets)


class ChunkedCrossEntropy(torch.autograd.Function):
    """Cross-entropy of low-precision logits (N, V) in float32, one slice of rows at a time.

    d loss / d logits = (softmax(logits) - onehot(target)) / count, so the forward pass computes
    softmax - onehot slice by slice (in float32, stored in the logits' dtype) and the backward
    pass only scales it. Peak memory: the gradient in the logits' dtype plus one float32 slice.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, targets: Tensor) -> Tensor:
        """logits: (N, V) bf16/fp16, targets: (N,) ids, -100 = ignore -> the mean loss, float32 ()."""
        keep = targets != -100  # (N,)
        safe = targets.clamp(min=0)[:, None]  # (N, 1): a valid index also where ignored
        grad = torch.empty_like(logits) if ctx.needs_input_grad[0] else None  # (N, V)
        rows = max(1, CHUNK_ELEMENTS // logits.size(1))
        picked = []
        for start in range(0, logits.size(0), rows):
            log_probs = logits[start:start + rows].float().log_softmax(dim=-1)  # (n, V) float32
            picked.append(log_probs.gather(-1, safe[start:start + rows]).squeeze(-1))  # (n,)
            if grad is not None:
                probs = log_probs.exp_()  # softmax, in place
                probs.scatter_add_(-1, safe[start:start + rows], probs.new_full((probs.size(0), 1), -1.0))
                grad[start:start + rows] = probs  # softmax - onehot
        count = keep.sum()
        if grad is not None:
            grad.mul_(keep[:, None])  # ignored rows contribute nothing
            ctx.save_for_backward(grad, count)
        return -(torch.cat(picked) * keep).sum() / count

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        grad, count = ctx.saved_tensors
        return grad * (grad_output / count), None


class NextTokenLoss(nn.Module):
    """A model and its loss as one module, (x, y) -> mean loss: what training runs (and compiles,
    so the compiler sees the logits and the loss together and fuses them)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """x, y: (B, T) inputs and targets -> the mean loss, float32 ()."""
        return cross_entropy_loss(self.model(x), y)


@torch.no_grad()
def mean_loss(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]],
              autocast_ctx: contextlib.AbstractContextManager | None = None) -> tuple[float, int]:
    """(mean loss per predicted token, number of predicted tokens) over (x, y) batches of
    (B, T) ids, each batch's forward under `autocast_ctx`; (nan, 0) when there are none.
    The model's train/eval mode is left as it is."""
    ctx = autocast_ctx or contextlib.nullcontext()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with ctx:
            loss = cross_entropy_loss(model(x), y)
        kept = int((y != -100).sum())  # the loss is a mean over these (masked targets excluded)
        total += loss.item() * kept if kept else 0.0
        count += kept
    return (total / count if count else float("nan")), count


def bits_per_byte(loss: float, tokens: int, text_bytes: int) -> float:
    """A mean loss per token (nats) as bits per byte of text: comparable across tokenizers
    (a char model and a BPE model of the same text predict the same bytes)."""
    return loss * tokens / (math.log(2) * text_bytes) if text_bytes else math.nan


def byte_table(token_bytes: np.ndarray, vocab_size: int) -> Tensor:
    """(vocab_size,) int64: the UTF-8 bytes each id stands for; ids past the tokenizer's
    (a padded model vocabulary) stand for none."""
    table = torch.zeros(vocab_size, dtype=torch.long)
    table[:len(token_bytes)] = torch.from_numpy(np.asarray(token_bytes, dtype=np.int64))
    return table


def counting_bytes(batches: Iterable[tuple[Tensor, Tensor]], table: Tensor, total: list[int]) -> Iterator:
    """The batches as they are, adding the bytes their targets stand for to total[0]."""
    for x, y in batches:
        y = y.cpu()
        total[0] += int((table[y.clamp(min=0)] * (y != -100)).sum())  # masked targets stand for no text
        yield x, y
