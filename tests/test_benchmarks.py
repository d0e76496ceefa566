"""Every benchmark script still starts: its imports resolve against the current package (a
moved function once broke bench_prepare.py without any other test noticing). Only `--help`
runs here; the measurements themselves are never timed in tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))

# One fresh process runs every script's `--help` as `python SCRIPT --help` would (as __main__,
# its folder first on sys.path), so torch is imported once, not once per script.
RUN_ALL = """
import contextlib, io, json, runpy, sys, traceback
results = {}
for path in sys.argv[1:]:
    out, err, code = io.StringIO(), io.StringIO(), 0
    sys.argv = [path, "--help"]
    sys.path.insert(0, path.rsplit("/", 1)[0])
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(path, run_name="__main__")
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:
            code = 1
            traceback.print_exc()
    sys.path.pop(0)
    results[path] = [code, out.getvalue(), err.getvalue()]
sys.__stdout__.write(json.dumps(results))
"""


@pytest.fixture(scope="module")
def helped() -> dict[str, list]:
    """script path -> [exit status, stdout, stderr] of its `--help`."""
    proc = subprocess.run([sys.executable, "-c", RUN_ALL, *map(str, BENCHMARKS)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.name for p in BENCHMARKS])
def test_benchmark_script_starts(script: Path, helped: dict[str, list]) -> None:
    code, out, err = helped[str(script)]
    assert code == 0, err[-2000:]
    assert "usage" in out.lower()
