"""Shared helpers of the training tests: tiny prepared data folders and run configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from gpt2.data.shards import write_prepared
from gpt2.tokenizers import get_tokenizer

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 40


def make_char_data(out: Path, text: str = TEXT, val_fraction: float = 0.1) -> Path:
    """A prepared folder (shards, meta.json, tokenizer/) of `text` with a char tokenizer:
    the first 1 - val_fraction of the ids for training, the rest for validation."""
    tok = get_tokenizer("char", text=text)
    ids = np.array(tok.encode(text), dtype=np.int64)
    n_train = int(len(ids) * (1 - val_fraction))
    return write_prepared(out, tok, {"train": ids[:n_train], "val": ids[n_train:]},
                          split={"val_ratio": val_fraction})


def tiny_args(data: Path, out: Path, steps: int = 6, **extra: object) -> list[str]:
    """Command-line options of a seconds-long CPU run of a 2-layer char model."""
    opts = {
        "data.dir": data, "train.out_dir": out, "train.max_steps": steps, "train.batch_size": 4,
        "train.log_interval": 1, "train.seed": 7, "model.preset": "char-tiny", "model.n_layers": 2,
        "model.emb_dim": 32, "model.n_heads": 2, "model.context_length": 32, "model.drop_rate": 0.0,
        "optim.name": "adamw", "optim.lr": 3e-3, "optim.warmup_steps": 2, "eval.interval": 3,
        "eval.batches": 2, "eval.sample_tokens": 8, "system.device": "cpu", "system.progress": False,
        "system.threads": 1, "system.dtype": "float32",
    }
    opts.update(extra)
    return ["train", *(f"--{k}={v}" for k, v in opts.items())]


def train_losses(out: Path) -> dict[int, float]:
    """step -> train loss from a run's metrics.jsonl."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train_loss"] for r in rows if "train_loss" in r}


def run_gpt2(args: list[str], timeout: float = 120, **kw: object) -> subprocess.CompletedProcess:
    """Run the `gpt2` console command in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([str(VENV_BIN / "gpt2"), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=ROOT, **kw)


def fails_in_one_line(argv: list[str], capsys: object, notes: bool = True) -> str:
    """Run `gpt2 ...` in this process; expect exit status 1 and one error line (no traceback; with
    `notes`, lines such as the device chosen may come before it); return that line."""
    import pytest

    from gpt2.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip()  # type: ignore[attr-defined]
    assert exit_info.value.code == 1, err
    lines = err.splitlines()
    assert lines[-1].startswith("gpt2: error:") and "Traceback" not in err, err
    assert all(line.startswith("gpt2: ") and "error" not in line for line in lines[:-1]), err
    assert notes or len(lines) == 1, err
    return lines[-1]


def fails(argv: list[str], capsys: object) -> str:
    """`fails_in_one_line` for commands that print nothing before their error: stderr is one line."""
    return fails_in_one_line(argv, capsys, notes=False)
