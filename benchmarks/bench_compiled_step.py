"""The compiled decoding step (`--compile true`) against the eager one, paired, per precision.

GPT-2 124M with seeded random weights, one row. Two engines over the same model, one eager
(`decoder="dynamic"`) and one compiled (`decoder="compiled"`), each continue their own prompt;
they take turns of 8 tokens, --pairs times, so both see the same minutes of a shared machine,
and each pair gives one ratio (eager ms per token / compiled ms per token). The positions grow
from 16 to 16 + 8 x pairs. The compile itself (first calls) is left out, and timed on its own.

    .venv/bin/python benchmarks/bench_compiled_step.py [--threads 1,2] [--pairs 40]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gpt2 import GPT2, GPT2Config
from gpt2.generation import SamplingOptions, prepare_for_decoding
from gpt2.generation.engine import Engine, RowSpec
from gpt2.generation.text import QUANTIZERS
from gpt2.runtime.hardware import describe

PRECISIONS = ("float32", "bf16", "fp16", "int8", "int8-dynamic")
TURN = 8  # tokens per engine per turn


def model_in(precision: str) -> GPT2:
    torch.manual_seed(0)
    model = GPT2(GPT2Config()).eval()  # gpt2 124M
    if precision == "bf16":
        model = model.to(torch.bfloat16)
    elif precision in QUANTIZERS:
        QUANTIZERS[precision](model)
    return prepare_for_decoding(model)


def timed_turn(engine: Engine) -> float:
    start = time.perf_counter()
    for _ in range(TURN):
        engine.step()
    return (time.perf_counter() - start) / TURN * 1e3  # ms per token


def measure(precision: str, pairs: int) -> tuple[float, float, list[float], float]:
    """-> eager and compiled ms per token (medians), each pair's ratio, compile seconds."""
    torch._dynamo.reset()  # one model's programs at a time, as in a process (dynamo keeps 8)
    model = model_in(precision)
    greedy = SamplingOptions(temperature=0)
    engines = {}
    with torch.no_grad():
        for decoder in ("dynamic", "compiled"):
            engines[decoder] = Engine(model, 1, 16 + TURN * (pairs + 2), decoder=decoder)
            engines[decoder].add(RowSpec(list(range(100, 116)), 10**6, greedy))
        start = time.perf_counter()
        engines["compiled"].step()  # the compile
        compile_s = time.perf_counter() - start
        timed_turn(engines["dynamic"]), timed_turn(engines["compiled"])  # warm-up
        eager, compiled = [], []
        for _ in range(pairs):
            eager.append(timed_turn(engines["dynamic"]))
            compiled.append(timed_turn(engines["compiled"]))
    ratios = sorted(e / c for e, c in zip(eager, compiled, strict=True))
    return statistics.median(eager), statistics.median(compiled), ratios, compile_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    args = parser.parse_args()
    print(f"{describe()}; 124M random weights, one row, {args.pairs} pairs of {TURN}-token turns")
    print(f"{'threads':>7} {'precision':>12} {'eager ms':>8} {'compiled ms':>11} {'eager/compiled':>14} "
          f"{'quartiles':>11} {'compile s':>9}")
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for precision in args.precisions.split(","):
            eager, compiled, ratios, compile_s = measure(precision, args.pairs)
            q = len(ratios) // 4
            quartiles = f"{ratios[q]:.2f}-{ratios[-q - 1]:.2f}"
            print(f"{threads:>7} {precision:>12} {eager:>8.2f} {compiled:>11.2f} "
                  f"{statistics.median(ratios):>14.3f} {quartiles:>11} {compile_s:>9.1f}")


if __name__ == "__main__":
    main()
