"""Data-parallel training: 2 processes under real torchrun (gloo on CPU) see the same losses
as 1 process with the same global batch, and only rank 0 writes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gpt2 import GPT2
from train_helpers import ROOT, VENV_BIN, make_char_data, run_gpt2, tiny_args, train_losses


@pytest.mark.slow
def test_two_processes_match_one(tmp_path: Path) -> None:
    data = make_char_data(tmp_path / "data")
    # batch 8 in 2 accumulation micro-steps: 1 process takes 4 rows per micro-step,
    # 2 processes take 2 rows each of the same 4 (and skip the gradient sync on the first).
    extra = {"train.batch_size": 8, "train.grad_accum_steps": 2, "eval.interval": 3}
    single = run_gpt2(tiny_args(data, tmp_path / "one", steps=6, **extra))
    assert single.returncode == 0, single.stderr

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "gpt2",
           *tiny_args(data, tmp_path / "two", steps=6, **extra)]
    double = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert double.returncode == 0, double.stderr[-3000:]

    one, two = train_losses(tmp_path / "one"), train_losses(tmp_path / "two")
    assert sorted(one) == sorted(two) == list(range(1, 7))
    for step in one:
        assert abs(one[step] - two[step]) <= 1e-5, (step, one[step], two[step])
    assert double.stdout.count("training summary") == 1  # rank 0 alone prints
    a, b = (GPT2.from_pretrained(tmp_path / run / "latest") for run in ("one", "two"))
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert (p - q).abs().max() < 1e-4


def test_batch_not_divisible_across_ranks_is_caught(tmp_path: Path) -> None:
    """The world size comes from torchrun's environment; checked before any training."""
    data = make_char_data(tmp_path / "data")
    env_vars = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": "1"}  # nothing listens there: the check must come before joining
    args = tiny_args(data, tmp_path / "run", **{"train.batch_size": 5})
    proc = subprocess.run([str(VENV_BIN / "gpt2"), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env_vars}, cwd=ROOT)
    assert proc.returncode == 1
    assert "not divisible by processes (2)" in proc.stderr and "Traceback" not in proc.stderr
