"""Choosing the next token from the model's logits: the usual sampling knobs.

Each processor takes logits (B, V) and returns new logits (B, V); tokens that may not be
chosen get -inf. They are applied in the order of `sample_next`: repetition penalty,
temperature, top-k, top-p, then one draw from the softmax. Temperature 0 means greedy.
The knobs themselves, `SamplingOptions`, are declared in options.py (without torch).
"""

from __future__ import annotations

import torch
from torch import Tensor

from gpt2.generation.options import SamplingOptions


def apply_repetition_penalty(logits: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """CTRL's penalty (Keskar et al., 2019): for tokens already seen, divide a positive logit
    by `penalty` and multiply a negative one, so the token always becomes less likely.

    logits: (B, V); seen: bool (B, V), True where the token occurs in that row's text.
    """
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def apply_top_k(logits: Tensor, k: int) -> Tensor:
    """Keep the k largest logits of each row (ties with the k-th are kept too)."""
    if k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1): the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))


def apply_top_p(logits: Tensor, p: float) -> Tensor:
    """Nucleus sampling (Holtzman et al., 2020): keep the most likely tokens until their total
    probability reaches p. The most likely token is always kept, so a tiny p is greedy."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above
    drop_sorted = mass_before >= p  # rank 0 has mass_before 0 < p: never dropped
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sample_next(logits: Tensor, options: SamplingOptions, seen: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """logits (B, V) for the next position -> chosen token ids (B,) int64."""
    if seen is not None and options.repetition_penalty != 1.0:
        logits = apply_repetition_penalty(logits, seen, options.repetition_penalty)
    if options.greedy:
        return logits.argmax(dim=-1)
    logits = logits.float() / options.temperature
    if options.top_k is not None:
        logits = apply_top_k(logits, options.top_k)
    if options.top_p is not None:
        logits = apply_top_p(logits, options.top_p)
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)  # (B,)
