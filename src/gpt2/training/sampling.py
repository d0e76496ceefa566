"""The short text samples printed at each evaluation."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gpt2.generation import generate


@torch.no_grad()
def sample_text(model: nn.Module, tokenizer: Any, prompt: str, max_new_tokens: int, temperature: float,
                top_k: int, seed: int, device: torch.device) -> str:
    """Sample a continuation of `prompt` with its own seeded generator, so a sample neither
    depends on nor disturbs the training RNG (resume stays bit-identical). `generate` runs
    the model in eval mode and restores its mode afterwards."""
    ids = tokenizer.encode(prompt) or [tokenizer.eot_id]
    ctx = model.cfg.context_length
    idx = torch.tensor([ids[-ctx:]], dtype=torch.long, device=device)  # (1, T)
    gen = torch.Generator(device=device).manual_seed(seed)
    out = generate(model, idx, max_new_tokens, temperature=temperature, top_k=top_k or None, generator=gen)
    # A model whose vocabulary is larger than the tokenizer's (padded, or a pretrained one being
    # adapted) can sample ids the tokenizer has no text for; they are left out of the sample.
    return tokenizer.decode([i for i in out[0, idx.size(1):].tolist() if i < tokenizer.vocab_size])
