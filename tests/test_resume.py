"""Resume: bit-identical continuation, SIGINT saves and exits, SIGKILL never corrupts `latest`."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from gpt2 import GPT2
from gpt2.checkpoint import load_training_state
from gpt2.cli import main
from gpt2.training.checkpointing import capture_rng, restore_rng
from train_helpers import ROOT, VENV_BIN, run_gpt2, tiny_args, train_losses


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, float]:
    """Losses of an uninterrupted 10-step run with dropout (so the RNG state matters), run by
    `gpt2 train` in this process (the runs compared with it start processes of their own)."""
    out = tmp_path_factory.mktemp("ref")
    threads = torch.get_num_threads()
    main(tiny_args(data, out, steps=10, **{"model.drop_rate": 0.1}))
    torch.set_num_threads(threads)  # the run took 1 (--system.threads)
    return train_losses(out)


def test_rng_state_round_trip() -> None:
    import numpy as np
    import torch

    state = capture_rng()
    first = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng(state)
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0]) and (first[1] == second[1]).all() and first[2] == second[2]


@pytest.mark.slow
def test_resume_is_bit_identical(data: Path, reference: dict[int, float], tmp_path: Path,
                                 one_thread: None) -> None:
    """Steps 1-4 in a process of their own, then 5-10 resumed in this one."""
    args = tiny_args(data, tmp_path, steps=10, **{"model.drop_rate": 0.1})
    first = run_gpt2([*args, "--train.stop_after_steps=4"])
    assert first.returncode == 0, first.stderr
    assert load_training_state(tmp_path / "latest")["step"] == 4
    main([*args, "--resume=true"])
    assert train_losses(tmp_path) == reference  # exact float equality at every step


@pytest.mark.slow
def test_the_same_command_resumes_three_times(data: Path, tmp_path: Path, one_thread: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """One command with `auto` precision, attention and threads, split over four invocations
    (as job slots do with --train.stop_after_steps): every resume is accepted, train_config.json
    keeps `auto` as given beside what it resolved to, and the run ends exactly where an
    uninterrupted run with those choices does. (In-process: five torch imports would dominate.)"""
    from gpt2.cli import main

    monkeypatch.setenv("GPT2_CACHE_DIR", str(tmp_path / "cache"))
    split = tmp_path / "split"
    args = tiny_args(data, split, steps=10, **{"model.drop_rate": 0.1, "system.dtype": "auto",
                                               "system.threads": 0, "train.stop_after_steps": 3})
    for resume in ([], ["--resume=true"], ["--resume=true"], ["--resume=true"]):  # steps 3, 6, 9, 10
        main([*args, *resume])
    assert load_training_state(split / "latest")["step"] == 10
    saved = json.loads((split / "latest" / "train_config.json").read_text())
    system, model = saved["system"], saved["model"]
    assert (system["dtype"], system["threads"], model["attention"]) == ("auto", 0, None)  # as given
    chosen = saved["runtime"]
    assert "as the saved run chose" in chosen["reason"]
    whole = tmp_path / "whole"
    explicit = {"system.dtype": chosen["dtype"], "system.threads": chosen["threads"],
                "model.attention": chosen["attention"], "model.drop_rate": 0.1}
    main(tiny_args(data, whole, steps=10, **explicit))
    assert train_losses(split) == train_losses(whole)  # exact float equality at every step


def test_a_resume_compares_auto_with_the_choice_it_stands_for() -> None:
    """`auto` now means the saved run's choice (also in runs saved with it written in, before
    the settings and the choices were kept apart); a concrete value that differs is refused."""
    from gpt2.training.config import RunConfig, SystemSection
    from gpt2.training.resume import check_changes

    auto = RunConfig(system=SystemSection(dtype="auto", threads=0))
    pinned = RunConfig(system=SystemSection(dtype="bf16", threads=2)).to_dict()
    legacy = {**pinned, "runtime": {"dtype": "bfloat16", "threads": 2, "attention": "explicit"}}
    legacy["model"] = {**legacy["model"], "attention": "explicit"}
    assert check_changes(auto, legacy, allow=False) == []
    saved = {**auto.to_dict(), "runtime": {"dtype": "bf16", "threads": 2, "attention": "explicit"}}
    assert check_changes(auto, saved, allow=False) == []
    with pytest.raises(ValueError, match=r"--system.dtype float32 \(saved auto\)"):
        check_changes(RunConfig(system=SystemSection(dtype="float32")), saved, allow=False)


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([str(VENV_BIN / "gpt2"), *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(condition, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out waiting for the training process"
        time.sleep(0.05)


def _logged_steps(out: Path) -> int:
    path = out / "metrics.jsonl"
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if '"train_loss"' in line)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_saves_and_exits_cleanly(data: Path, tmp_path: Path, signum: int) -> None:
    """Ctrl-C (or a scheduler's SIGTERM) in the middle of a long run: a checkpoint of the
    current step, exit code 130, one line of explanation and no traceback; --resume then
    continues from that step."""
    args = tiny_args(data, tmp_path, steps=5000, **{"eval.interval": 0, "eval.final_full": False,
                                                     "train.max_passes": 0})
    proc = _start(args)
    _wait_for(lambda: _logged_steps(tmp_path) >= 2 or proc.poll() is not None)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted at step" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr
    step = load_training_state(tmp_path / "latest")["step"]
    assert step >= 2
    resumed = run_gpt2([*args, "--resume=true", "--train.stop_after_steps=2"])
    assert resumed.returncode == 0, resumed.stderr
    assert max(train_losses(tmp_path)) == step + 2
    assert load_training_state(tmp_path / "latest")["step"] == step + 2


@pytest.mark.slow
def test_sigkill_never_corrupts_latest(data: Path, reference: dict[int, float], tmp_path: Path) -> None:
    """Kill a real `gpt2 train` 6 times at random moments (checkpointing every step, so kills
    land in the middle of writes too); the last checkpoint always loads and the run still ends
    with the uninterrupted run's losses, bit for bit. (Each kill costs a process start: most
    of this test's time.)"""
    args = tiny_args(data, tmp_path, steps=10, **{"model.drop_rate": 0.1, "checkpoint.interval": 1})
    rng = random.Random(0)
    resume: list[str] = []
    for _ in range(6):
        proc = _start([*args, *resume])
        before = _logged_steps(tmp_path)
        _wait_for(lambda b=before, p=proc: _logged_steps(tmp_path) > b or p.poll() is not None)
        time.sleep(rng.uniform(0.0, 0.15))
        proc.kill()  # SIGKILL: no handler runs, no cleanup
        proc.communicate()
        if (tmp_path / "latest").exists() or (tmp_path / ".latest.old").exists():
            model = GPT2.from_pretrained(tmp_path / "latest")  # repairs an interrupted swap, verifies hashes
            assert model.cfg.n_layers == 2
            assert load_training_state(tmp_path / "latest")["step"] >= 1
            resume = ["--resume=true"]
    final = run_gpt2([*args, *resume])
    assert final.returncode == 0, final.stderr
    assert train_losses(tmp_path) == reference
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "train_loss" in r]
    assert steps == sorted(set(steps))  # no step logged twice after the restarts
