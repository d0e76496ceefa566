"""A GPT-2 with a classification head: the class is read from the last real token.

In a causal model only the last token has seen the whole text, so its final hidden state
(after the last LayerNorm) goes through a small linear head, emb_dim -> n_classes
(Radford et al., 2018, section 3.3; LLMs-from-scratch, chapter 6). The language-model head
stays as it is, tied to the embedding, so the body is still a GPT-2 checkpoint.

`forward` returns class logits at every position, (B, T, n_classes), so the Trainer's loss
(targets -100 except the class at the last real token, see examples.py) trains it as it
trains a language model; `predict` reads the last real token of each row.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gpt2.config import GPT2Config
from gpt2.gpt_model import GPT2


class GPT2Classifier(nn.Module):
    """GPT-2 body + linear head. gpt: the body (its lm_head unused); classes: label names."""

    def __init__(self, gpt: GPT2, classes: list[str]) -> None:
        super().__init__()
        self.gpt, self.classes = gpt, list(classes)
        self.head = nn.Linear(gpt.cfg.emb_dim, len(classes))  # (n_classes, d)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    @property
    def cfg(self) -> GPT2Config:
        return self.gpt.cfg

    @property
    def device(self) -> torch.device:
        return self.gpt.device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def hidden_states(self, idx: Tensor) -> Tensor:
        """(B, T) ids -> (B, T, d) final hidden states: GPT-2's forward without the LM head."""
        positions = torch.arange(idx.shape[1], device=idx.device).unsqueeze(0)  # (1, T)
        return self.gpt.hidden_states(idx, positions, None, [None] * len(self.gpt.blocks))  # causal

    def forward(self, idx: Tensor) -> Tensor:
        """(B, T) ids -> (B, T, n_classes) class logits at every position."""
        return self.head(self.hidden_states(idx))

    @torch.no_grad()
    def predict(self, idx: Tensor, lengths: Tensor) -> Tensor:
        """(B,) class indices of right-padded rows: the logits at position lengths - 1."""
        logits = self(idx)  # (B, T, C)
        last = logits[torch.arange(idx.shape[0], device=idx.device), lengths - 1]  # (B, C)
        return last.argmax(dim=-1)


def set_trainable(model: nn.Module, trainable: str) -> None:
    """Which weights train without LoRA. all: every weight; last: the last transformer block,
    the final LayerNorm and (a classifier's) head, everything else frozen (LLMs-from-scratch ch. 6)."""
    gpt = model.gpt if isinstance(model, GPT2Classifier) else model
    if trainable == "all":
        model.requires_grad_(True)
        return
    model.requires_grad_(False)
    for part in (gpt.blocks[-1], gpt.final_norm, getattr(model, "head", None)):
        if part is not None:
            part.requires_grad_(True)
