"""The position-wise feed-forward network with GPT-2's tanh-approximated GELU."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpt2.config import GPT2Config


def gelu_reference(x: Tensor) -> Tensor:
    """GELU in the tanh form GPT-2 was trained with (Hendrycks & Gimpel, 2016)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class GELU(nn.Module):
    """Fast path of `gelu_reference`: torch's fused kernel for the same formula."""

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate="tanh")


class MLP(nn.Module):
    """Expand to 4 x emb_dim, apply GELU, project back: emb_dim -> 4*emb_dim -> emb_dim."""

    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim, bias=cfg.bias)
        self.gelu = GELU()
        self.proj = nn.Linear(4 * cfg.emb_dim, cfg.emb_dim, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.drop_rate)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, T, d)
        return self.dropout(self.proj(self.gelu(self.fc(x))))  # (B, T, d)
