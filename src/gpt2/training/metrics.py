"""What a run records: metrics.jsonl (one JSON object per line), a loss-curve PNG redrawn
at each evaluation, and TensorBoard scalars (one event file, rewritten with the plot) when
tensorboard is installed."""

from __future__ import annotations

import contextlib
import io
import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gpt2.files import naming, write_bytes_atomic


class MetricsLog:
    """Append-only record of a run. Only rank 0 creates one.

    On resume, rows after the resumed step are dropped (those steps are about to be
    trained again), so the file and the plot never show a step twice.
    """

    def __init__(self, out_dir: Path, resume_step: int | None = None) -> None:
        self.out_dir = out_dir
        self.path = out_dir / "metrics.jsonl"
        self.plot_path = out_dir / "loss.png"
        self.rows: list[dict[str, Any]] = []
        out_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            self.rows = [r for r in _read_rows(self.path) if r.get("step", 0) <= resume_step]
        self._rewrite()
        self.tensorboard = out_dir / "tensorboard"

    def _rewrite(self) -> None:
        with naming(self.path), open(self.path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in self.rows)

    def log(self, row: dict[str, Any]) -> None:
        """Record one row, e.g. {"step": 10, "tokens": 7680, "train_loss": 2.31, "lr": 1e-3}."""
        self.rows.append(row)
        with naming(self.path), open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def plot(self) -> Path:
        """Redraw loss.png: train and validation loss against steps (bottom axis) and
        tokens seen (top axis)."""
        from matplotlib.figure import Figure  # no pyplot: no global backend switch, no display

        train = [(r["step"], r["train_loss"]) for r in self.rows if "train_loss" in r]
        val = [(r["step"], r["val_loss"]) for r in self.rows if "val_loss" in r]
        fig = Figure(figsize=(7, 4))
        ax = fig.subplots()
        if train:
            ax.plot(*zip(*train, strict=True), label="train loss", alpha=0.7)
        if val:
            ax.plot(*zip(*val, strict=True), "o-", label="val loss")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy loss")
        if train or val:  # (a legend of nothing is a warning)
            ax.legend()
        ax.grid(alpha=0.3)
        tokens_per_step = self._tokens_per_step()
        if tokens_per_step:
            top = ax.secondary_xaxis("top", functions=(lambda s: s * tokens_per_step,
                                                       lambda t: t / tokens_per_step))
            top.set_xlabel("tokens seen")
        fig.tight_layout()
        image = io.BytesIO()
        fig.savefig(image, dpi=100, format="png")
        write_bytes_atomic(self.plot_path, image.getvalue())
        self._write_tensorboard()
        return self.plot_path

    def _tokens_per_step(self) -> float:
        rows = [r for r in self.rows if r.get("step") and r.get("tokens")]
        return rows[-1]["tokens"] / rows[-1]["step"] if rows else 0.0

    def close(self) -> None:
        """Write the TensorBoard scalars (the other files are written as they go)."""
        self._write_tensorboard()

    def _write_tensorboard(self) -> None:
        """TensorBoard's copy of the rows, rewritten whole as one event file: a resumed or
        relaunched run keeps one file whose scalars equal metrics.jsonl (no step twice)."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed: the jsonl file and the PNG are enough
            return
        for old in self.tensorboard.glob("events.out.tfevents.*"):
            old.unlink()
        quiet = _thread_os_errors_quiet()
        with naming(self.tensorboard), quiet, SummaryWriter(log_dir=str(self.tensorboard)) as writer:
            for row in self.rows:
                for key, value in row.items():
                    if key != "step" and isinstance(value, (int, float)):
                        writer.add_scalar(key, value, row["step"])


@contextlib.contextmanager
def _thread_os_errors_quiet() -> Iterator[None]:
    """TensorBoard writes from a thread of its own; a write that fails there (a full disk) would
    print that thread's traceback, and is raised again here when the writer closes: print nothing."""
    previous = threading.excepthook
    threading.excepthook = lambda args: None if issubclass(args.exc_type, OSError) else previous(args)
    try:
        yield
    finally:
        threading.excepthook = previous


def progress_bar(total: int, initial: int, enabled: bool) -> Any:
    """The training progress bar (a no-op object when disabled, e.g. on ranks other than 0)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True,
                desc="train")


def perplexity(loss: float) -> float:
    """exp(loss), the effective number of equally likely next tokens; inf when it overflows."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def _read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by a crash; everything after it is unreliable
    return rows
