"""Fetch the next training batch early, so preparing it overlaps the device's work.

On CUDA the loaders pin each batch and copy it with non_blocking=True; fetching batch k+1
before batch k's forward pass queues that copy early and does the host's part (slicing the
shards, stacking windows) while the device computes. On the CPU it changes nothing but the order.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import Tensor

from gpt2.data.loaders import BatchSource


class Prefetcher:
    """A BatchSource around `source` that can hold one batch fetched ahead (`prefetch`).

    Its `state_dict` is the source's state from *before* the batch it holds, so a checkpoint
    written with a batch in hand resumes at that batch: the stream stays bit-identical.
    """

    def __init__(self, source: BatchSource) -> None:
        self.source = source
        self._held: tuple[Tensor, Tensor] | None = None
        self._state_before_held: dict[str, Any] | None = None

    def prefetch(self) -> None:
        """Fetch the next batch now (no-op if one is already held)."""
        if self._held is None:
            state = copy.deepcopy(self.source.state_dict())
            self._held = self.source.next_batch()
            self._state_before_held = state

    def next_batch(self) -> tuple[Tensor, Tensor]:
        """The held batch if there is one, else the source's next: (B, T) inputs and targets."""
        if self._held is None:
            return self.source.next_batch()
        batch, self._held, self._state_before_held = self._held, None, None
        return batch

    def state_dict(self) -> dict[str, Any]:
        if self._held is not None and self._state_before_held is not None:
            return copy.deepcopy(self._state_before_held)
        return self.source.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`; a held batch belongs to the old position and is dropped."""
        self._held, self._state_before_held = None, None
        self.source.load_state_dict(state)
