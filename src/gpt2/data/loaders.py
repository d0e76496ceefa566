"""Loaders over prepared token shards.

RandomWindowLoader: training batches of random windows, read from the shards on demand (shard_view.py).
    Batch k is a pure function of (seed, k), so a saved position restores the stream
    exactly. Under DDP every rank draws the same global batch (batch_size * world_size
    windows) and keeps its own rows, so 2 ranks x B sees exactly what 1 rank x 2B sees.
SequentialLoader: one pass over a split (or over ids already in memory) in non-overlapping
    windows, for an exact loss over every token: the one windower behind validation during
    training and `gpt2 eval`, on shards and on a text file alike.
create_dataloader_v1: the original project's sliding-window DataLoader over raw text
    (see text_dataset.py), re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from gpt2.data.meta import ShardsMeta
from gpt2.data.shards import open_shard, split_sha256, split_shards
from gpt2.data.text_dataset import GPTDatasetV1, create_dataloader_v1
from gpt2.errors import GPT2Error

__all__ = ["BatchSource", "GPTDatasetV1", "RandomWindowLoader", "SequentialLoader", "create_dataloader_v1"]


class BatchSource(Protocol):
    """Training batches: an endless stream whose position can be saved and restored
    (what the Trainer needs; RandomWindowLoader is one)."""

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]: ...  # (B, T) inputs, (B, T) targets
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _check_rank(rank: int, world_size: int, batch_size: int, context_length: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise GPT2Error(f"rank {rank} must be in [0, world_size={world_size})")
    if batch_size < 1 or context_length < 1:
        raise GPT2Error(f"batch_size ({batch_size}) and context_length ({context_length}) must be >= 1")


def _to_device(windows: np.ndarray, device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T+1) windows -> x = windows[:, :-1], y = windows[:, 1:] as int64 on `device`."""
    batch = torch.from_numpy(windows.astype(np.int64))  # (B, T+1)
    x, y = batch[:, :-1], batch[:, 1:]  # (B, T) each; y is x shifted by one
    if torch.device(device).type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.contiguous().to(device), y.contiguous().to(device)


def _open_split(data_dir: str | Path, split: str) -> list[np.ndarray]:
    shards = [open_shard(p) for p in split_shards(data_dir, split)]
    return [s for s in shards if len(s)]


