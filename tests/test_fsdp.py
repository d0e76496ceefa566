"""FSDP (`--system.parallel fsdp`): 2 processes under real torchrun (gloo on CPU) train as 1
process does, their sharded checkpoints resume on another number of processes (2 -> 1,
1 -> 2), the gathered weights load in transformers, and a SIGKILL during a sharded save
leaves the previous checkpoint whole."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import kill_after
from gpt2 import GPT2
from gpt2.checkpoint import verify_checkpoint
from gpt2.errors import GPT2Error
from gpt2.training.sharded_checkpoint import SHARDS, load_sharded
from train_helpers import ROOT, VENV_BIN, make_char_data, run_gpt2, tiny_args, train_losses

# batch 8 in 2 accumulation micro-steps, gradient clipping on (the norm of sharded gradients);
# windows of 16 leave 37 validation windows: 10 batches on rank 0, 9 on rank 1 (fsdp.even_batches)
RUN = {"train.batch_size": 8, "train.grad_accum_steps": 2, "optim.grad_clip": 1.0, "eval.interval": 3,
       "train.context_length": 16}


def torchrun(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "gpt2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def full_val_loss(out: Path) -> float:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["full_val_loss"] for r in rows if "full_val_loss" in r][-1]


def assert_same_run(one: Path, other: Path) -> None:
    assert abs(full_val_loss(one) - full_val_loss(other)) <= 1e-5  # the whole split, every window once
    a, b = train_losses(one), train_losses(other)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    for step in a:
        assert abs(a[step] - b[step]) <= 1e-5, (step, a[step], b[step])
    x, y = GPT2.from_pretrained(one / "latest"), GPT2.from_pretrained(other / "latest")
    for (name, p), q in zip(x.named_parameters(), y.parameters(), strict=True):
        assert (p - q).abs().max() < 1e-4, name


@pytest.mark.slow
def test_fsdp_matches_one_process_and_resumes_on_another_world_size(tmp_path: Path) -> None:
    data = make_char_data(tmp_path / "data")
    single = run_gpt2(tiny_args(data, tmp_path / "one", **RUN))
    assert single.returncode == 0, single.stderr
    fsdp = {**RUN, "system.parallel": "fsdp"}

    # 2 -> 1: steps 1-3 sharded over 2 processes, 4-6 on one process from those shards
    first = torchrun(tiny_args(data, tmp_path / "a", **fsdp, **{"train.stop_after_steps": 3}))
    assert first.returncode == 0, first.stderr[-3000:]
    shards = sorted(p.name for p in (tmp_path / "a" / "latest" / SHARDS).iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]  # each rank wrote its own
    rest = run_gpt2([*tiny_args(data, tmp_path / "a", **fsdp), "--resume", "true"])
    assert rest.returncode == 0, rest.stderr
    assert "resumed from" in rest.stderr
    assert_same_run(tmp_path / "one", tmp_path / "a")

    # 1 -> 2, with activation checkpointing (the same numbers, recomputed)
    fsdp["system.activation_checkpointing"] = True
    first = run_gpt2(tiny_args(data, tmp_path / "b", **fsdp, **{"train.stop_after_steps": 3}))
    assert first.returncode == 0, first.stderr
    rest = torchrun([*tiny_args(data, tmp_path / "b", **fsdp), "--resume", "true"])
    assert rest.returncode == 0, rest.stderr[-3000:]
    assert_same_run(tmp_path / "one", tmp_path / "b")

    # the gathered checkpoint is an ordinary one: transformers computes the same logits
    transformers = pytest.importorskip("transformers")
    ours = GPT2.from_pretrained(tmp_path / "b" / "latest").eval()
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "b" / "latest").eval()
    ids = torch.tensor([[1, 5, 9, 2, 7]])
    with torch.no_grad():
        assert torch.allclose(ours(ids), theirs(ids).logits, atol=1e-5)


def _tiny_model_and_optimizer(seed: int) -> tuple[GPT2, torch.optim.Optimizer]:
    from conftest import tiny_config

    torch.manual_seed(seed)
    model = GPT2(tiny_config(n_layers=4, emb_dim=128))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    optimizer.step()  # moments to save
    return model, optimizer


SAVER = """
import sys, torch
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_fsdp import _tiny_model_and_optimizer
from gpt2.training.distributed import DistInfo
from gpt2.training.sharded_checkpoint import ShardedCheckpoints
model, optimizer = _tiny_model_and_optimizer(1)
checkpoints = ShardedCheckpoints(Path({out!r}), None, {{}}, DistInfo(), optimizer)
print("ready", flush=True)
step = 0
while True:
    step += 1
    checkpoints.save("latest", step, model, lambda: {{"step": step}})
"""


@pytest.mark.slow
def test_sigkill_during_a_sharded_save_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    """Kill a process that writes sharded checkpoints in a loop; `latest` must verify and load
    (weights, shards and training state) after every kill, and killed saves are cleaned up."""
    from gpt2.training.distributed import DistInfo
    from gpt2.training.sharded_checkpoint import ShardedCheckpoints

    model, optimizer = _tiny_model_and_optimizer(0)
    checkpoints = ShardedCheckpoints(tmp_path, None, {}, DistInfo(), optimizer)
    checkpoints.save("latest", 0, model, lambda: {"step": 0})
    script = SAVER.format(tests=str(Path(__file__).parent), out=str(tmp_path))
    for delay in (0.2, 0.6):
        kill_after(script, delay)
        latest = tmp_path / "latest"
        loaded = GPT2.from_pretrained(latest)  # repairs a swap cut between its renames
        verify_checkpoint(latest)  # every file, the shards included, matches the manifest
        fresh, fresh_optimizer = _tiny_model_and_optimizer(2)
        load_sharded(latest, fresh, fresh_optimizer)
        for p, q in zip(fresh.parameters(), loaded.parameters(), strict=True):
            assert torch.equal(p, q)  # the shards and the gathered weights are of the same save
    checkpoints.save("latest", 99, model, lambda: {"step": 0})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]  # killed saves cleaned up


def test_fsdp_refuses_muon_and_fp16(tmp_path: Path) -> None:
    from gpt2.training.fsdp import check_fsdp

    with pytest.raises(GPT2Error, match="--optim.name adamw"):
        check_fsdp("muon", torch.float32)
    with pytest.raises(GPT2Error, match="--system.dtype bf16"):
        check_fsdp("adamw", torch.float16)
    data = make_char_data(tmp_path / "data")
    proc = run_gpt2(tiny_args(data, tmp_path / "run", **{"system.parallel": "fsdp", "optim.name": "muon"}))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "Muon's orthogonalisation" in proc.stderr
