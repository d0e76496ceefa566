"""Causal multi-head self-attention (Vaswani et al., 2017) with an optional key/value cache.

Interchangeable ways to compute softmax(q k^T / sqrt(d_head)) v:
- `explicit_attention`: the masked softmax written out, for reading;
- `sdpa_attention`: torch's fused `scaled_dot_product_attention`, the default;
- `one_query_attention`: one query per row (a decoding step) with its two products written as
  sums, which torch.compile fuses into loops (what the compiled decoding step runs).
Tests check they agree.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpt2.config import GPT2Config


def explicit_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout: float
) -> Tensor:
    """q: (B, H, Tq, hd), k and v: (B, H, Tk, hd), mask: bool (B or 1, 1, Tq, Tk), True = may attend.

    With `mask` None, query i attends keys 0..i (requires Tq == Tk or Tq == 1).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, Tq, Tk)
    t_q, t_k = scores.shape[-2:]
    if mask is None and t_q > 1:
        mask = torch.ones(t_q, t_k, dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # each row sums to 1 over allowed keys
    weights = F.dropout(weights, p=dropout, training=dropout > 0)
    return weights @ v  # (B, H, Tq, hd)


def one_query_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout: float) -> Tensor:
    """q: (B, H, 1, hd), k and v: (B, H, Tk, hd), mask: bool (B or 1, 1, 1, Tk) or None (every
    key). The same formula for one query, with q k^T and weights v written as a product summed
    over a dimension instead of a matrix product: compiled, each becomes a loop fused with the
    softmax, where a matrix kernel would be called twice per head for a 1-row product."""
    scores = (q * k).sum(-1)[:, :, None, :] / math.sqrt(q.size(-1))  # (B, H, 1, Tk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (B, H, 1, Tk)
    weights = F.dropout(weights, p=dropout, training=dropout > 0)
    return (weights.transpose(-2, -1) * v).sum(-2, keepdim=True)  # (B, H, 1, hd)


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout: float) -> Tensor:
    """The same computation through torch's fused kernel (flash / memory-efficient / math).

    Except for one query on CPU (every decoding step), where torch's CPU flash kernel, built for
    blocks of queries, calls a matrix kernel twice per head: while torch.compile traces (the
    compiled decoding step) that case takes `one_query_attention`, which it fuses into loops
    (1.05-1.09x per token on gpt2-124M); run eagerly, one bf16 query takes `explicit_attention`,
    2x (144 keys) to 5x (1024 keys) faster than the flash kernel (docs/generation.md)."""
    if q.size(-2) == 1 and q.device.type == "cpu":
        if torch.compiler.is_compiling():
            return one_query_attention(q, k, v, mask, dropout)
        if q.dtype == torch.bfloat16:
            return explicit_attention(q, k, v, mask, dropout)
    is_causal = mask is None and q.size(-2) > 1
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal)


ATTENTION_IMPLS = {"explicit": explicit_attention, "sdpa": sdpa_attention}


class LayerKVCache:
    """Keys and values of the positions seen so far by one attention layer.

    Preallocated to `max_len` positions so decoding one token writes in place
    instead of concatenating (which would copy the whole cache every step).
    """

    def __init__(self, batch_size: int, n_heads: int, max_len: int, head_dim: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        shape = (batch_size, n_heads, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v: (B, H, T_new, hd); return all keys and values so far (B, H, T_all, hd)."""
        end = self.length + k.size(2)
        if end > self.k.size(2):
            raise ValueError(f"KV cache holds {self.k.size(2)} positions; {end} requested")
        self.k[:, :, self.length:end] = k
        self.v[:, :, self.length:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class StaticLayerKVCache:
    """The same buffers as a `LayerKVCache`, written at a position held in a device tensor.

    Every call sees the same shapes (the whole buffer, (B, H, max_len, hd)) and no Python
    number that changes between tokens, so a decoding step through it can be captured once as
    a CUDA graph and replayed. The caller masks keys after the position (see
    generation/static_cache.py); the buffer's later slots hold stale or zero values.
    """

    def __init__(self, layer: LayerKVCache, position: Tensor) -> None:
        self.k, self.v = layer.k, layer.v  # (B, H, max_len, hd), shared with `layer`
        self.position = position  # (1,) long: where the next key and value go

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v: (B, H, 1, hd) at `position`; return the whole buffers (B, H, max_len, hd)."""
        self.k.index_copy_(2, self.position, k)
        self.v.index_copy_(2, self.position, v)
        return self.k, self.v


class KVCache:
    """One `LayerKVCache` per transformer block; `length` is the number of cached positions."""

    def __init__(self, cfg: GPT2Config, batch_size: int, max_len: int | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        max_len = max_len or cfg.context_length
        self.layers = [
            LayerKVCache(batch_size, cfg.n_heads, max_len, cfg.head_dim, torch.device(device), dtype)
            for _ in range(cfg.n_layers)
        ]

    @property
    def length(self) -> int:
        return self.layers[0].length

    @property
    def max_len(self) -> int:
        return self.layers[0].k.size(2)


class MultiHeadAttention(nn.Module):
    """Project x to queries, keys and values, attend causally per head, project back."""

    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.emb_dim, 3 * cfg.emb_dim, bias=cfg.bias)  # W_q, W_k, W_v fused
        self.proj = nn.Linear(cfg.emb_dim, cfg.emb_dim, bias=cfg.bias)  # W_o
        self.attn_dropout = cfg.drop_rate
        self.resid_dropout = nn.Dropout(cfg.drop_rate)
        self.attend = ATTENTION_IMPLS[cfg.attention]

    def forward(self, x: Tensor, mask: Tensor | None = None,
                cache: LayerKVCache | StaticLayerKVCache | None = None) -> Tensor:
        """x: (B, T, d). mask: bool (B or 1, 1, T, T_all) or None for plain causal attention."""
        B, T, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)  # each (B, T, d)
        # (B, T, d) -> (B, H, T, hd): each head sees its own hd = d / H slice.
        q, k, v = (t.view(B, T, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, T_all, hd)
        dropout = self.attn_dropout if self.training else 0.0
        y = self.attend(q, k, v, mask, dropout)  # (B, H, T, hd)
        y = y.transpose(1, 2).contiguous().view(B, T, d)  # re-join the heads
        return self.resid_dropout(self.proj(y))
