"""Optimizer steps side by side: our Muon (Newton-Schulz batched by shape) against
`torch.optim.Muon` (one matrix at a time, always in bf16), and the AdamW half of Muon
(torch's fused kernel) against the same update written out and torch's foreach, on the
models of the demo recipe (configs/shakespeare_cpu.yaml: cpu-tiny, context 128) and of
tiny Shakespeare's (configs/tinyshakespeare_char*.yaml: char-tiny, context 64), batch 12.

Each variant times `optimizer.step()` on fixed gradients and, for scale, a whole training
step (forward, backward, step). Variants are interleaved round by round and the median is
kept, so a busy machine slows all of them alike: read the ratios, not the milliseconds.
`--quality N` also trains N steps of the demo model on tiny Shakespeare with our Muon and
with torch's, from the same weights and batches, and prints both validation losses.

    .venv/bin/python benchmarks/bench_optim.py --threads 1 --rounds 15
    .venv/bin/python benchmarks/bench_optim.py --threads 1 --rounds 0 --quality 200
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from gpt2 import GPT2, GPT2Config
from gpt2.loss import cross_entropy_loss
from gpt2.runtime.hardware import describe
from gpt2.training.muon import Muon, muon_groups
from gpt2.training.optim import adamw_reference_step

RECIPES = [("cpu-tiny", 128), ("char-tiny", 64)]  # the demo's model, tiny Shakespeare's
BATCH, VOCAB, LR, MUON_LR = 12, 65, 4e-3, 0.032
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


class TorchMuon:
    """torch.optim.Muon for the block matrices + torch's AdamW (fused) for the rest: the pair
    that would replace our one Muon class."""

    def __init__(self, model: nn.Module, fused: bool = True) -> None:
        groups = muon_groups(model, 0.1, LR, MUON_LR)
        self.muon = torch.optim.Muon(groups[0]["params"], lr=MUON_LR, weight_decay=0.1, momentum=0.95)
        adam = [{k: v for k, v in g.items() if k != "muon"} for g in groups[1:]]
        self.adamw = torch.optim.AdamW(adam, lr=LR, betas=(0.9, 0.99), fused=fused, foreach=not fused)

    def step(self) -> None:
        self.muon.step()
        self.adamw.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)


def variants(model: nn.Module) -> dict[str, Callable[[], object]]:
    """Name -> a fresh optimizer over `model`."""
    params = list(model.parameters())
    ours = lambda dtype: lambda: Muon(muon_groups(model, 0.1, LR, MUON_LR), LR, 0.95, (0.9, 0.99),  # noqa: E731
                                       ns_dtype=dtype)
    return {
        "ours Muon (NS fp32, batched by shape)": ours(torch.float32),
        "ours Muon (NS bf16, batched by shape)": ours(torch.bfloat16),
        "torch.optim.Muon (NS bf16, per matrix) + fused AdamW": lambda: TorchMuon(model),
        "torch AdamW fused (all parameters)": lambda: torch.optim.AdamW(params, lr=LR, fused=True),
        "torch AdamW foreach (all parameters)": lambda: torch.optim.AdamW(params, lr=LR, foreach=True),
    }


def adamw_half(model: nn.Module) -> dict[str, Callable[[], None]]:
    """The AdamW part of Muon alone (embeddings, biases, gains): the update written out (what
    Muon's AdamW half was until 2026-12, now the reference) against torch's kernels."""
    groups = muon_groups(model, 0.1, LR, MUON_LR)[1:]
    plain = [{k: v for k, v in g.items() if k != "muon"} for g in groups]
    written: dict[int, dict] = {}
    ours = Muon([{**g} for g in groups], LR, 0.95, (0.9, 0.99))
    foreach = torch.optim.AdamW(plain, lr=LR, betas=(0.9, 0.99), foreach=True)
    return {"AdamW half: written out (adamw_reference_step)": lambda: adamw_reference_step(
                plain, written, LR, (0.9, 0.99)),
            "AdamW half: Muon's (torch fused kernel)": ours.step,
            "AdamW half: torch foreach": foreach.step}


def interleaved(fns: dict[str, Callable[[], None]], rounds: int, repeat: int) -> dict[str, float]:
    """Median seconds per call of each fn, timed `repeat` calls at a time, round by round."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up: state allocation, kernels
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(repeat):
                fn()
            times[name].append((time.perf_counter() - start) / repeat)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_recipe(preset: str, seq: int, rounds: int) -> None:
    torch.manual_seed(0)
    model = GPT2(GPT2Config.from_preset(preset, vocab_size=VOCAB)).train()
    x = torch.randint(0, VOCAB, (BATCH, seq))
    y = torch.randint(0, VOCAB, (BATCH, seq))
    cross_entropy_loss(model(x), y).backward()  # fixed gradients for the step-only timings
    opts = {name: make() for name, make in variants(model).items()}
    saved = {n: p.detach().clone() for n, p in model.named_parameters()}
    steps = {name: opt.step for name, opt in opts.items()}
    step_times = interleaved(steps, rounds, repeat=5)
    half = interleaved(adamw_half(model), rounds, repeat=20)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(saved[n])

    def whole(opt: object) -> Callable[[], None]:
        def run() -> None:
            opt.zero_grad(set_to_none=True)
            cross_entropy_loss(model(x), y).backward()
            opt.step()
        return run

    whole_times = interleaved({name: whole(opt) for name, opt in opts.items()}, rounds, repeat=2)
    base = step_times["ours Muon (NS fp32, batched by shape)"]
    base_whole = whole_times["ours Muon (NS fp32, batched by shape)"]
    n_params = sum(p.numel() for p in model.parameters())
    print(f"\n{preset}, context {seq}, batch {BATCH}: {n_params:,} parameters")
    print("| variant | optimizer step (ms) | vs ours fp32 | whole train step (ms) | vs ours fp32 |")
    print("|---|---|---|---|---|")
    for name in opts:
        print(f"| {name} | {step_times[name] * 1e3:.2f} | {step_times[name] / base:.2f}x | "
              f"{whole_times[name] * 1e3:.1f} | {whole_times[name] / base_whole:.2f}x |")
    for name, seconds in half.items():
        print(f"| {name} | {seconds * 1e3:.3f} | | | |")


def quality(steps: int) -> None:
    """Val loss after `steps` of the demo model on tiny Shakespeare (chars), ours vs torch's Muon."""
    text = DATA.read_text() if DATA.exists() else None
    if text is None:
        print(f"\nquality: {DATA} not found; skipped")
        return
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text[:400_000]])
    train, val = ids[:360_000], ids[360_000:]
    results = {}
    for name in ("ours Muon (NS fp32)", "torch.optim.Muon + fused AdamW"):
        torch.manual_seed(0)
        model = GPT2(GPT2Config.from_preset("cpu-tiny", vocab_size=len(chars))).train()
        opt = (Muon(muon_groups(model, 0.1, LR, MUON_LR), LR, 0.95, (0.9, 0.99)) if name.startswith("ours")
               else TorchMuon(model))
        gen = torch.Generator().manual_seed(1)
        for _ in range(steps):
            starts = torch.randint(0, len(train) - 129, (BATCH,), generator=gen)
            xb = torch.stack([train[s:s + 128] for s in starts])
            yb = torch.stack([train[s + 1:s + 129] for s in starts])
            opt.zero_grad(set_to_none=True)
            cross_entropy_loss(model(xb), yb).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        model.eval()
        with torch.no_grad():
            windows = val[: (len(val) - 1) // 128 * 128 + 1]
            xv = windows[:-1].view(-1, 128)
            yv = windows[1:].view(-1, 128)
            results[name] = cross_entropy_loss(model(xv), yv).item()
    print(f"\nquality after {steps} steps (demo model, tiny Shakespeare chars, constant lr): "
          + "; ".join(f"{n}: val loss {v:.4f}" for n, v in results.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quality", type=int, default=0, help="steps of the quality check (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{describe()}; {args.threads} thread(s); {args.rounds} interleaved rounds, medians")
    for preset, seq in RECIPES if args.rounds else []:  # --rounds 0: only the quality check
        bench_recipe(preset, seq, args.rounds)
    if args.quality:
        quality(args.quality)


if __name__ == "__main__":
    main()
