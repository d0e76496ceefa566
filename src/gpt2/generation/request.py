"""Checks of a generation request, done once before the decoding loop (never per step):
a mistake raises GPT2Error before any work is done."""

from __future__ import annotations

import torch
from torch import Tensor

from gpt2.errors import GPT2Error
from gpt2.gpt_model import GPT2

MAX_NEW_TOKENS = 10_000_000


def check_request(model: GPT2, idx: Tensor, max_new_tokens: int,
                   attention_mask: Tensor | None) -> Tensor | None:
    """Validate once, before the loop; returns the attention mask, or None if nothing is padded."""
    if not isinstance(idx, Tensor) or idx.dim() != 2 or idx.dtype not in (torch.int64, torch.int32):
        raise GPT2Error("idx must be an integer tensor of token ids with shape (batch, seq_len)")
    B, T = idx.shape
    if T == 0:
        raise GPT2Error("the prompt is empty; start from at least one token, e.g. the end-of-text id")
    ctx = model.cfg.context_length
    if idx.size(1) > ctx:
        raise GPT2Error(f"the prompt is {T} tokens but the model's context is {ctx}; "
                         f"shorten it (e.g. keep idx[:, -{ctx}:])")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise GPT2Error(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if max_new_tokens > MAX_NEW_TOKENS:  # the ids are kept in one buffer: bound what it may take
        raise GPT2Error(f"max_new_tokens {max_new_tokens:,} is more than {MAX_NEW_TOKENS:,}; "
                        "generate in parts")
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= model.cfg.vocab_size:
        raise GPT2Error(f"token id {lo if lo < 0 else hi} is outside the vocabulary "
                         f"[0, {model.cfg.vocab_size}); was the prompt encoded with another tokenizer?")
    if attention_mask is None:
        return None
    if tuple(attention_mask.shape) != (B, T):
        raise GPT2Error(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(B, T)}")
    mask = attention_mask.to(device=idx.device, dtype=torch.long)
    if bool(((mask != 0) & (mask != 1)).any()):
        raise GPT2Error("attention_mask must hold only 0 (padding) and 1 (real token)")
    if bool((mask[:, 1:] < mask[:, :-1]).any()) or not bool(mask[:, -1].all()):
        raise GPT2Error("attention_mask must describe left padding: zeros first, then ones, "
                         "and a real token in the last column of every row")
    return None if bool(mask.all()) else mask


def check_stride(window_stride: int | None, ctx: int) -> int:
    """The sliding window's stride: a quarter of the context unless given."""
    if window_stride is None:
        return max(1, ctx // 4)
    if isinstance(window_stride, bool) or not isinstance(window_stride, int) or not 1 <= window_stride <= ctx:
        raise GPT2Error(f"window_stride must be an integer in [1, context_length={ctx}], "
                         f"got {window_stride!r}")
    return window_stride


def make_generator(generator: torch.Generator | None, seed: int | None, device: torch.device,
                    greedy: bool) -> torch.Generator | None:
    """A seeded generator on the device the sampling happens on (None for greedy)."""
    if generator is not None and seed is not None:
        raise GPT2Error("give either seed or generator, not both")
    if greedy:
        return None
    if seed is not None:
        return torch.Generator(device=device).manual_seed(seed)
    if generator is not None and generator.device.type != torch.device(device).type:
        raise GPT2Error(f"the generator is on {generator.device} but the ids are on {device}")
    return generator