class RandomWindowLoader:
    """Endless stream of (x, y) int64 (batch_size, context_length) batches of random windows."""

    def __init__(self, data_dir: str | Path, split: str = "train", batch_size: int = 8,
                 context_length: int = 256, seed: int = 0, rank: int = 0, world_size: int = 1,
                 device: str | torch.device = "cpu") -> None:
        _check_rank(rank, world_size, batch_size, context_length)
        self.data_dir, self.split = Path(data_dir), split
        self.batch_size, self.context_length = batch_size, context_length
        self.seed, self.rank, self.world_size, self.device = seed, rank, world_size, device
        self.shards = _open_split(data_dir, split)
        self.data_sha256 = split_sha256(data_dir, split)
        # A window needs context_length + 1 tokens; shard i offers len_i - context_length starts.
        self._starts = np.array([max(0, len(s) - context_length) for s in self.shards], dtype=np.int64)
        self.n_tokens = int(sum(len(s) for s in self.shards))
        if self._starts.sum() == 0:
            raise GPT2Error(f"{data_dir}: the {split} split has {self.n_tokens:,} tokens, fewer than one "
                             f"window of context_length + 1 = {context_length + 1:,}; use a smaller "
                             "context_length or more text")
        self._cum = np.cumsum(self._starts)  # global start g lies in the first shard with g < cum
        self.step = 0

    def window_starts(self, step: int) -> list[tuple[int, int]]:
        """(shard, offset) of this rank's windows in batch `step`: a pure function of (seed, step)."""
        rng = np.random.default_rng([self.seed, step])
        g = rng.integers(0, int(self._cum[-1]), size=self.batch_size * self.world_size)  # global batch
        g = g[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]  # this rank's rows
        shard = np.searchsorted(self._cum, g, side="right")
        offset = g - (self._cum[shard] - self._starts[shard])
        return list(zip(shard.tolist(), offset.tolist(), strict=True))

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        T = self.context_length
        windows = np.stack([self.shards[s][o:o + T + 1] for s, o in self.window_starts(self.step)])
        self.step += 1
        return _to_device(windows, self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the exact same stream (plain ints and strings)."""
        return {"seed": self.seed, "step": self.step, "split": self.split, "n_tokens": self.n_tokens,
                "global_batch_size": self.batch_size * self.world_size, "context_length": self.context_length,
                "data_sha256": self.data_sha256}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position; refuses a state from different data or batch shape."""
        mine = self.state_dict()
        if state.get("data_sha256", mine["data_sha256"]) != mine["data_sha256"]:  # absent: saved by v0.1
            raise GPT2Error(f"cannot resume the data stream: the {self.split} shards in {self.data_dir} are "
                            "not the ones the run was trained on (their sha256 differ); resume with that "
                            "data, or start a new run")
        for key in ("split", "n_tokens", "global_batch_size", "context_length"):
            if state.get(key) != mine[key]:
                raise GPT2Error(f"cannot resume the data stream: saved {key}={state.get(key)!r}, "
                                 f"now {mine[key]!r}")
        self.seed, self.step = int(state["seed"]), int(state["step"])


class SequentialLoader:
    """One pass over a split: non-overlapping windows, every token predicted once (except the
    first of each shard and a tail shorter than a window). Rank r takes windows r, r+W, ...;
    the last batch may be smaller, so weight batch losses by their size for the exact mean.

    `data` is a prepared folder (its `split` is read) or token arrays already in memory
    (e.g. a text file encoded as `gpt2 prepare` would encode it)."""

    def __init__(self, data: str | Path | list[np.ndarray], split: str = "val", batch_size: int = 8,
                 context_length: int = 256, rank: int = 0, world_size: int = 1,
                 device: str | torch.device = "cpu", max_batches: int | None = None) -> None:
        _check_rank(rank, world_size, batch_size, context_length)
        self.batch_size, self.context_length, self.device = batch_size, context_length, device
        in_memory = isinstance(data, list)
        self.shards = [s for s in data if len(s)] if in_memory else _open_split(data, split)
        T = context_length
        per_shard = np.array([(len(shard) - 1) // T for shard in self.shards], dtype=np.int64)
        self._cum = np.cumsum(per_shard)  # window g lies in the first shard with g < cum
        n_windows = int(self._cum[-1]) if len(per_shard) else 0
        if n_windows == 0:
            n = sum(len(s) for s in self.shards)
            if in_memory:
                raise GPT2Error(f"the text has {n:,} tokens, fewer than one window of context_length + 1 = "
                                f"{T + 1:,}; use a smaller context_length or more text")
            hint = " (val_ratio is 0)" if split == "val" and ShardsMeta.read(data).val_ratio == 0 else ""
            raise GPT2Error(f"{data}: the {split} split has {n:,} tokens{hint}, fewer than one window "
                             f"of context_length + 1 = {T + 1:,}; use a smaller context_length or more text")
        self.rank, self.world_size = rank, world_size
        self.n_windows = len(range(rank, n_windows, world_size))  # this rank's windows: r, r+W, ...
        n_batches = -(-self.n_windows // batch_size)
        self.n_batches = n_batches if max_batches is None else min(n_batches, max_batches)

    def window(self, i: int) -> tuple[int, int]:
        """(shard, offset) of this rank's i-th window (computed, never listed: O(1) memory)."""
        g = self.rank + i * self.world_size
        shard = int(np.searchsorted(self._cum, g, side="right"))
        first = int(self._cum[shard - 1]) if shard else 0
        return shard, (g - first) * self.context_length

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        T, B = self.context_length, self.batch_size
        for b in range(self.n_batches):
            windows = (self.window(i) for i in range(b * B, min((b + 1) * B, self.n_windows)))
            rows = [self.shards[s][o:o + T + 1] for s, o in windows]
            yield _to_device(np.stack(rows), self.device)
