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

import math
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpt2.checkpoint import load_training_state, recover_interrupted_save, save_checkpoint
from gpt2.errors import GPT2Error
from gpt2.signals import STOP_SIGNALS, interrupt, note_stop
from gpt2.training.distributed import DistInfo, barrier
from gpt2.training.run_folder import RunFolder

LATEST = "latest"
BEST = "best"
RUN_CONFIG = "train_config.json"


@dataclass
class Progress:
    """Counters that advance with training and are saved in every checkpoint."""

    step: int = 0  # optimizer steps done; fixes the position in the LR schedule
    tokens_seen: int = 0  # training tokens consumed, over all processes
    best_val_loss: float = math.inf
    history: list[float] = field(default_factory=list)  # val losses at each evaluation


def run_state(progress: Progress, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
              loader: Any) -> dict[str, Any]:
    """Everything besides the weights that a bit-identical resume needs (plain data, so
    `torch.load(weights_only=True)` reads it back)."""
    p = progress
    return {"step": p.step, "tokens_seen": p.tokens_seen, "best_val_loss": p.best_val_loss,
            "history": list(p.history), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "loader": loader.state_dict(), "rng": capture_rng()}


def restore_run_state(state: dict[str, Any], optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                      loader: Any) -> Progress:
    """Undo `run_state`: load the optimizer, scaler, loader and RNG states; return the counters.
    A state without "optimizer" kept it in sharded files, loaded apart (sharded_checkpoint.py)."""
    if "optimizer" in state:
        _load_optimizer(optimizer, state["optimizer"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    loader.load_state_dict(state["loader"])
    restore_rng(state["rng"])
    return Progress(state["step"], state["tokens_seen"], state["best_val_loss"],
                    list(state.get("history", [])))


def _load_optimizer(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    kinds = [[g.get("muon", False) for g in groups]  # AdamW: [False, False]; Muon: [True, False, False]
             for groups in (saved["param_groups"], optimizer.param_groups)]
    if kinds[0] != kinds[1]:
        raise GPT2Error("--resume: the checkpoint's optimizer state is for another --optim.name; resume "
                        "with the optimizer the run was saved with")
    optimizer.load_state_dict(saved)


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


class RunCheckpoints:
    """The checkpoints of one run, <out_dir>/latest and <out_dir>/best: each a full checkpoint
    directory with the tokenizer, the run config and the training state. Rank 0 writes them;
    the other processes wait at a barrier, so all continue from the same saved step."""

    def __init__(self, out_dir: Path, tokenizer: Any, run_config: dict[str, Any], info: DistInfo,
                 folder: RunFolder | None = None) -> None:
        """folder: the run folder this process holds (rank 0; see run_folder.py): the old run an
        --overwrite set aside goes at the first save, a new run's files if it fails unsaved."""
        self.out_dir = out_dir
        self.tokenizer = tokenizer
        self.run_config = run_config
        self.info = info
        self._latest_step = -1
        self.write = save_checkpoint  # what writes one checkpoint (fine-tuning writes its own kind)
        self.saved = False  # whether this run has written a checkpoint yet
        self.folder = folder

    def save(self, which: str, step: int, model: torch.nn.Module,
             training_state: Callable[[], dict[str, Any]]) -> Path:
        """Write <out_dir>/<which> for optimizer step `step` atomically (latest/ at most once per
        step); `training_state()` is called on rank 0 only."""
        path = self.out_dir / which
        if which == LATEST and self._latest_step == step:
            return path  # already saved at this step
        if which == LATEST:
            self._latest_step = step
        if self.info.is_main:
            self.write(path, model, tokenizer=self.tokenizer, training_state=training_state(),
                       json_files={RUN_CONFIG: self.run_config})
            self._saved()
        barrier(self.info)
        return path

    def _saved(self) -> None:
        self.saved = True
        if self.folder is not None:  # the new run has a checkpoint: an old one set aside can go
            self.folder.committed()

    def __enter__(self) -> RunCheckpoints:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.folder is not None:
            self.folder.release()

    def undo_unsaved_run(self) -> None:
        """A new run that failed before its first checkpoint leaves nothing behind (no metrics
        log or TensorBoard files that look like a run), and an old run set aside by
        --overwrite is put back."""
        if not self.saved and self.folder is not None:
            self.folder.undo()


def load_resume_state(path: Path) -> dict[str, Any]:
    """The training state of `path`, after repairing a save that died between its renames."""
    recover_interrupted_save(path)
    state = load_training_state(path)
    if state is None:
        raise GPT2Error(f"{path}: has no training_state.pt, so there is nothing to resume; "
                         "start from it with --model.init instead")
    check_training_state(state, path / "training_state.pt")
    return state


SHARDS = "sharded"  # a sharded (FSDP) checkpoint's DCP folder: it holds the optimizer state


_STATE_KEYS = {"step": int, "tokens_seen": int, "best_val_loss": float, "optimizer": dict, "loader": dict,
               "rng": dict}


def check_training_state(state: Any, file: Path) -> None:
    """The saved state has every part a resume reads, of the right kind and range (a damaged or
    crafted file is one line here, not a KeyError or a schedule run backwards later). A sharded
    checkpoint keeps the optimizer's state in its shards, not in this file."""
    sharded = (file.parent / SHARDS).is_dir()
    if not isinstance(state, dict):
        raise GPT2Error(f"{file}: holds a {type(state).__name__}, not a training state; the checkpoint is "
                        "damaged or was crafted")
    for key, kind in _STATE_KEYS.items():
        value = state.get(key)
        if key == "optimizer" and sharded and value is None:
            continue
        if kind is float:
            ok = isinstance(value, (int, float)) and not math.isnan(value)
        else:
            ok = isinstance(value, kind) and not isinstance(value, bool) and (kind is not int or value >= 0)
        if not ok:
            what = "a non-negative integer" if kind is int else f"a {kind.__name__}"
            raise GPT2Error(f"{file}: {key!r} is {value!r}, not {what}; the checkpoint is damaged or was "
                            "crafted")
    if (not sharded and not isinstance(state["optimizer"].get("param_groups"), list)) or \
            not isinstance(state["loader"].get("step"), int):
        raise GPT2Error(f"{file}: the optimizer or data-loader state is incomplete; the checkpoint is "
                        "damaged or was crafted")


class StopFlag:
    """Turns SIGINT (Ctrl-C), SIGTERM (what schedulers and torchrun send before killing) and
    SIGHUP (the terminal or SSH session closed) into a flag the training loop polls, instead of
    an exception that could land in the middle of an optimizer step or a checkpoint write. A
    second Ctrl-C interrupts at once."""

    SIGNALS = (signal.SIGINT, *STOP_SIGNALS)  # Ctrl-C, SIGTERM, SIGHUP (a closed terminal)

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
        note_stop(signum)
        signal.signal(signal.SIGINT, interrupt)

    def __exit__(self, *exc: Any) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
