"""One pre-LayerNorm transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

from __future__ import annotations

from torch import Tensor, nn

from gpt2.attention import LayerKVCache, MultiHeadAttention
from gpt2.config import GPT2Config
from gpt2.layer_norm import LayerNorm
from gpt2.mlp import MLP


class TransformerBlock(nn.Module):
    """GPT-2 moves LayerNorm to the input of each sub-block (pre-LN), unlike the original
    transformer; the residual stream itself is never normalised until the final LayerNorm."""

    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.norm1 = LayerNorm(cfg.emb_dim, cfg.layer_norm_epsilon, cfg.bias)
        self.attn = MultiHeadAttention(cfg)
        self.norm2 = LayerNorm(cfg.emb_dim, cfg.layer_norm_epsilon, cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor, mask: Tensor | None = None,
                cache: LayerKVCache | None = None) -> Tensor:  # x: (B, T, d)
        x = x + self.attn(self.norm1(x), mask, cache)
        x = x + self.mlp(self.norm2(x))
        return x
