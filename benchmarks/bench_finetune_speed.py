"""Fine-tuning step speed: ours against transformers (+ peft for LoRA), same model and batches.

One exported model (4 layers, 128 wide, a char vocabulary), the padded rows of a chat task
made by `gpt2 examples --kind play` (targets masked outside the assistant's answers), batch
16. A step is zero_grad -> forward -> masked cross-entropy -> backward -> AdamW step over the
trainable parameters, in float32. Modes: full fine-tuning, and LoRA rank 8 on every linear of
every block (ours: gpt2.finetune.lora; theirs: peft's LoRA on GPT2LMHeadModel). Steps are
interleaved round by round and the median is kept; tokens/s counts every position (pads too).

    .venv/bin/python benchmarks/bench_finetune_speed.py --threads 2 --rounds 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gpt2 import GPT2, GPT2Config
from gpt2.checkpoint import save_checkpoint
from gpt2.finetune.data import load_examples
from gpt2.finetune.generators import write_examples
from gpt2.finetune.lora import add_lora
from gpt2.finetune.options import FinetuneDataSection
from gpt2.loss import cross_entropy_loss
from gpt2.runtime.hardware import describe
from gpt2.tokenizers import get_tokenizer

TARGETS = ["attn.qkv", "attn.proj", "mlp.fc", "mlp.proj"]


def step_fn(model: torch.nn.Module, logits_of):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        cross_entropy_loss(logits_of(model, x), y).backward()
        opt.step()

    return step


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=15)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2LMHeadModel

    work = Path(tempfile.mkdtemp())
    data = write_examples("play", work / "play.jsonl", 400, seed=0, plays=["macbeth", "tempest"])
    tok = get_tokenizer("char", text=data.read_text(encoding="utf-8") + "SystemUserAssistant: ")
    ex = load_examples("chat", FinetuneDataSection(train=str(data)), tok, 256)
    X, Y = (torch.from_numpy(a_[:16]) for a_ in ex.train)  # (16, width)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=tok.vocab_size, context_length=256, emb_dim=128, n_heads=4, n_layers=4,
                     drop_rate=0.0)
    save_checkpoint(work / "base", GPT2(cfg), tokenizer=tok)

    def ours(lora: bool):
        model = GPT2.from_pretrained(work / "base").train()
        if lora:
            add_lora(model, 8, 16.0, 0.0, TARGETS)
        return step_fn(model, lambda m, x: m(x)), model

    def theirs(lora: bool):
        model = GPT2LMHeadModel.from_pretrained(work / "base").train()
        if lora:
            config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, fan_in_fan_out=True,
                                target_modules=["c_attn", "c_proj", "c_fc"])
            model = get_peft_model(model, config)
        return step_fn(model, lambda m, x: m(input_ids=x).logits), model

    builders = (("ours", ours), ("transformers", theirs))
    modes = {f"{who} {kind}": build(kind == "lora") for who, build in builders for kind in ("full", "lora")}
    times: dict[str, list[float]] = {m: [] for m in modes}
    for step, _ in modes.values():
        step(X, Y)  # warm-up
    for _ in range(a.rounds):
        for name, (step, _) in modes.items():
            start = time.perf_counter()
            step(X, Y)
            times[name].append(time.perf_counter() - start)
    print(f"machine: {describe()}; threads {a.threads}; load average {os.getloadavg()}")
    print(f"batch {tuple(X.shape)}, {int((Y != -100).sum())} target tokens\n")
    print("| mode | trainable params | ms/step (median) | tokens/s | vs transformers |")
    print("|---|---|---|---|---|")
    for name, (_, model) in modes.items():
        ms = statistics.median(times[name]) * 1000
        ref = statistics.median(times[name.replace("ours", "transformers")]) * 1000
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"| {name} | {trainable:,} | {ms:.1f} | {X.numel() / ms * 1000:,.0f} | {ref / ms:.2f}x |")


if __name__ == "__main__":
    main()
