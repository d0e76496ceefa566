"""Fine-tuning on tasks made here (gpt2 examples), each run a real `gpt2 finetune` process.

1. A base: a small char model pretrained briefly on the plays the tasks come from.
2. Instructions ("Which play are these lines from?"): held-out exact-match accuracy of the
   base and of the fine-tuned models (full, LoRA), greedy answers up to end-of-text.
3. Classification (the play's First Folio genre of a 3-line excerpt): held-out accuracy of
   the fine-tuned classifiers against the majority class and a bag-of-words logistic
   regression (scikit-learn) on the same split.
For every fine-tune: trainable parameters, peak memory (the process's max RSS), steady
tokens/s (padding included) and the checkpoint's size. Runs are short; the machine is shared.

    .venv/bin/python benchmarks/bench_finetune.py --work /tmp/bench_ft
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gpt2 import GPT2
from gpt2.chat_template import encode
from gpt2.data.shards import write_prepared
from gpt2.finetune.generators import speeches, write_examples
from gpt2.finetune.records import read_records, to_messages
from gpt2.finetune.saved import load_finetuned
from gpt2.runtime.hardware import describe
from gpt2.tokenizers import get_tokenizer

PLAYS = ["macbeth", "tempest", "henry_v", "twelfth_night"]
SYSTEM = ["--system.device", "cpu", "--system.dtype", "float32", "--system.progress", "false"]


def gpt2(args: list[str], threads: int) -> tuple[float, float]:
    """Run `gpt2 ARGS` in a fresh process -> (wall seconds, its peak RSS in MB)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "gpt2", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"gpt2 {' '.join(args[:3])} failed: {proc.stderr.read()[-2000:]}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def make_base(work: Path, steps: int, threads: int) -> Path:
    """A 4-layer char model pretrained for `steps` steps on the plays (vocabulary: the whole corpus)."""
    text = "\n\n".join(f"{s.speaker}.\n" + "\n".join(s.lines) for s in speeches())
    tok = get_tokenizer("char", text=text + "SystemUserAssistant: ?\n")
    plays = "\n\n".join(f"{s.speaker}.\n" + "\n".join(s.lines) for s in speeches(PLAYS))
    ids = np.array(tok.encode(plays, allow_special=False), dtype=np.int64)
    cut = int(len(ids) * 0.95)
    data = write_prepared(work / "plays", tok, {"train": ids[:cut], "val": ids[cut:]},
                          split={"val_ratio": 0.05})
    model = ["--model.preset", "char-tiny", "--model.n_layers", "4", "--model.emb_dim", "128",
             "--model.n_heads", "4", "--model.context_length", "256"]
    gpt2(["train", "--data.dir", str(data), "--train.out_dir", str(work / "base"),
          "--train.max_steps", str(steps),
          *model, "--train.context_length", "128", "--train.batch_size", "12", "--eval.interval", "0",
          "--eval.sample_tokens", "0", "--eval.final_full", "false", "--overwrite", "true",
          "--system.threads", str(threads), *SYSTEM], threads)
    return work / "base" / "latest"


