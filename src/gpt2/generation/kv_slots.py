"""The decoding engine's key/value cache: one slot per row, every row at its own length.

`attention.KVCache` holds a batch whose rows all have the same length. The engine's rows
join and leave at any step, so each slot keeps its own length, and a one-token step writes
each row's new key and value at that row's own position. Rows always occupy slots
0..A-1 (the engine moves the last row into a freed slot), so a step reads plain slices
`[:A, :, :span]` of the buffers, never a gathered copy.

The views below are what `MultiHeadAttention` calls `append(k, v)` on: one per layer, made
for one forward pass.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gpt2.config import GPT2Config


class SlotCache:
    """Per layer, keys and values (rows, H, max_len + 1, hd); `lengths[i]`: positions cached in slot i.

    The last position is a spare, never written: a step's `[:span]` (span <= max_len) is then
    never the whole buffer, a case torch.compile would specialize on (compiled_step.py: one
    more compile, mid-serving, when a row first fills the context)."""

    def __init__(self, cfg: GPT2Config, rows: int, max_len: int, device: torch.device,
                 dtype: torch.dtype) -> None:
        shape = (rows, cfg.n_heads, max_len + 1, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.lengths = [0] * rows
        self.rows = rows
        self.max_len = max_len

    def prefill_views(self, start: int, stop: int) -> list[PrefillView]:
        """For a forward pass over new rows in slots [start, stop), written from position 0."""
        return [PrefillView(k, v, start, stop) for k, v in zip(self.k, self.v, strict=True)]

    def step_views(self, active: int, write_at: int | Tensor, span: int) -> list[StepView]:
        """For a one-token step of rows 0..active-1: the new key of row i goes to position
        write_at (one int for all rows, or (active,) positions), attention reads [:span]."""
        return [StepView(k, v, active, write_at, span) for k, v in zip(self.k, self.v, strict=True)]

    def move(self, src: int, dst: int) -> None:
        """Copy slot `src` (its cached positions only) into slot `dst`."""
        n = self.lengths[src]
        for k, v in zip(self.k, self.v, strict=True):
            k[dst, :, :n] = k[src, :, :n]
            v[dst, :, :n] = v[src, :, :n]
        self.lengths[dst] = n


class PrefillView:
    """Writes the keys and values of a prompt (n, H, T, hd) into slots [start, stop)."""

    def __init__(self, k: Tensor, v: Tensor, start: int, stop: int) -> None:
        self.k, self.v, self.start, self.stop = k, v, start, stop

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        T = k.size(2)
        self.k[self.start:self.stop, :, :T] = k
        self.v[self.start:self.stop, :, :T] = v
        return self.k[self.start:self.stop, :, :T], self.v[self.start:self.stop, :, :T]


class StepView:
    """Writes one new key and value per row (A, H, 1, hd), each at its row's position."""

    def __init__(self, k: Tensor, v: Tensor, active: int, write_at: int | Tensor, span: int) -> None:
        self.k, self.v, self.active, self.write_at, self.span = k, v, active, write_at, span

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        A = self.active
        if isinstance(self.write_at, int):  # every row at the same position: a plain slice
            self.k[:A, :, self.write_at:self.write_at + 1] = k
            self.v[:A, :, self.write_at:self.write_at + 1] = v
        else:
            rows = torch.arange(A, device=k.device)
            self.k[rows, :, self.write_at] = k[:, :, 0]  # (A, H, hd) at (row, position)
            self.v[rows, :, self.write_at] = v[:, :, 0]
        return self.k[:A, :, :self.span], self.v[:A, :, :self.span]  # (A, H, span, hd)
