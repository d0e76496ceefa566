"""Shared test helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Under pytest-xdist (`pytest -n 2`) each worker is a process of its own: give each its share of
# the cores, so two workers running torch do not each start a thread per core and wait on each
# other. Set before torch is imported; the processes the tests start inherit it.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _SHARE = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_SHARE))

import pytest  # noqa: E402
import torch  # noqa: E402

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    torch.set_num_threads(min(torch.get_num_threads(), _SHARE))

from gpt2 import GPT2, GPT2Config
from gpt2.runtime import probe
from gpt2.runtime.probe import combo_key
from hardware_helpers import fake_seconds
from train_helpers import make_char_data, run_gpt2, tiny_args


def tiny_config(**overrides) -> GPT2Config:
    """A model small enough to build and run in milliseconds."""
    base = dict(vocab_size=97, context_length=32, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)
    return GPT2Config(**{**base, **overrides})


@pytest.fixture
def tiny_model() -> GPT2:
    torch.manual_seed(0)
    return GPT2(tiny_config()).eval()


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and on a shared machine each op would wait for a
    descheduled worker thread (10x slower tests); use one and restore the setting after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A char-level `gpt2 prepare` folder of train_helpers.TEXT, one per test module."""
    return make_char_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One finished 12-step run in a real `gpt2 train` process: (run folder, stdout)."""
    out = tmp_path_factory.mktemp("run")
    result = run_gpt2(tiny_args(data, out, steps=12, **{"eval.interval": 4}))
    assert result.returncode == 0, result.stderr
    return out, result.stdout


@pytest.fixture
def good(tmp_path) -> Path:
    """A small, valid UTF-8 corpus file."""
    path = tmp_path / "good.txt"
    path.write_text("To be, or not to be, that is the question.\n\n" * 200, encoding="utf-8")
    return path


@pytest.fixture
def fake_probe(monkeypatch, tmp_path):
    """Cache in tmp_path; `measure` returns `fake_seconds` and records what it was asked."""
    monkeypatch.setenv("GPT2_CACHE_DIR", str(tmp_path))
    calls: list[list[tuple[str, str, int]]] = []

    def measure(cfg, batch, seq, combos):
        calls.append(list(combos))
        return {combo_key(*c): fake_seconds(*c) for c in combos}

    monkeypatch.setattr(probe, "measure", measure)
    monkeypatch.setattr(probe, "others_share", lambda before, after: 0.0)  # a quiet machine...
    monkeypatch.setattr(probe, "LOAD_SAMPLE_S", 0.0)  # ...sampled at once
    return calls


def kill_after(script: str, delay: float) -> None:
    """Run `script` (python -c) until it prints "ready", let it work `delay` more seconds, then
    kill it unless it ended by itself: a crash at an arbitrary point of what it was doing."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.kill()
    proc.wait()
