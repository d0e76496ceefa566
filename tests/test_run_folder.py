"""The run folder: `--overwrite` deletes only what a run wrote, one process per folder, and a
run killed before its first checkpoint never leaves a folder no command accepts."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gpt2.cli import main
from gpt2.training.run_folder import lock_run_folder
from train_helpers import ROOT, VENV_BIN, fails_in_one_line, tiny_args


@pytest.fixture(scope="module")
def finished(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-step run to copy."""
    out = tmp_path_factory.mktemp("finished") / "run"
    main(tiny_args(data, out, steps=2, **{"eval.sample_tokens": 0}))
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _copy(run: Path, to: Path) -> Path:
    subprocess.run(["cp", "-a", str(run), str(to)], check=True)
    return to


FOREIGN = {  # what a user may keep in a run folder, as (name, how to make it)
    "a file": ("precious.txt", lambda p: p.write_text("mine")),
    "a folder with a file": ("other_run", lambda p: (p.mkdir(), (p / "notes.md").write_text("notes"))),
    "a hidden file": (".env", lambda p: p.write_text("X=1")),
    "an empty folder": ("keep", lambda p: p.mkdir()),
    "a symlink": ("link", lambda p: p.symlink_to("/etc/hostname")),
    "a name like a run file": ("latest.bak", lambda p: p.write_text("backup")),
}


@pytest.mark.parametrize("kind", FOREIGN)
def test_overwrite_refuses_a_folder_holding_files_no_run_writes(
        kind: str, finished: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = _copy(finished, tmp_path / "run")
    name, make = FOREIGN[kind]
    make(out / name)
    before = _snapshot(out)
    err = fails_in_one_line([*tiny_args(data, out, steps=2), "--overwrite=true"], capsys)
    assert name in err and "refusing to delete" in err
    assert _snapshot(out) == before and os.path.lexists(out / name)


def test_overwrite_replaces_a_run_folder_holding_only_run_files(finished: Path, data: Path,
                                                                tmp_path: Path) -> None:
    out = _copy(finished, tmp_path / "run")
    before = (out / "latest" / "model.safetensors").read_bytes()
    main([*tiny_args(data, out, steps=2, **{"train.seed": 3, "eval.sample_tokens": 0}), "--overwrite=true"])
    assert (out / "latest" / "model.safetensors").read_bytes() != before
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".replaced")) == []


@pytest.mark.parametrize("flags", [["--resume=true"], ["--overwrite=true"], []])
def test_a_run_folder_in_use_is_refused(flags: list[str], finished: Path, data: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    out = _copy(finished, tmp_path / "run") if flags else tmp_path / "new"
    holder = lock_run_folder(out)  # as a running `gpt2 train` holds it (another open file: flock conflicts)
    before = _snapshot(out)
    err = fails_in_one_line([*tiny_args(data, out, steps=4), *flags], capsys)
    assert "in use by another gpt2 process" in err
    assert _snapshot(out) == before
    holder.lock.close()


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen([str(VENV_BIN / "gpt2"), *args], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(pattern: str, folder: Path, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not list(folder.glob(pattern)):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_runs_never_lock_out_the_folder(finished: Path, data: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    """Real processes: a second run of a busy folder is refused; SIGKILL frees the folder; a run killed
    before its first checkpoint neither blocks a new run nor hides an old run it was replacing."""
    long_run = {"eval.interval": 10_000, "eval.sample_tokens": 0, "checkpoint.interval": 10_000}
    out = _copy(finished, tmp_path / "run")
    before = _snapshot(out / "latest")
    # --overwrite of a finished run, killed before the new run's first checkpoint
    proc = _start([*tiny_args(data, out, steps=100_000, **long_run), "--overwrite=true"])
    _wait_for(".replaced-*/latest", out, proc)
    err = fails_in_one_line([*tiny_args(data, out, steps=4), "--resume=true"], capsys)
    assert "in use by another gpt2 process" in err
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the old run is back, and resumable
    main([*tiny_args(data, out, steps=2, **{"eval.sample_tokens": 0}), "--resume=true"])
    assert "already finished at step 2" in capsys.readouterr().err
    assert _snapshot(out / "latest") == before
    # a fresh run killed before its first checkpoint: --resume says start again, and starting again works
    fresh = tmp_path / "fresh"
    proc = _start(tiny_args(data, fresh, steps=100_000, **long_run))
    _wait_for("metrics.jsonl", fresh, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    err = fails_in_one_line([*tiny_args(data, fresh, steps=2), "--resume=true"], capsys)
    assert "without --resume" in err
    main(tiny_args(data, fresh, steps=2, **{"eval.sample_tokens": 0}))
    assert (fresh / "latest" / "model.safetensors").exists()
