"""Examples as padded token rows with masked targets, and the batches the Trainer draws.

Both tasks become what `gpt2 train` trains on, (x, y) pairs of (B, T) ids, so the same
engine, loss, checkpoints and resume run them:
- chat: x is the conversation, y the next token where the assistant wrote it and -100
  (ignored by the loss) everywhere else: the prompt, the user's turns, the padding;
- classify: x is the text, y is -100 except at the text's last token, which holds the class
  index; the classifier's head turns each position into class logits, so the loss is the
  cross-entropy of the class read at the last real token.
Rows are padded on the right to one width; attention is causal, so no real token sees a pad.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gpt2.chat_template import encode
from gpt2.errors import GPT2Error

IGNORE = -100  # the loss skips these targets (gpt2.loss)


def chat_row(tokenizer: Any, messages: Sequence[dict[str, str]], where: str) -> tuple[list[int], list[int]]:
    """(x, y) of one conversation: y[t] = x[t + 1] where the assistant wrote it, else IGNORE."""
    try:
        ids, own = encode(tokenizer, messages)
    except ValueError as err:  # e.g. a character a char vocabulary lacks
        raise GPT2Error(f"{where}: cannot be encoded by the model's tokenizer: {err}") from None
    targets = [ids[t + 1] if own[t + 1] else IGNORE for t in range(len(ids) - 1)]
    return ids[:-1], targets


def class_row(tokenizer: Any, text: str, label: int, where: str) -> tuple[list[int], list[int]]:
    """(x, y) of one labelled text: y is IGNORE except label at the last token."""
    try:
        ids = tokenizer.encode(text, allow_special=False)
    except ValueError as err:
        raise GPT2Error(f"{where}: cannot be encoded by the model's tokenizer: {err}") from None
    return ids, [IGNORE] * (len(ids) - 1) + [label]


def pad_rows(rows: Sequence[tuple[list[int], list[int]]], width: int, pad_id: int,
             keep_end: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """(X, Y, cut): rows padded on the right to `width` ((N, width) int64 each), and how many
    were longer and cut. keep_end=False keeps a row's start (chat); True keeps its end with its
    last token (classify: the label sits there)."""
    X = np.full((len(rows), width), pad_id, dtype=np.int64)
    Y = np.full((len(rows), width), IGNORE, dtype=np.int64)
    cut = 0
    for i, (x, y) in enumerate(rows):
        if len(x) > width:
            cut += 1
            x, y = (x[-width:], y[-width:]) if keep_end else (x[:width], y[:width])
        X[i, :len(x)], Y[i, :len(y)] = x, y
    return X, Y, cut


def _to_device(X: np.ndarray, Y: np.ndarray, device: str | torch.device) -> tuple[Tensor, Tensor]:
    return torch.from_numpy(X).to(device), torch.from_numpy(Y).to(device)


class ExampleBatches:
    """Training batches of examples: passes over the rows, each in its own shuffled order. Batch
    k is a pure function of (seed, k), so a saved position restores the stream exactly (as
    RandomWindowLoader's); under DDP each rank keeps its rows of the global batch."""

    def __init__(self, X: np.ndarray, Y: np.ndarray, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, device: str | torch.device = "cpu") -> None:
        self.X, self.Y, self.batch_size, self.seed = X, Y, batch_size, seed
        self.rank, self.world_size, self.device = rank, world_size, device
        self.n_tokens = int((Y != IGNORE).sum())  # predicted tokens in one pass
        self.data_sha256 = hashlib.sha256(X.tobytes() + Y.tobytes()).hexdigest()
        self.step = 0
        self._orders: dict[int, np.ndarray] = {}

    def rows(self, step: int) -> np.ndarray:
        """Indices of this rank's rows in batch `step`."""
        n, size = len(self.X), self.batch_size * self.world_size
        start = step * size + self.rank * self.batch_size
        positions = np.arange(start, start + self.batch_size)
        return np.array([self._order(p // n)[p % n] for p in positions])

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, epoch]).permutation(len(self.X))}
        return self._orders[epoch]

    def next_batch(self) -> tuple[Tensor, Tensor]:
        rows = self.rows(self.step)
        self.step += 1
        return _to_device(self.X[rows], self.Y[rows], self.device)  # (B, T) each

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "step": self.step, "global_batch_size": self.batch_size * self.world_size,
                "data_sha256": self.data_sha256}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position; refuses one saved with other examples or batch shape."""
        mine = self.state_dict()
        for key in ("data_sha256", "global_batch_size"):
            if state.get(key) != mine[key]:
                raise GPT2Error(f"cannot resume the examples: saved {key}={state.get(key)!r}, now "
                                f"{mine[key]!r}; resume with the same files and settings, or start a new run")
        self.seed, self.step = int(state["seed"]), int(state["step"])


def val_batches(X: np.ndarray, Y: np.ndarray, batch_size: int, rank: int = 0, world_size: int = 1,
                device: str | torch.device = "cpu") -> Any:
    """The Trainer's val_batches(n): the first n batches of this rank's held-out rows (None: all)."""
    mine = np.arange(rank, len(X), world_size)

    def first(max_batches: int | None) -> list[tuple[Tensor, Tensor]]:
        starts = range(0, len(mine), batch_size)
        starts = starts if max_batches is None else starts[:max_batches]
        return [_to_device(X[mine[s:s + batch_size]], Y[mine[s:s + batch_size]], device) for s in starts]

    return first
