"""The one-row matrix-vector kernels a CPU decoding step can use, on gpt2-124M's 49 matrices.

A decoding step multiplies one activation row by every weight matrix once, so its speed is the
speed at which a kernel streams weights from memory. This times one pass over the 49 matrices
of gpt2-124M (12 x qkv, proj, fc, proj2, and the 50257 x 768 LM head: 124M weights) per kernel,
passes interleaved, median wall time of --rounds (wall, not CPU time: on 2+ threads the work of
torch's other threads counts too), and prints the effective weight bandwidth
(bytes of weights / time) against a plain read of as many bytes. docs/generation.md says which
of these the `--quantize` modes and `--dtype bf16` use and why.

    .venv/bin/python benchmarks/bench_decode_kernels.py [--threads 1] [--rounds 7]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
import warnings

SHAPES = [(2304, 768), (768, 768), (3072, 768), (768, 3072)] * 12 + [(50257, 768)]  # (out, in)


def kernels() -> dict:
    """name -> (bytes per weight, a function doing one pass). Built once: weights, packing,
    compiled loops."""
    import torch
    import torch.nn.functional as F

    from gpt2.generation.fast_linear import _mkldnn_packed
    from gpt2.generation.half_linear import HalfLinear
    from gpt2.generation.opaque_linear import call_packed, one_row_linear
    from gpt2.generation.quantize import Int8Linear
    from gpt2.generation.quantize_dynamic import DynamicInt8Linear, activation_levels

    torch.manual_seed(0)
    linears = [torch.nn.Linear(i, o, bias=False) for o, i in SHAPES]
    x32 = {i: torch.randn(1, i) for _, i in SHAPES}
    xbf = {i: x.bfloat16() for i, x in x32.items()}
    w_in_out = [lin.weight.detach().t().contiguous().t() for lin in linears]  # float32, (in, out) memory
    packed_32 = [torch.ops.mkldnn._reorder_linear_weight(lin.weight.detach(), 1) for lin in linears]
    w_bf = [lin.weight.detach().bfloat16() for lin in linears]
    bf16_packs = _mkldnn_packed(torch.bfloat16)  # oneDNN packs bf16 only with AVX-512 (or AVX-NE)
    packed_bf = [torch.ops.mkldnn._reorder_linear_weight(w, 1) for w in w_bf] if bf16_packs else []
    half = [HalfLinear.from_linear(lin) for lin in linears]
    int8 = [Int8Linear.from_linear(lin) for lin in linears]
    dyn = [DynamicInt8Linear.from_linear(lin) for lin in linears]
    f16, i8 = torch.ops.quantized.linear_dynamic_fp16, torch.ops.quantized.linear_dynamic
    seven = activation_levels() == 127  # FBGEMM's reduce_range where the CPU lacks VNNI
    w_out_in = [lin.weight.detach() for lin in linears]  # float32, (out, in) memory
    w_f16 = [m.weight for m in half]

    def loops(x: dict, weights: list) -> object:
        """One program of one_row_linear over every matrix, as the compiled step runs them."""
        program = torch.compile(lambda ws: [one_row_linear(x[w.size(1)], w, None) for w in ws])
        return functools.partial(program, weights)

    table = {
        "float32 F.linear ((in, out) memory)": (4, lambda: [F.linear(x32[w.size(1)], w) for w in w_in_out]),
        "float32 oneDNN prepacked (2+ threads)": (4, lambda: [
            torch.ops.mkldnn._linear_pointwise(x32[w.size(1)], p, None, "none", [], "")
            for w, p in zip(w_in_out, packed_32, strict=True)]),
        "bf16 oneDNN prepacked (--dtype bf16)": (2, lambda: [
            torch.ops.mkldnn._linear_pointwise(xbf[w.size(1)], p, None, "none", [], "")
            for w, p in zip(w_bf, packed_bf, strict=True)]),
        "float32 loops, compiled step ((out, in) memory)": (4, loops(x32, w_out_in)),
        "bf16 loops, compiled step": (2, loops(xbf, w_bf)),
        "float16 FBGEMM (--quantize fp16)": (2, lambda: [m(x32[m.in_features]) for m in half]),
        "float16 loops, compiled step": (2, loops(x32, w_f16)),
        "  fp16 op called plainly": (2, lambda: [  # the op alone, without and with call_packed
            f16(x32[m.in_features], m._packed) for m in half]),                  # (docs/generation.md)
        "  fp16 op through call_packed": (2, lambda: [
            call_packed(f16, x32[m.in_features], m._packed) for m in half]),
        "int8 compiled loop (--quantize int8)": (1, lambda: [m(x32[m.in_features]) for m in int8]),
        "int8 x int8 FBGEMM (--quantize int8-dynamic)": (1, lambda: [m(x32[m.in_features]) for m in dyn]),
        "  int8 op called plainly": (1, lambda: [i8(x32[m.in_features], m._packed, seven) for m in dyn]),
        "  int8 op through call_packed": (1, lambda: [
            call_packed(i8, x32[m.in_features], m._packed, seven) for m in dyn]),
    }
    if not bf16_packs:
        del table["bf16 oneDNN prepacked (--dtype bf16)"]
    return table


def read_floor(n_bytes: int) -> float:
    """Seconds to read n_bytes once (a sum over a bf16 tensor of that size): a streaming floor."""
    import torch

    a = torch.ones(n_bytes // 2, dtype=torch.bfloat16)
    a.sum()
    start = time.perf_counter()
    a.sum()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    import torch

    from gpt2.runtime.hardware import describe

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    params = sum(o * i for o, i in SHAPES)
    with torch.no_grad():
        table = kernels()
        for _, run in table.values():  # warm-up: compiles, packs
            run()
        times: dict[str, list[float]] = {name: [] for name in table}
        for _ in range(args.rounds):
            for name, (_, run) in table.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    floor = read_floor(2 * params)
    print(f"one row x gpt2-124M's 49 matrices ({params / 1e6:.0f}M weights), {args.threads} thread(s), "
          f"median wall time of {args.rounds}; {describe()}")
    print(f"plain read of a bf16 copy: {2 * params / floor / 1e9:.1f} GB/s")
    print(f"{'kernel':46} {'ms/pass':>8} {'GB/s':>6} {'passes/s':>9}")
    for name, (width, _) in table.items():
        t = statistics.median(times[name])
        print(f"{name:46} {t * 1e3:8.2f} {width * params / t / 1e9:6.1f} {1 / t:9.1f}")


if __name__ == "__main__":
    main()
