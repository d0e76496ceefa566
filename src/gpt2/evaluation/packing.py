"""Packing: the endings of one example share its context, so the context is read once.

An example's rows (encoding.Row, one per ending) become one `Unit`: the shared prefix (the
context's ids) and one branch per ending. The unit is laid out as one sequence,

    prefix p0 .. p(n-1) | ending 1 without its last id | ending 2 without its last id | ...

where each ending's ids take the positions n, n+1, ... (every branch starts where the prefix
ends) and attend to the prefix and to the earlier ids of their own ending only, never to
another ending. The prefix's last position predicts each ending's first id; each ending id
predicts the next. That is exactly what scoring every row on its own computes, with the
context's work done once instead of once per ending (four endings half as long as their
context: half the positions).

Rows whose window was cut (encoding.py) no longer share one prefix; such an example becomes
one unit per row (a unit with one branch is an ordinary row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gpt2.evaluation.encoding import Row

PAD_BRANCH = -1  # the branch id of padding positions


@dataclass(frozen=True)
class Unit:
    """A prefix and the branches (ids scored after it); `rows[j]` is the global index of the
    row that branch j scores."""

    prefix: list[int]
    branches: list[list[int]]
    rows: list[int]

    @property
    def length(self) -> int:
        """Positions of the packed sequence: the prefix and every branch but its last id."""
        return len(self.prefix) + sum(len(b) - 1 for b in self.branches)


def example_units(rows: Sequence[Row], first: int) -> list[Unit]:
    """One example's rows (global indices first, first + 1, ...) as units."""
    splits = []
    for row in rows:
        tokens = [*row.inputs, row.targets[-1]]  # the whole window
        splits.append((tokens[:len(tokens) - row.scored], tokens[len(tokens) - row.scored:]))
    indices = list(range(first, first + len(rows)))
    if all(prefix == splits[0][0] for prefix, _ in splits):
        return [Unit(splits[0][0], [branch for _, branch in splits], indices)]
    return [Unit(prefix, [branch], [i]) for (prefix, branch), i in zip(splits, indices, strict=True)]


@dataclass(frozen=True)
class Packed:
    """A batch of units as tensors: what the model reads and where each scored id is."""

    idx: Tensor  # (B, T) ids, right-padded with 0
    positions: Tensor  # (B, T) position ids
    mask: Tensor  # (B, 1, T, T) bool: which keys each query may attend
    picks: Tensor  # (S,) flat index into B * T of each position whose next id is scored
    targets: Tensor  # (S,) the scored ids
    owners: Tensor  # (S,) which branch of the batch (0, 1, ...) each scored id belongs to
    rows: list[int]  # the global row index of each branch of the batch


def pack(units: Sequence[Unit], device: torch.device) -> Packed:
    """Lay out `units` as one right-padded batch (see the module docstring)."""
    T = max(u.length for u in units)
    idx = torch.zeros(len(units), T, dtype=torch.long)
    positions = torch.zeros(len(units), T, dtype=torch.long)
    branch = torch.full((len(units), T), PAD_BRANCH, dtype=torch.long)
    picks, targets, owners, rows = [], [], [], []
    for b, unit in enumerate(units):
        n = len(unit.prefix)
        idx[b, :n], positions[b, :n], branch[b, :n] = torch.tensor(unit.prefix), torch.arange(n), 0
        start = n
        for j, (ids, row) in enumerate(zip(unit.branches, unit.rows, strict=True), start=1):
            k = len(ids) - 1  # positions this branch adds: all its ids but the last
            idx[b, start:start + k] = torch.tensor(ids[:-1], dtype=torch.long)
            positions[b, start:start + k] = torch.arange(n, n + k)
            branch[b, start:start + k] = j
            picks += [b * T + n - 1] + [b * T + start + i for i in range(k)]
            targets += ids
            owners += [len(rows)] * len(ids)
            rows.append(row)
            start += k
    order = torch.arange(T)
    earlier = order[None, :] <= order[:, None]  # (T, T): key at or before the query
    same_or_prefix = (branch[:, None, :] == 0) | (branch[:, None, :] == branch[:, :, None])  # (B, T, T)
    real = branch[:, :, None] != PAD_BRANCH  # (B, T, 1): padding queries see only themselves
    mask = (earlier & same_or_prefix & real) | torch.eye(T, dtype=torch.bool)  # (B, T, T)
    return Packed(idx.to(device), positions.to(device), mask[:, None].to(device),
                  torch.tensor(picks, device=device), torch.tensor(targets, device=device),
                  torch.tensor(owners, device=device), rows)
