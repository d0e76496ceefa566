"""`gpt2 prepare` when things break underneath it: a killed worker, a swap that fails or is
killed half-way, a full disk, a shard changed after the fact. The old data always survives,
and the next command says what happened in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpt2.data.loaders import RandomWindowLoader
from gpt2.data.prepare import PrepareOptions, prepare
from prepare_helpers import cli_error, snapshot


@pytest.mark.slow
def test_a_killed_worker_fails_cleanly_instead_of_hanging(tmp_path):
    import signal
    import time

    corpus = tmp_path / "big.txt"
    corpus.write_text("All the world's a stage, and all the men and women merely players.\n\n" * 400_000)
    out = tmp_path / "out"
    script = Path(sys.executable).with_name("gpt2")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "gpt2"]
    proc = subprocess.Popen([*command, "prepare", "--input", str(corpus), "--out", str(out), "--workers", "2",
                             "--progress", "false"], stderr=subprocess.PIPE, text=True)
    children_file = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    if not children_file.exists():
        proc.kill()
        pytest.skip("this kernel does not list child processes in /proc")
    children: list[int] = []
    deadline = time.monotonic() + 60
    while not children and time.monotonic() < deadline and proc.poll() is None:
        if list(tmp_path.glob(".out.tmp-*/train_*.bin")):  # tokenizing has started
            children = [int(c) for c in children_file.read_text().split()]
        time.sleep(0.01)
    if not children:
        proc.kill()
        pytest.skip("prepare finished before a worker could be killed")
    os.kill(children[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert err.strip().splitlines()[-1].startswith("gpt2: error: a worker process died")
    assert not out.exists()


def test_failed_swap_puts_the_old_shards_back(tmp_path, good, monkeypatch):
    """The rename that swaps the new set in fails: the old set is back in place, complete, and
    nothing of the new one is left."""
    import gpt2.files

    out = tmp_path / "out"
    prepare([str(good)], out, options=PrepareOptions(workers=1, progress=False))
    before = snapshot(out)
    real_rename = os.rename

    def failing_rename(src, dst):
        if Path(src).name.startswith(".out.tmp-"):
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(gpt2.files.os, "rename", failing_rename)
    with pytest.raises(OSError, match="No space left"):
        prepare([str(good)], out, tokenizer="char", options=PrepareOptions(workers=1, overwrite=True,
                                                                           progress=False))
    monkeypatch.undo()
    assert snapshot(out) == before and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    x, _ = RandomWindowLoader(out, batch_size=2, context_length=8).next_batch()
    assert int(x.max()) > 1000  # GPT-2 ids: the old set, not the char one


def test_prepare_killed_during_the_swap_is_read_and_recovered(tmp_path, good, capsys):
    """Killed between the swap's two renames: readers read the previous set meanwhile, and the
    next run puts it back."""
    out = tmp_path / "out"
    prepare([str(good)], out, options=PrepareOptions(workers=1, progress=False))
    before = snapshot(out)
    out.rename(tmp_path / ".out.old")
    staged = tmp_path / ".out.tmp-999999999"  # a pid no process has: its owner was killed
    staged.mkdir()
    (staged / "train_000000.bin").write_bytes(b"half of a new shard")
    x, _ = RandomWindowLoader(out, batch_size=2, context_length=8).next_batch()
    assert int(x.max()) > 1000
    capsys.readouterr()
    prepare([str(good)], out, options=PrepareOptions(workers=1, progress=False))
    assert "already up to date" in capsys.readouterr().err
    assert snapshot(out) == before and not (tmp_path / ".out.old").exists()
    prepare([str(good)], out, tokenizer="char",
            options=PrepareOptions(workers=1, overwrite=True, progress=False))
    assert not staged.exists()  # a later write clears what the killed one left


def test_a_shard_changed_in_place_is_caught_before_training(tmp_path, good, capsys):
    out = tmp_path / "out"
    prepare([str(good)], out, tokenizer="char", options=PrepareOptions(workers=1, progress=False))
    shard = out / "train_000000.bin"
    data = bytearray(shard.read_bytes())
    j = next(j for j in range(len(data) - 4, 64, -2) if data[j] != data[-2])  # another low byte
    data[-2], data[j] = data[j], data[-2]  # two ids swapped: same size, ids still in the vocabulary
    shard.write_bytes(bytes(data))
    line = cli_error(capsys, "verify", "--dir", str(out))
    assert "train_000000.bin: its tokens do not match their sha256" in line
    line = cli_error(capsys, "train", "--data.dir", str(out), "--train.out_dir", str(tmp_path / "run"))
    assert "do not match their sha256" in line and not (tmp_path / "run").exists()


@pytest.mark.parametrize("where", ["worker", "writer"])
def test_a_full_disk_ends_prepare_in_seconds_and_keeps_the_old_data(tmp_path, good, monkeypatch, where):
    """ENOSPC in a worker process or in the writer: one clear error within seconds (no hang on
    the pool's shutdown) and the previous data set as it was."""
    import errno
    import time

    import gpt2.data.shards
    import gpt2.data.workers

    out = tmp_path / "out"
    prepare([str(good)], out, tokenizer="char", options=PrepareOptions(workers=1, progress=False))
    before = snapshot(out)
    big = tmp_path / "big.txt"
    big.write_text(good.read_text() * 200)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    target = ((gpt2.data.workers, "_chunk_tokens") if where == "worker"
              else (gpt2.data.shards.ShardWriter, "write"))
    monkeypatch.setattr(*target, full)  # forked workers inherit the patch
    start = time.monotonic()
    with pytest.raises(OSError, match="No space left"):
        prepare([str(big)], out, tokenizer="char", options=PrepareOptions(workers=2, overwrite=True,
                                                                          progress=False))
    assert time.monotonic() - start < 30
    assert snapshot(out) == before and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
