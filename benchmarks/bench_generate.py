"""Decoding speed: our `generate` (KV cache) against transformers' `generate` on the same weights,
our uncached reference `generate_text`, and the memory-bandwidth floor.

The gpt2 preset with random weights, batch 1, a 16-token prompt, 128 new tokens, greedy.
Decoding one token reads every weight once, so the floor is the time of one matrix-vector
product per weight matrix (all 12 blocks + the 50257 x 768 head), measured with torch itself.
Runs are interleaved and the best of --repeats is kept: this machine is shared and noisy.

    .venv/bin/python benchmarks/bench_generate.py [--repeats 3] [--threads N] [--trained DIR]

--trained DIR also counts how many greedy tokens a bf16 copy of that checkpoint matches
the float32 tokens for, on a few prompts.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable

import torch

from gpt2 import GPT2, GPT2Config
from gpt2.generation import generate, generate_text, prepare_for_decoding
from gpt2.generation.options import SamplingOptions
from gpt2.runtime.autotune import choose_decoding
from gpt2.runtime.device import DTYPES
from gpt2.runtime.hardware import describe

PROMPT_LEN, NEW_TOKENS = 16, 128


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Fastest wall time of `repeats` calls, and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def floor_tokens_per_s(model: GPT2, repeats: int) -> float:
    """Tokens/s if a step did nothing but one matrix-vector product per weight matrix
    (every Linear of the model: 12 blocks x 4 + the tied 50257 x 768 head), in its layout."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    dtype = linears[0].weight.dtype
    xs = {m.in_features: torch.randn(1, 1, m.in_features, dtype=dtype) for m in linears}  # (B=1, T=1, in)

    @torch.no_grad()
    def one_pass() -> None:
        for m in linears:
            m(xs[m.in_features])

    one_pass()
    seconds, _ = best_time(one_pass, repeats * 3)
    return 1.0 / seconds