@torch.no_grad()
def exact_match(model: GPT2, tok, records: list, max_new: int = 24) -> float:
    """Share of held-out questions whose greedy answer, up to end-of-text, equals the reference.
    All questions decode as one left-padded batch (attention mask + positions), no cache."""
    prompts = [encode(tok, m[:1], add_generation_prompt=True)[0] for m in records]
    width = max(map(len, prompts))
    x = torch.tensor([[tok.eot_id] * (width - len(q)) + q for q in prompts])  # (B, width)
    mask = torch.tensor([[0] * (width - len(q)) + [1] * len(q) for q in prompts])
    answers = torch.empty(len(prompts), 0, dtype=torch.long)
    for _ in range(max_new):
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        nxt = model(x, attention_mask=mask, position_ids=positions)[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        answers = torch.cat([answers, nxt], 1)
        x, mask = torch.cat([x, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
    right = 0
    for row, m in zip(answers.tolist(), records, strict=True):
        row = row[:row.index(tok.eot_id)] if tok.eot_id in row else row
        right += tok.decode(row).strip() == m[1]["content"]
    return right / len(records)


def finetune(name: str, base: Path, work: Path, task: str, train: Path, val: Path, steps: int, threads: int,
             extra: list[str]) -> dict:
    out = work / name
    seconds, rss = gpt2(["finetune", "--task", task, "--model.init", str(base), "--data.train", str(train),
                         "--data.val", str(val), "--train.out_dir", str(out), "--train.max_steps", str(steps),
                         "--train.batch_size", "16", "--eval.interval", "0", "--overwrite", "true",
                         "--system.threads", str(threads), *SYSTEM, *extra], threads)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    header, steady = rows[0], next((r for r in rows if "steady_tokens_per_s" in r), {})
    files = [p for p in (out / "latest").iterdir() if p.suffix == ".safetensors"]
    return {"run": name, "trainable": header["trainable_parameters"], "parameters": header["parameters"],
            "peak_rss_mb": round(rss), "tokens_per_s": round(steady.get("steady_tokens_per_s", float("nan"))),
            "weights_kb": round(sum(p.stat().st_size for p in files) / 1024), "seconds": round(seconds, 1),
            "out": out}


def bag_of_words(train: Path, val: Path) -> float:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    def rows(p: Path) -> tuple[list[str], list[str]]:
        data = list(csv.DictReader(p.open(encoding="utf-8")))
        return [r["text"] for r in data], [r["label"] for r in data]

    (xt, yt), (xv, yv) = rows(train), rows(val)
    vec = CountVectorizer()
    clf = LogisticRegression(max_iter=2000).fit(vec.fit_transform(xt), yt)
    return float((clf.predict(vec.transform(xv)) == np.array(yv)).mean())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--work", type=Path, default=Path("/tmp/bench_finetune"))
    p.add_argument("--pretrain_steps", type=int, default=300)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    print(f"machine: {describe()}; load average before: {os.getloadavg()}")
    a.work.mkdir(parents=True, exist_ok=True)
    base = make_base(a.work, a.pretrain_steps, a.threads)
    train, val = a.work / "play_train.jsonl", a.work / "play_val.jsonl"
    write_examples("play", train, 1500, seed=0, plays=PLAYS)
    write_examples("play", val, 100, seed=1, plays=PLAYS)
    held_out = [to_messages(*r) for r in read_records(val)]
    lora = ["--lora.rank", "8", "--lora.alpha", "16", "--optim.lr", "3e-3",
            "--lora.targets", "[attn.qkv,attn.proj,mlp.fc,mlp.proj]"]
    runs = [finetune("chat-full", base, a.work, "chat", train, val, a.steps, a.threads, []),
            finetune("chat-lora", base, a.work, "chat", train, val, a.steps, a.threads, lora)]
    base_model = GPT2.from_pretrained(base).eval()
    from gpt2.tokenizers import find_tokenizer

    char = find_tokenizer(base)
    print(f"\ninstructions ({len(held_out)} held-out 'which play' questions, {len(PLAYS)} plays):")
    print(f"  base model exact match: {exact_match(base_model, char, held_out):.3f}")
    for r in runs:
        model, t, _ = load_finetuned(r["out"] / "latest")
        r["exact_match"] = exact_match(model, t, held_out)
    ctrain, cval = a.work / "genre_train.csv", a.work / "genre_val.csv"
    write_examples("genre", ctrain, 1500, seed=0)
    write_examples("genre", cval, 300, seed=1)
    for name, extra in (("classify-full", []), ("classify-last", ["--trainable", "last"]),
                        ("classify-lora", lora)):
        r = finetune(name, base, a.work, "classify", ctrain, cval, a.steps, a.threads, extra)
        report = json.loads((r["out"] / "classification.json").read_text())
        r["accuracy"], majority = report["accuracy"], report["majority_baseline"]
        runs.append(r)
    n_val = len(list(csv.DictReader(cval.open())))
    print(f"classification (genre, {n_val} held-out excerpts): majority class {majority:.3f}, "
          f"bag-of-words logistic regression {bag_of_words(ctrain, cval):.3f}")
    print("\n| run | exact match / accuracy | trainable params | peak RSS MB | tokens/s | weights KB | s |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        score = r.get("exact_match", r.get("accuracy"))
        print(f"| {r['run']} | {score:.3f} | {r['trainable']:,} of {r['parameters']:,} | "
              f"{r['peak_rss_mb']} | {r['tokens_per_s']:,} | {r['weights_kb']:,} | {r['seconds']} |")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
