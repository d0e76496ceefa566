"""The language-modelling objective, shared by the trainer, evaluation and benchmarks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def cross_entropy_reference(logits: Tensor, targets: Tensor) -> Tensor:
    """The definition: minus the log of the probability the model gave each target token,
    averaged over the positions whose target is not -100. logits: (B, T, V), targets: (B, T)."""
    log_probs = logits.float().log_softmax(dim=-1)  # (B, T, V): log softmax over the vocabulary
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    keep = targets != -100
    return -(picked * keep).sum() / keep.sum()


def cross_entropy_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean next-token cross-entropy in float32 (also under bf16 autocast): torch's fused
    kernel for `cross_entropy_reference`.

    logits: (B, T, V), targets: (B, T) with -100 marking positions to ignore.
    """
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)


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
        total += loss.item() * y.numel()
        count += y.numel()
    return (total / count if count else float("nan")), count
