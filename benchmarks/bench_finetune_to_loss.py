"""Time to a given validation loss: our fine-tuning against transformers (+ peft for LoRA).

Both stacks fine-tune the same exported model (a small char model pretrained on four plays,
bench_finetune.py's base) on the same `gpt2 examples --kind play` conversations, with the
same batches (gpt2.finetune.examples.ExampleBatches, seed 0), the same masked cross-entropy
(only the assistant's tokens), the same torch AdamW and the same schedule (gpt2.training.optim.lr_at:
warmup, then cosine). LoRA: rank 8, alpha 16 on every linear of every block, and peft's
adapters start from a copy of ours (B is zero in both, A the same numbers), so the two runs
start from the same function. Steps alternate between the stacks, so a busy machine slows
both alike; only the training steps are timed (forward, loss, backward, optimizer step), not
the validation passes, which run every --eval_every steps over the same held-out rows.

The threshold is --threshold, or 90% of the way from the starting validation loss to the
worse of the two final ones (so both reach it); the time to it is the training time up to
the first evaluation at or below it.

    .venv/bin/python benchmarks/bench_finetune_to_loss.py --base runs/base/latest --threads 1
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from gpt2 import GPT2
from gpt2.finetune.data import load_examples
from gpt2.finetune.examples import ExampleBatches
from gpt2.finetune.generators import write_examples
from gpt2.finetune.lora import adapter_tensors, add_lora
from gpt2.finetune.options import FinetuneDataSection
from gpt2.loss import cross_entropy_loss
from gpt2.runtime.hardware import describe
from gpt2.tokenizers import find_tokenizer
from gpt2.training.optim import lr_at

PLAYS = ["macbeth", "tempest", "henry_v", "twelfth_night"]  # bench_finetune.py's
TARGETS = ["attn.qkv", "attn.proj", "mlp.fc", "mlp.proj"]


class Run:
    """One stack's model and optimizer: timed training steps and untimed validation."""

    def __init__(self, model: torch.nn.Module, logits_of, lr: float) -> None:
        self.model, self.logits_of, self.lr = model.train(), logits_of, lr
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=lr, weight_decay=0.0)
        self.seconds, self.curve = 0.0, []  # curve: (step, training seconds so far, val loss)

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> None:
        start = time.perf_counter()
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        cross_entropy_loss(self.logits_of(self.model, x), y).backward()
        self.opt.step()
        self.seconds += time.perf_counter() - start

    @torch.no_grad()
    def validate(self, step: int, X: torch.Tensor, Y: torch.Tensor, batch: int = 50) -> None:
        """Mean loss over every kept target of the held-out rows."""
        self.model.eval()
        total, count = 0.0, 0
        for s in range(0, len(X), batch):
            y = Y[s:s + batch]
            n = int((y != -100).sum())
            total += float(cross_entropy_loss(self.logits_of(self.model, X[s:s + batch]), y)) * n
            count += n
        self.model.train()
        self.curve.append((step, self.seconds, total / count))

    def time_to(self, threshold: float) -> tuple[int, float] | None:
        return next(((s, t) for s, t, loss in self.curve if loss <= threshold), None)


def build(base: Path, lora: bool, lr: float) -> tuple[Run, Run]:
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from transformers import GPT2LMHeadModel

    ours = GPT2.from_pretrained(base)
    theirs = GPT2LMHeadModel.from_pretrained(base)
    if lora:
        torch.manual_seed(0)
        add_lora(ours, 8, 16.0, 0.0, TARGETS)
        config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, fan_in_fan_out=True,
                            target_modules=["c_attn", "c_proj", "c_fc"])
        theirs = get_peft_model(theirs, config)
        result = set_peft_model_state_dict(theirs, adapter_tensors(ours))
        assert not result.unexpected_keys, result.unexpected_keys
    return Run(ours, lambda m, x: m(x), lr), Run(theirs, lambda m, x: m(input_ids=x).logits, lr)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--base", default=None, help="our checkpoint to fine-tune (default: pretrain one as "
                   "bench_finetune.py does, 200 steps)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--eval_every", type=int, default=5)
    p.add_argument("--modes", default="lora,full")
    p.add_argument("--threshold", type=float, default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    work = Path(tempfile.mkdtemp())
    if a.base is None:
        from bench_finetune import make_base  # a sibling script: the same base as the quality runs

        a.base = make_base(work, 200, a.threads)
    base = Path(a.base)
    train = write_examples("play", work / "train.jsonl", 1000, seed=0, plays=PLAYS)
    val = write_examples("play", work / "val.jsonl", 100, seed=1, plays=PLAYS)
    tok = find_tokenizer(base)
    ex = load_examples("chat", FinetuneDataSection(train=str(train), val=str(val)), tok, 256)
    Xv, Yv = (torch.from_numpy(v) for v in ex.val)
    print(f"machine: {describe()}; threads {a.threads}; load average at start {os.getloadavg()}")
    print(f"base {base}; {len(ex.train[0])} train / {len(Xv)} val conversations, rows of {ex.width} "
          f"tokens, batch {a.batch}, {a.steps} steps, eval every {a.eval_every}\n")
    for mode in a.modes.split(","):
        lr = 3e-3 if mode == "lora" else 1e-3  # bench_finetune.py's
        runs = build(base, mode == "lora", lr)
        batches = ExampleBatches(*ex.train, batch_size=a.batch, seed=0)
        for run in runs:
            run.validate(0, Xv, Yv)
        for step in range(a.steps):
            x, y = batches.next_batch()
            for run in runs if step % 2 == 0 else runs[::-1]:
                run.step(x, y, lr_at(step, lr, 10, a.steps, lr / 10))
            if (step + 1) % a.eval_every == 0 or step + 1 == a.steps:
                for run in runs:
                    run.validate(step + 1, Xv, Yv)
        report(mode, runs, a.threshold, a.steps, a.batch * ex.width)
    print(f"load average at the end {os.getloadavg()}")


def report(mode: str, runs: tuple[Run, Run], threshold: float | None, steps: int, tokens: int) -> None:
    """The two validation curves side by side, then each stack's time to the threshold."""
    ours, theirs = runs
    print(f"### {mode} (lr {ours.lr})\n\n| step | val loss ours | val loss transformers | train s ours | "
          "train s transformers |\n|---|---|---|---|---|")
    for (s, t1, l1), (_, t2, l2) in zip(ours.curve, theirs.curve, strict=True):
        print(f"| {s} | {l1:.4f} | {l2:.4f} | {t1:.1f} | {t2:.1f} |")
    if threshold is None:
        start, worst = ours.curve[0][2], max(ours.curve[-1][2], theirs.curve[-1][2])
        threshold = round(start - 0.9 * (start - worst), 3)
    print(f"\nthreshold: val loss <= {threshold}")
    for name, run in (("ours", ours), ("transformers" + (" + peft" if mode == "lora" else ""), theirs)):
        hit = run.time_to(threshold)
        reached = f"step {hit[0]}, {hit[1]:.1f} s" if hit else "not reached"
        print(f"- {name}: {reached}; {run.seconds / steps * 1000:.1f} ms/step, "
              f"{tokens * steps / run.seconds:,.0f} tokens/s over the run ({run.seconds:.1f} s)")
    print()


if __name__ == "__main__":
    main()
