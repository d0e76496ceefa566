"""One change to the compiled decoding step against what it replaced, paired in one process.

Two variants of gpt2-124M (seeded random weights, one row, `decoder="compiled"`): A, what the
code did before a change, and B, what it does now. Four engines are built in the order A, B,
B, A and take turns of 4 tokens, --rounds times; each round gives one ratio (A's ms per token /
B's, each the mean of its two engines). Building in ABBA order matters on this shared machine:
with only A then B, the engine built second decoded up to 8% faster whatever it ran. The
`same` variant (A and B identical) measures what is left of that bias; a change is worth
what it shows beyond it.

    .venv/bin/python benchmarks/bench_decode_variants.py --variant attention --precision fp16
    .venv/bin/python benchmarks/bench_decode_variants.py --variant loops --precision float32

Variants: `attention`: A = torch's flash kernel for the one query (as before), B =
`one_query_attention` (now). `loops`: A
= every product a call of the layer's kernel (MKL, oneDNN, FBGEMM) with float32 weights in
the eager layout (as before), B = one row's float products as loops, `one_row_linear` (now).
`same`: B = A. (A `layout` variant, float32's narrow weights (out, in), measured the eager
layout in the compiled step until that step took the `loops` layout; see RESULTS.md.)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bench_compiled_step import PRECISIONS, model_in
from gpt2 import GPT2
from gpt2.attention import MultiHeadAttention
from gpt2.generation import SamplingOptions
from gpt2.generation.compiled_step import _guards_to_keep
from gpt2.generation.engine import Engine, RowSpec
from gpt2.generation.fast_linear import prepare_for_decoding
from gpt2.generation.opaque_linear import OpaqueWhenCompiled
from gpt2.runtime.hardware import describe

TURN = 4  # tokens per engine per turn


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                    dropout: float) -> torch.Tensor:
    """What the compiled step ran before `one_query_attention`: torch's fused kernel."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def engine_for(variant: str, side: str, precision: str, length: int) -> Engine:
    """A one-row compiled engine of `model_for`'s model. Side A's engines compile their step
    through a function of their own: dynamo keeps programs per function, and a program whose
    products are all loops checks only tensors (compiled_step._guards_to_keep), so an engine
    of A would otherwise run B's program. Side A of `loops` also gets the eager layout back
    after the engine gave the model the compiled one (before its first step)."""
    model = model_for(variant, side, precision)
    engine = Engine(model, 1, length, decoder="compiled")
    if side == "A":
        step = engine.decoder.forward
        engine.decoder._compiled = torch.compile(lambda *args: step(*args), fullgraph=True,
                                                 options={"guard_filter_fn": _guards_to_keep})
    if side == "A" and variant == "loops":
        prepare_for_decoding(model)
        for layer in model.modules():
            if isinstance(layer, OpaqueWhenCompiled):
                layer.one_row_forward = layer.opaque_forward  # as before: the kernel, one row too
    return engine


def model_for(variant: str, side: str, precision: str) -> GPT2:
    """bench_compiled_step's seeded gpt2-124M in `precision`, with side A's old code put back."""
    model = model_in(precision)
    if side == "A" and variant == "attention":
        for module in model.modules():
            if isinstance(module, MultiHeadAttention):
                module.attend = flash_attention
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=["attention", "loops", "same"], default="same")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompt", type=int, default=16, help="positions cached before the timed steps")
    parser.add_argument("--rounds", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    greedy = SamplingOptions(temperature=0)
    engines = []
    with torch.no_grad():
        for side in "ABBA":
            length = args.prompt + 4 * TURN * (args.rounds + 1)
            engine = engine_for(args.variant, side, args.precision, length)
            engine.add(RowSpec(list(range(100, 100 + args.prompt)), 10**6, greedy))
            engine.step()  # the compile
            engines.append((side, engine))
        ms = {"A": [], "B": []}
        for _ in range(args.rounds):
            turn = {"A": 0.0, "B": 0.0}
            for side, engine in engines:
                start = time.perf_counter()
                for _ in range(TURN):
                    engine.step()
                turn[side] += (time.perf_counter() - start) / TURN / 2 * 1e3  # mean of the two engines
            for side in ms:
                ms[side].append(turn[side])
    ratios = [a / b for a, b in zip(ms["A"], ms["B"], strict=True)]
    print(f"{describe()}, {args.threads} thread(s)")
    print(f"{args.variant} ({args.precision}, positions {args.prompt}-{args.prompt + TURN * args.rounds}): "
          f"A {statistics.median(ms['A']):.2f} ms/token, B {statistics.median(ms['B']):.2f}, "
          f"A/B {statistics.median(ratios):.3f} (rounds {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
