"""The language-modelling objective, shared by the trainer, evaluation and benchmarks."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def cross_entropy_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean next-token cross-entropy in float32 (also under bf16 autocast).

    logits: (B, T, V), targets: (B, T) with -100 marking positions to ignore.
    """
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
