"""benchmarks/gpu_check.sh parses, and its Python parts run on the CPU with a tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from train_helpers import ROOT

ENV = {**os.environ, "GPU_CHECK_DEVICE": "cpu", "GPU_CHECK_TINY": "1", "OMP_NUM_THREADS": "1",
       "PYTHONPATH": str(ROOT / "src")}


def _bench(*args: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), *args], env=ENV,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_the_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_check.sh")]).returncode == 0


def test_parity_and_decode_run_on_the_cpu() -> None:
    assert "OK" in _bench("parity")
    out = _bench("decode", "--batches", "1", "--new_tokens", "4")
    assert "graph == dynamic tokens: True" in out and "transformers" in out


def test_train_summary_reads_the_steady_state(tmp_path: Path) -> None:
    rows = [{"step": 10, "tokens": 1, "train_loss": 5.0}, {"step": 20, "tokens": 2, "train_loss": 4.0},
            {"step": 20, "tokens": 2, "steady_ms_per_step": 45.4, "steady_tokens_per_s": 360000.0,
             "steady_mfu": 0.31}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = _bench("train-summary", str(tmp_path))
    assert "45.4 ms/step" in out and "360,000 tok/s" in out and "31.0%" in out


@pytest.mark.slow
def test_transformers_training_step_runs_on_the_cpu() -> None:
    assert "ms/step" in _bench("hf-train", "--steps", "2", "--batch", "1", "--seq", "32")
