"""Checkpoints of a training run, made to survive crashes.

A run folder holds `latest/` (written every checkpoint interval) and `best/` (lowest
validation loss so far). Each is a full checkpoint directory (see gpt2.checkpoint):
weights in Hugging Face layout, the tokenizer, `train_config.json`, and
`training_state.pt` with everything else resume needs for a bit-identical continuation:
optimizer moments, step (which fixes the LR schedule position), tokens seen, best loss,
the data loader's position and the torch / numpy / python RNG states.

Writes are atomic (temporary folder + fsync + rename), so SIGKILL at any moment leaves
the previous good checkpoint. SIGINT (Ctrl-C) only raises a flag; the training loop
checks it between steps, saves, and exits.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpt2.checkpoint import load_training_state, recover_interrupted_save, save_checkpoint

LATEST = "latest"
BEST = "best"
RUN_CONFIG = "train_config.json"


def capture_rng() -> dict[str, Any]:
    """RNG states as plain tensors and lists (loadable with torch.load(weights_only=True))."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Undo `capture_rng`: the next random numbers are the ones the saved run drew next."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_run_checkpoint(path: Path, model: torch.nn.Module, tokenizer: Any, run_config: dict[str, Any],
                        training_state: dict[str, Any]) -> Path:
    """Write one checkpoint directory atomically (rank 0 only)."""
    return save_checkpoint(path, model, tokenizer=tokenizer, training_state=training_state,
                           json_files={RUN_CONFIG: run_config})


def load_resume_state(path: Path) -> dict[str, Any]:
    """The training state of `path`, after repairing a save that died between its renames."""
    recover_interrupted_save(path)
    state = load_training_state(path)
    if state is None:
        raise ValueError(f"{path}: has no training_state.pt, so there is nothing to resume; "
                         "start from it with --model.init instead")
    return state


class StopFlag:
    """Turns SIGINT (Ctrl-C) and SIGTERM (what schedulers and torchrun send before killing)
    into a flag the training loop polls, instead of an exception that could land in the
    middle of an optimizer step or a checkpoint write. A second Ctrl-C interrupts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        try:
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        except ValueError:  # not the main thread: leave signals alone
            self._previous = {}
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc: Any) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
