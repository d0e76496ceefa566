"""Interrupting `gpt2 prepare` (a real process on a few MB of text, two workers) at random moments,
by every signal, sent to the main process, to a worker or to the whole process group as a terminal's
Ctrl-C is: it ends within seconds, leaves no worker behind, prints no traceback, and the data set
prepared before is still there, whole."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpt2.data.meta import ShardsMeta
from gpt2.data.prepare import PrepareOptions, prepare
from gpt2.data.shards import verify_shards
from train_helpers import ROOT, TEXT

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]
GPT2 = Path(sys.executable).with_name("gpt2")
STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # handled: `gpt2: interrupted`, status 130


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "big.txt"
    path.write_text(TEXT * 6000)  # ~36 MB: a few seconds of work for two workers, even on a fast machine
    return path


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper is dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


PAIRS = [(sig, target) for target in ("main", "worker") for sig in (*STOPPING, signal.SIGKILL)]
PAIRS += [(signal.SIGINT, "group")] * 2  # as a terminal's Ctrl-C: every process of the group
CASES = [pytest.param(sig, target, id=f"{sig.name}-{target}-{i}") for i, (sig, target) in enumerate(PAIRS)]


@pytest.mark.parametrize(("sig", "target"), CASES)
def test_a_signal_at_a_random_moment_ends_prepare_cleanly(sig: signal.Signals, target: str, corpus: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "out"
    small = tmp_path / "small.txt"
    small.write_text(TEXT)
    prepare([str(small)], out, "char", options=PrepareOptions(workers=1, progress=False))
    old = _snapshot(out)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    command = [str(GPT2), "prepare", "--input", str(corpus), "--out", str(out), "--tokenizer", "char",
               "--workers", "2", "--progress", "false"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # its own process group, as a terminal's job is
    deadline = time.monotonic() + 60
    while len(_children(proc.pid)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    workers = _children(proc.pid)
    time.sleep(random.uniform(0, 0.6))  # somewhere in the char pass, the encoding pass or the swap
    if proc.poll() is not None:
        pytest.skip("prepare finished before the signal")
    seen = set(workers) | set(_children(proc.pid))  # the encoding pass has a pool of its own
    if target == "main":
        proc.send_signal(sig)
    elif target == "worker":
        for pid in [*_children(proc.pid), *workers]:  # one that is alive (the passes have a pool each)
            try:
                os.kill(pid, sig)
                break
            except ProcessLookupError:
                continue
    else:
        os.killpg(proc.pid, sig)
    try:
        _, err = proc.communicate(timeout=20)  # no hang
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"prepare did not end within 20 s of {sig.name} to the {target}")
    time.sleep(0.5)
    seen |= set(_children(proc.pid))
    assert [p for p in seen if _alive(p)] == []  # no worker lives on
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = err.strip().splitlines()
    if proc.returncode in (0, -sig) and target != "worker":  # the signal came after the work was done
        assert sig == signal.SIGKILL or not lines or not lines[-1].startswith("gpt2:"), err
    elif proc.returncode == -signal.SIGKILL:
        assert target == "main" and sig == signal.SIGKILL
    elif proc.returncode == 130:
        assert lines == ["gpt2: interrupted"] and sig in STOPPING and target != "worker", err
    elif target == "worker" and proc.returncode == 0:  # the worker ignored Ctrl-C, or had finished
        assert sig == signal.SIGINT or not lines, err
    else:
        assert proc.returncode == 1 and target == "worker" and sig != signal.SIGINT, err
        assert len(lines) == 1 and lines[0].startswith("gpt2: error: a worker process died"), err
    _assert_old_or_new(out, old, corpus)
    if target == "worker" and sig == signal.SIGINT:
        assert proc.returncode == 0  # a worker ignores Ctrl-C: only the main process decides


def _assert_old_or_new(out: Path, old: dict[str, bytes], corpus: Path) -> None:
    """The data set in `out` is the one from before, untouched, or the new one, whole."""
    if _snapshot(out) != old:
        assert ShardsMeta.read(out).sources[0]["path"] == str(corpus)
        verify_shards(out)  # every shard against its sha256
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".out.old")] == []
