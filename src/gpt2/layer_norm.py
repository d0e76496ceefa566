"""Layer normalisation (Ba et al., 2016), written out, with torch's fused kernel as the fast path."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def layer_norm_reference(x: Tensor, weight: Tensor, bias: Tensor | None, eps: float) -> Tensor:
    """The definition: normalise each vector to zero mean and unit variance, then scale and shift.

    Uses the biased variance (divide by n), as GPT-2 and torch.nn.LayerNorm do.
    """
    mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
    var = x.var(dim=-1, keepdim=True, unbiased=False)  # (..., 1)
    x_hat = (x - mean) / torch.sqrt(var + eps)  # (..., d)
    out = x_hat * weight
    return out + bias if bias is not None else out


class LayerNorm(nn.Module):
    """LayerNorm over the last dimension with a learned gain (`weight`) and optional `bias`.

    `forward` calls torch's fused kernel, which computes `layer_norm_reference` in one
    pass; tests check the two agree.
    """

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: Tensor) -> Tensor:  # x: (..., dim)
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)
