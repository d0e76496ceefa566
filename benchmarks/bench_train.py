"""Training throughput (tokens/s) of our GPT2 against transformers' GPT2LMHeadModel,
measured side by side in one process, with the achieved FLOP/s as a fraction of this
machine's matmul ceiling measured in the same run.

Configs: (a) 4 layers, 4 heads, 128 dim, context 64, batch 12, vocab 65 (nanoGPT's
char-level CPU recipe); (b) GPT-2 124M, batch 4, length 256. A training step is
zero_grad -> forward -> cross-entropy -> backward -> AdamW step. A mode of ours names
the precision (fp32, or bf16 autocast), optionally `explicit` (the written-out attention
instead of torch's SDPA kernel) and `compile` (torch.compile). transformers runs with its
defaults (SDPA attention) in fp32 and in bf16 autocast, with torch's default AdamW
(foreach); ours uses build_optimizer (fused).
Timings are interleaved round by round and the median per step is kept.

    .venv/bin/python benchmarks/bench_train.py --threads 1
    .venv/bin/python benchmarks/bench_train.py --configs a --modes bf16-explicit compile-bf16
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

import torch

from gpt2 import GPT2, GPT2Config
from gpt2.loss import cross_entropy_loss
from gpt2.runtime.hardware import describe
from gpt2.training.mfu import cpu_matmul_ceiling, flops_per_step  # the same measures as training
from gpt2.training.optim import build_optimizer

CONFIGS = {
    "a": (dict(vocab_size=65, context_length=64, emb_dim=128, n_heads=4, n_layers=4, drop_rate=0.0), 12, 64),
    "b": (dict(GPT2Config.from_preset("gpt2").to_dict()), 4, 256),
}


def ours(cfg: GPT2Config, mode: str) -> tuple[Callable, torch.nn.Module]:
    """mode: e.g. 'fp32', 'bf16', 'bf16-explicit', 'compile-bf16'."""
    attention = "explicit" if "explicit" in mode else "sdpa"
    model = GPT2(GPT2Config(**{**cfg.to_dict(), "attention": attention})).train()
    opt = build_optimizer(model, lr=1e-4)
    fwd = torch.compile(model) if "compile" in mode else model
    return _step(fwd, opt, "bf16" in mode, lambda m, x: m(x)), model


def transformers_model(cfg: GPT2Config, mode: str) -> tuple[Callable, torch.nn.Module]:
    from transformers import GPT2Config as HFConfig
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel(HFConfig(vocab_size=cfg.vocab_size, n_positions=cfg.context_length,
                                  n_embd=cfg.emb_dim, n_layer=cfg.n_layers, n_head=cfg.n_heads,
                                  resid_pdrop=cfg.drop_rate, embd_pdrop=cfg.drop_rate,
                                  attn_pdrop=cfg.drop_rate)).train()
    opt = torch.optim.AdamW(hf.parameters(), lr=1e-4, weight_decay=0.1)
    return _step(hf, opt, "bf16" in mode, lambda m, x: m(input_ids=x).logits), hf


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, bf16: bool, logits_of: Callable) -> Callable:
    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            logits = logits_of(model, x)  # (B, T, V)
        cross_entropy_loss(logits, y).backward()
        opt.step()
    return step


def bench_config(name: str, modes: list[str], hf_modes: list[str], steps: int, rounds: int) -> None:
    kwargs, batch, T = CONFIGS[name]
    cfg = GPT2Config(**kwargs)
    x = torch.randint(0, cfg.vocab_size, (batch, T))
    y = torch.randint(0, cfg.vocab_size, (batch, T))
    runners = {f"ours {m}": ours(cfg, m)[0] for m in modes}
    runners.update({f"transformers {m}": transformers_model(cfg, m)[0] for m in hf_modes})
    compile_s = {}
    for label, step in runners.items():  # warm-up (and compilation) outside the timings
        t = time.perf_counter()
        for _ in range(2):
            step(x, y)
        compile_s[label] = time.perf_counter() - t
    times: dict[str, list[float]] = {label: [] for label in runners}
    for _ in range(rounds):
        for label, step in runners.items():
            t = time.perf_counter()
            for _ in range(steps):
                step(x, y)
            times[label].append((time.perf_counter() - t) / steps)
    ceiling = {name: cpu_matmul_ceiling(dtype, n=2048, budget_s=5.0)  # the training's own measure, larger
               for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    flops = flops_per_step(cfg, batch, T)
    base = statistics.median(times["transformers fp32"]) if "transformers fp32" in times else None
    print(f"\nconfig ({name}): L={cfg.n_layers} H={cfg.n_heads} d={cfg.emb_dim} V={cfg.vocab_size} "
          f"batch {batch} x len {T}; {flops / 1e9:.2f} GFLOP/step; matmul ceiling "
          f"fp32 {ceiling['fp32'] / 1e9:.0f} GFLOP/s, bf16 {ceiling['bf16'] / 1e9:.0f} GFLOP/s")
    print(f"{'':26} {'ms/step':>9} {'tokens/s':>10} {'vs HF fp32':>11} {'GFLOP/s':>8} {'of ceiling':>10} "
          f"{'warm-up s':>9}")
    for label, ts in times.items():
        t = statistics.median(ts)
        dtype = "bf16" if "bf16" in label else "fp32"
        ratio = f"{base / t:.2f}x" if base else "-"
        print(f"{label:26} {t * 1e3:9.1f} {batch * T / t:10,.0f} {ratio:>11} {flops / t / 1e9:8.1f} "
              f"{flops / t / ceiling[dtype]:10.0%} {compile_s[label]:9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["a", "b"], choices=sorted(CONFIGS))
    parser.add_argument("--modes", nargs="+", default=["fp32", "bf16", "bf16-explicit"],
                        choices=["fp32", "bf16", "fp32-explicit", "bf16-explicit", "compile-fp32",
                                 "compile-bf16", "compile-bf16-explicit"])
    parser.add_argument("--hf-modes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    parser.add_argument("--steps", type=int, default=0, help="steps per timing (default: 20 for a, 2 for b)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"machine: {describe()}, {torch.get_num_threads()} threads")
    for name in args.configs:
        bench_config(name, args.modes, args.hf_modes, args.steps or (20 if name == "a" else 2), args.rounds)


if __name__ == "__main__":
    main()
