"""Failures of the machine, for real: a full disk (a file-size limit set with setrlimit, so each
write fails as on a full disk, at a different file each time), SIGHUP / SIGTERM during training,
and a shard truncated under a running job. Each is one line, and nothing already saved is lost."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gpt2.cli import main
from gpt2.data.loaders import RandomWindowLoader, SequentialLoader
from gpt2.data.prepare import PrepareOptions, prepare
from gpt2.data.shards import split_shards
from gpt2.errors import GPT2Error
from train_helpers import ROOT, TEXT, VENV_BIN, tiny_args

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def half_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run stopped (and saved) at step 2 of 6."""
    out = tmp_path_factory.mktemp("half") / "run"
    main(tiny_args(data, out, steps=6, **{"train.stop_after_steps": 2}))
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _gpt2(args: list[str], file_limit: int | None = None, **kw: object) -> subprocess.Popen:
    def limit() -> None:
        if file_limit is not None:  # every write past this size fails (EFBIG), as on a full disk
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([str(VENV_BIN / "gpt2"), *args], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=limit, **kw)


def _one_line(proc: subprocess.Popen, timeout: float = 120) -> str:
    _, err = proc.communicate(timeout=timeout)
    lines = err.strip().splitlines()
    assert proc.returncode == 1 and lines and lines[-1].startswith("gpt2: error:"), err
    assert "Traceback" not in err, err
    return lines[-1]


@pytest.mark.parametrize("limit_kb", [1, 40, 100])  # fails in: plot/TensorBoard, weights, state
def test_a_full_disk_during_training_is_one_line_and_keeps_the_last_checkpoint(
        limit_kb: int, half_run: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(half_run, out)
    before = _files(out / "latest")
    line = _one_line(_gpt2([*tiny_args(data, out, steps=6), "--resume=true"], file_limit=limit_kb * 1024))
    assert "File too large" in line or "could not write" in line
    assert str(out) in line or "r/" in line  # names the file or the checkpoint
    assert _files(out / "latest") == before
    assert [p.name for p in out.iterdir() if ".tmp-" in p.name] == []


def test_a_full_disk_during_prepare_is_one_line_and_keeps_the_old_data(tmp_path: Path) -> None:
    small, big, out = tmp_path / "small.txt", tmp_path / "big.txt", tmp_path / "out"
    small.write_text(TEXT)
    big.write_text(TEXT * 40)
    prepare([str(small)], out, "char", options=PrepareOptions(workers=1, progress=False))
    before = _files(out)
    line = _one_line(_gpt2(["prepare", "--input", str(big), "--out", str(out), "--tokenizer", "char",
                            "--workers", "2", "--progress", "false"], file_limit=64 * 1024))
    assert "File too large" in line
    assert _files(out) == before


def test_a_closed_terminal_saves_and_stops_training(data: Path, tmp_path: Path) -> None:
    """SIGHUP as SIGINT and SIGTERM (test_resume.py): save, say so, exit 130."""
    out = tmp_path / "run"
    long = {"eval.interval": 10_000, "eval.sample_tokens": 0, "checkpoint.interval": 10_000}
    proc = _gpt2(tiny_args(data, out, steps=100_000, **long))
    deadline = time.monotonic() + 60
    while not (out / "metrics.jsonl").exists() or '"train_loss"' not in (out / "metrics.jsonl").read_text():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "saved" in err.strip().splitlines()[-1] and "--resume true" in err
    assert (out / "latest" / "training_state.pt").exists()


@pytest.mark.parametrize("loader", ["random", "sequential"])
@pytest.mark.parametrize("keep", [0, 0.5, 0.99])  # how much of the shard is left
def test_a_shard_truncated_under_a_reader_is_one_line(loader: str, keep: float, data: Path,
                                                      tmp_path: Path) -> None:
    folder = tmp_path / "data"
    shutil.copytree(data, folder)
    kind = RandomWindowLoader if loader == "random" else SequentialLoader
    batches = kind(folder, "train", batch_size=64, context_length=16)
    shard = split_shards(folder, "train")[0]
    os.truncate(shard, int(shard.stat().st_size * keep))
    with pytest.raises(GPT2Error, match="became shorter while this job was reading it"):
        for _ in range(200):  # until a window past the new end is read
            next(iter(batches)) if loader == "random" else list(batches)


def test_a_shard_truncated_under_a_running_training_is_one_line_not_a_bus_error(data: Path,
                                                                                tmp_path: Path) -> None:
    folder = tmp_path / "data"
    shutil.copytree(data, folder)
    out = tmp_path / "run"
    proc = _gpt2(tiny_args(folder, out, steps=100_000, **{"eval.interval": 10_000, "eval.sample_tokens": 0}))
    deadline = time.monotonic() + 60
    while not (out / "metrics.jsonl").exists() or '"train_loss"' not in (out / "metrics.jsonl").read_text():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.truncate(split_shards(folder, "train")[0], 64)
    line = _one_line(proc)
    assert "became shorter" in line and proc.returncode != -signal.SIGBUS
