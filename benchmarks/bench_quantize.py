"""Decoding speed of weight-only int8 (`gpt2.quantize.quantize_int8`) against float32.

The gpt2 preset (124M) with seeded random weights, batch 1, a 16-token prompt, 128 new
tokens, greedy. float32 is prepared as `gpt2 generate` prepares it (`prepare_for_decoding`).
Runs are interleaved and the median of --repeats is kept: shared machines are noisy.
--kernels also times one pass over the 49 weight matrices (one token's worth of matrix-vector
products) for each int8 candidate kernel torch offers.

    .venv/bin/python benchmarks/bench_quantize.py [--threads N] [--repeats 5] [--kernels]
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-avx2 \\
        .venv/bin/python benchmarks/bench_quantize.py      # imitate an AVX2-only CPU

(Give the imitation its own TORCHINDUCTOR_CACHE_DIR: inductor's cache does not tell the two
ISAs apart on one machine, and a kernel built for the other one can give wrong results.)
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import statistics
import subprocess
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from gpt2 import GPT2, GPT2Config
from gpt2.generation import SamplingOptions, generate, prepare_for_decoding
from gpt2.generation.quantize import Int8Linear, quantize_int8, quantize_weight

PROMPT_LEN, NEW_TOKENS = 16, 128


def greedy(model: GPT2, idx: torch.Tensor, n: int) -> torch.Tensor:
    return generate(model, idx, n, SamplingOptions(temperature=0))


def medians(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each run, the runs interleaved so that noise hits them alike."""
    for fn in runs.values():
        fn()  # warm up (and compile)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def cpu_description() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "lscpu unavailable"
    model = re.search(r"Model name:\s*(.*)", out)
    flags = re.search(r"Flags:\s*(.*)", out)
    wanted = sorted(f for f in (flags.group(1).split() if flags else [])
                    if f.startswith(("avx", "amx", "fma")) or f == "f16c")
    return f"{model.group(1) if model else '?'}; flags: {' '.join(wanted)}"


def kernel_table(model: GPT2, repeats: int) -> dict[str, float]:
    """Seconds per pass over every weight matrix (batch 1, one token) for each candidate."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    fp32 = [m.weight.detach().t().contiguous().t() for m in linears]  # prepare_for_decoding's layout
    q = [quantize_weight(w) for w in fp32]
    q8 = [Int8Linear(w, s) for w, s in q]
    qbf16 = [(w, s.bfloat16()) for w, s in q]
    xs = {d: torch.randn(1, d) for d in {w.shape[1] for w in fp32}}
    xbf16 = {d: x.bfloat16() for d, x in xs.items()}
    runs = {
        "float32 F.linear": lambda: [F.linear(xs[w.shape[1]], w) for w in fp32],
        "int8 Int8Linear (compiled)": lambda: [m(xs[m.in_features]) for m in q8],
        "int8 _weight_int8pack_mm, f32 x": lambda: [
            torch._weight_int8pack_mm(xs[w.shape[1]], w, s) for w, s in q],
        "int8 _weight_int8pack_mm, bf16 x": lambda: [
            torch._weight_int8pack_mm(xbf16[w.shape[1]], w, s).float() for w, s in qbf16],
        "int8 dequantize + F.linear": lambda: [F.linear(xs[w.shape[1]], w * s[:, None]) for w, s in q],
    }
    try:  # deprecated API: also rounds the activations to int8 (not weight-only), a reference
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seq = torch.nn.Sequential(*copy.deepcopy(linears))
            dyn = quantize_dynamic(seq, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
        runs["int8 quantize_dynamic (int8 x too)"] = lambda: [m(xs[m.in_features]) for m in dyn]
    except Exception as e:  # noqa: BLE001
        print(f"quantize_dynamic unavailable: {e}")
    with torch.no_grad():
        return medians(runs, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--kernels", action="store_true", help="also time each candidate int8 kernel")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    env = {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if k in os.environ}
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads, env {env or '{}'}")
    print(f"CPU: {cpu_description()}")

    torch.manual_seed(0)
    model = GPT2(GPT2Config()).eval()
    fp32 = prepare_for_decoding(copy.deepcopy(model))
    int8 = quantize_int8(copy.deepcopy(model))
    idx = torch.randint(0, model.cfg.vocab_size, (1, PROMPT_LEN), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    greedy(int8, idx, 2)
    print(f"first int8 call (compiles, or loads the compiled kernel): {time.perf_counter() - start:.1f} s")

    seconds = medians({"float32 (prepared)": lambda: greedy(fp32, idx, NEW_TOKENS),
                       "int8 weight-only": lambda: greedy(int8, idx, NEW_TOKENS)}, args.repeats)
    a, b = greedy(fp32, idx, NEW_TOKENS)[0, PROMPT_LEN:], greedy(int8, idx, NEW_TOKENS)[0, PROMPT_LEN:]
    same = int((a == b).int().cumprod(0).sum())
    print(f"\ngenerate: prompt {PROMPT_LEN} + {NEW_TOKENS} new tokens, greedy, median of {args.repeats}")
    print(f"{'':22s} {'tokens/s':>9s} {'vs float32':>11s}")
    base = seconds["float32 (prepared)"]
    for name, s in seconds.items():
        print(f"{name:22s} {NEW_TOKENS / s:9.1f} {base / s:10.2f}x")
    print(f"greedy tokens equal to float32's for the first {same}/{NEW_TOKENS} (random weights: "
          "near-flat logits, so early divergence is expected; see tests/test_quantize.py)")

    if args.kernels:
        table = kernel_table(model, args.repeats)
        base = table["float32 F.linear"]
        print(f"\none pass over the 49 weight matrices (batch 1), median of {args.repeats}")
        for name, s in table.items():
            print(f"{name:36s} {s * 1e3:8.2f} ms {base / s:6.2f}x")


if __name__ == "__main__":
    main()
