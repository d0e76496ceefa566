"""Decoding speed of this version against another version of the project, side by side: did a
change to the decoding path (e.g. the engine) keep `generate` as fast as before?

Each measurement runs in its own process with one version's `src/` first on the path; the
two versions alternate round by round (this machine is shared and noisy) and the median of
--rounds is kept. The gpt2 preset with the same random weights, a 16-token prompt, 128 new
tokens, greedy, one thread, at float32 and bf16 (bf16 only where the CPU has it natively).

    git worktree add /tmp/gpt2-v0.2 10c2e90     # the version before the decoding engine
    .venv/bin/python benchmarks/bench_decode_versions.py --baseline_src /tmp/gpt2-v0.2/src
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PROMPT_LEN, NEW_TOKENS = 16, 128


def measure(dtype: str, batch: int) -> float:
    """In the worker process: tokens/s of generate() with whichever `gpt2` is on the path."""
    import torch

    from gpt2 import GPT2, GPT2Config
    from gpt2.generation import SamplingOptions, generate

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = GPT2(GPT2Config()).eval().to(getattr(torch, dtype))
    idx = torch.randint(0, 50257, (batch, PROMPT_LEN), generator=torch.Generator().manual_seed(0))
    greedy = SamplingOptions(temperature=0)
    generate(model, idx, 8, greedy)  # warm-up (and the decoding layout)
    start = time.perf_counter()
    generate(model, idx, NEW_TOKENS, greedy)
    return batch * NEW_TOKENS / (time.perf_counter() - start)


def run_worker(src: str, dtype: str, batch: int) -> float:
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    here = str(Path(__file__).parent)
    code = (f"import sys; sys.path.insert(0, {here!r}); import bench_decode_versions as b; "
            f"print(b.measure({dtype!r}, {batch}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline_src", required=True, help="the other version's src/ folder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--batches", default="1,4")
    args = parser.parse_args()
    from gpt2.runtime.hardware import describe

    results = {}
    for dtype in args.dtypes.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            runs: dict[str, list[float]] = {"this": [], "baseline": []}
            for _ in range(args.rounds):
                runs["this"].append(run_worker(str(SRC), dtype, batch))
                runs["baseline"].append(run_worker(args.baseline_src, dtype, batch))
            results[(dtype, batch)] = {name: statistics.median(v) for name, v in runs.items()}
    print(f"generate(), gpt2 124M random weights, {PROMPT_LEN}-token prompt, {NEW_TOKENS} new tokens, "
          f"greedy, 1 thread, median of {args.rounds} interleaved rounds; {describe()}")
    print(f"{'dtype':>9} {'batch':>5} {'this tok/s':>11} {'baseline tok/s':>15} {'this/baseline':>14}")
    for (dtype, batch), r in results.items():
        ratio = r["this"] / r["baseline"]
        print(f"{dtype:>9} {batch:>5} {r['this']:>11.1f} {r['baseline']:>15.1f} {ratio:>14.2f}")
    print(json.dumps({f"{d}/{b}": r for (d, b), r in results.items()}))


if __name__ == "__main__":
    main()
