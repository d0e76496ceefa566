"""Turning a model into text: next-token prediction applied over and over."""

from __future__ import annotations

import torch
from torch import Tensor

from gpt2.gpt_model import GPT2


@torch.no_grad()
def generate_text(model: GPT2, idx: Tensor, max_new_tokens: int, context_size: int) -> Tensor:
    """Greedy decoding, the readable reference: no cache, the whole context re-read each step.

    idx: (B, T) prompt ids -> (B, T + max_new_tokens). The context is cropped to the last
    `context_size` tokens, so text can grow past what the model has positions for.
    """
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]  # (B, <= context_size)
        logits = model(idx_cond)[:, -1, :]  # (B, vocab): the prediction for the next position
        idx_next = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
        idx = torch.cat((idx, idx_next), dim=1)  # (B, T + 1)
    return idx