def matching_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many leading tokens two 1-D sequences share."""
    same = (a == b).int().cumprod(dim=0)
    return int(same.sum())


def hf_generate(hf_model, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return hf_model.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=NEW_TOKENS,
                                 min_new_tokens=NEW_TOKENS, do_sample=False, use_cache=True,
                                 pad_token_id=0)


def trained_agreement(path: str) -> list[tuple[str, int, int]]:
    """(prompt, tokens matched, tokens generated) for bf16 vs float32 greedy on a checkpoint."""
    from gpt2.tokenizers import load_tokenizer

    fp32 = GPT2.from_pretrained(path)
    bf16 = prepare_for_decoding(GPT2.from_pretrained(path, dtype=torch.bfloat16))
    tok = load_tokenizer(path)
    rows = []
    for prompt in ("ROMEO:", "The king", "First Citizen:\n", "\n"):
        idx = torch.tensor([tok.encode(prompt)])
        n = min(NEW_TOKENS, fp32.cfg.context_length - idx.size(1))
        a = generate(fp32, idx, n, SamplingOptions(temperature=0))[0, idx.size(1):]
        b = generate(bf16, idx, n, SamplingOptions(temperature=0))[0, idx.size(1):]
        rows.append((prompt, matching_prefix(a, b), n))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--trained", default=None, help="a trained checkpoint for the bf16 agreement count")
    parser.add_argument("--skip-uncached", action="store_true", help="skip the slow uncached reference")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    model = GPT2(GPT2Config.from_preset("gpt2")).eval()
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        hf = GPT2LMHeadModel.from_pretrained(tmp).eval()
        hf16 = GPT2LMHeadModel.from_pretrained(tmp, dtype=torch.bfloat16).eval()
        auto_dtype = DTYPES[choose_decoding("cpu").dtype]  # bf16 only where this CPU computes it natively
        auto = GPT2.from_pretrained(tmp, dtype=auto_dtype)
        bf16 = GPT2.from_pretrained(tmp, dtype=torch.bfloat16)
        fast32 = prepare_for_decoding(GPT2.from_pretrained(tmp))
        fast16 = prepare_for_decoding(GPT2.from_pretrained(tmp, dtype=torch.bfloat16))
    idx = torch.randint(0, model.cfg.vocab_size, (1, PROMPT_LEN), generator=torch.Generator().manual_seed(0))

    runs = {
        "transformers generate, float32": lambda: hf_generate(hf, idx),
        "transformers generate, bf16": lambda: hf_generate(hf16, idx),
        f"ours generate, dtype auto ({str(auto.dtype).removeprefix('torch.')})":
            lambda: generate(auto, idx, NEW_TOKENS, SamplingOptions(temperature=0)),
        "ours generate, float32": lambda: generate(model, idx, NEW_TOKENS, SamplingOptions(temperature=0)),
        "ours generate, float32, prepared": lambda: generate(fast32, idx, NEW_TOKENS,
                                                             SamplingOptions(temperature=0)),
        "ours generate, bf16": lambda: generate(bf16, idx, NEW_TOKENS,
                                                SamplingOptions(temperature=0)),
        "ours generate, bf16, prepared": lambda: generate(fast16, idx, NEW_TOKENS,
                                                          SamplingOptions(temperature=0)),
    }
    for m in (model, fast32, bf16, fast16, auto):  # warm up: first calls allocate and pick kernels
        generate(m, idx, 4, SamplingOptions(temperature=0))
    times: dict[str, float] = {name: float("inf") for name in runs}
    outputs: dict[str, torch.Tensor] = {}
    for _ in range(args.repeats):  # interleaved, so load spikes hit every contender alike
        for name, fn in runs.items():
            seconds, outputs[name] = best_time(fn, 1)
            times[name] = min(times[name], seconds)
    if not args.skip_uncached:
        times["ours generate_text, float32 (no cache)"], outputs["uncached"] = best_time(
            lambda: generate_text(model, idx, NEW_TOKENS, model.cfg.context_length), 1)

    tps = {name: NEW_TOKENS / seconds for name, seconds in times.items()}
    floors = {f"floor: {label}": floor_tokens_per_s(m, args.repeats) for label, m in (
        ("matrix-vector, float32", model), ("matrix-vector, float32, prepared", fast32),
        ("matrix-vector, bf16", bf16), ("matrix-vector, bf16, prepared", fast16))}
    ref = tps["transformers generate, float32"]
    print(f"\nmachine: {describe()}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
    print(f"gpt2 preset (random weights), batch 1, {PROMPT_LEN}-token prompt, {NEW_TOKENS} new tokens, "
          f"greedy, best of {args.repeats}\n")
    print(f"| {'contender':<42} | {'tokens/s':>8} | {'vs transformers fp32':>20} |")
    print(f"|{'-' * 44}|{'-' * 10}|{'-' * 22}|")
    for name, value in {**tps, **floors}.items():
        print(f"| {name:<42} | {value:8.1f} | {value / ref:19.2f}x |")

    ours = outputs["ours generate, float32"][0, PROMPT_LEN:]
    theirs = outputs["transformers generate, float32"][0, PROMPT_LEN:]
    print(f"\nours float32 == transformers: {torch.equal(ours, theirs)}")
    prepared = outputs["ours generate, float32, prepared"][0, PROMPT_LEN:]
    print(f"ours float32 prepared == float32: {torch.equal(ours, prepared)}")
    if "uncached" in outputs:
        print(f"ours float32 == generate_text: {torch.equal(ours, outputs['uncached'][0, PROMPT_LEN:])}")
    for name in ("ours generate, bf16", "ours generate, bf16, prepared"):
        matched = matching_prefix(ours, outputs[name][0, PROMPT_LEN:])
        print(f"{name}: greedy tokens matching float32 (random weights): {matched} of {NEW_TOKENS}")
    if args.trained:
        for prompt, same, n in trained_agreement(args.trained):
            print(f"bf16 greedy tokens matching float32 ({args.trained}, prompt {prompt!r}): {same} of {n}")


if __name__ == "__main__":
    main()
