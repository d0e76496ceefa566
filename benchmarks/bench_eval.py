"""Benchmark scoring: `gpt2 eval --task`'s scorer against lm-evaluation-harness on the same weights.

A model with GPT-2's vocabulary and random weights (default: the cpu-10m shape, 6 layers x 384,
context 256; `--preset gpt2` for the 124M shape) is saved once as our checkpoint, which is also
the Hugging Face export the harness's `hf` model loads. Two multiple-choice files:
- the made-up Shakespeare next-line task (gpt2.evaluation.make_tasks);
- a synthetic 10,000-example file with HellaSwag's shape and about its lengths (4 endings; a
  context of ~30 words, endings of ~16 words: spans of the Shakespeare corpus), as `hellaswag`.
For each, the first --limit examples are scored by ours and by lm-eval, one after the other in
this process, same dtype (float32), threads and batch size; the accuracies must agree.
Reported: examples/s of the scoring alone (our batched scorer; the harness's `loglikelihood`
call) and end to end (read + tokenize + score + metrics; the harness's `simple_evaluate`).

    .venv/bin/python benchmarks/bench_eval.py [--limit 200] [--batch_size 32] [--threads 1]
        [--preset cpu-10m] [--checkpoint DIR]

--checkpoint DIR also scores that checkpoint (e.g. the demo's runs/shakespeare_cpu/best) on
--demo_examples of the Shakespeare task and prints its accuracy beside chance.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from gpt2 import GPT2, GPT2Config
from gpt2.data.corpus import shakespeare_files
from gpt2.evaluation.encoding import example_rows
from gpt2.evaluation.make_tasks import make_next_line_task
from gpt2.evaluation.metrics import task_metrics
from gpt2.evaluation.scoring import score_encoded
from gpt2.evaluation.tasks import read_task
from gpt2.runtime.hardware import describe
from gpt2.tokenizers import get_tokenizer, load_tokenizer

TASK_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{{text}}}}}"
doc_to_choice: {choices}
doc_to_target: {label}
target_delimiter: "{delimiter}"
metric_list:
  - metric: acc
  - metric: acc_bytes
"""


def synthetic_hellaswag(path: Path, examples: int, seed: int = 0) -> None:
    """HellaSwag-shaped lines of Shakespeare word spans: ctx ~30 words, 4 endings ~16 words."""
    words = " ".join(p.read_text(encoding="utf-8", errors="replace") for p in shakespeare_files()).split()
    rng = random.Random(seed)

    def span(mean: float, sd: float, low: int, high: int) -> str:
        n = min(high, max(low, round(rng.gauss(mean, sd))))
        start = rng.randrange(len(words) - n)
        return " ".join(words[start:start + n])

    with path.open("w", encoding="utf-8") as f:
        for _ in range(examples):
            row = {"ctx": span(30, 10, 8, 80), "endings": [span(16, 6, 3, 45) for _ in range(4)],
                   "label": rng.randrange(4)}
            f.write(json.dumps(row) + "\n")


def ours(checkpoint: Path, task: str, data: Path, limit: int, batch_size: int) -> dict[str, Any]:
    start = time.perf_counter()
    model, tokenizer = GPT2.from_pretrained(checkpoint), load_tokenizer(checkpoint)
    loaded = time.perf_counter()
    examples = read_task(task, data, limit)
    rows = [example_rows(tokenizer, ex, model.cfg.context_length) for ex in examples]
    scoring = time.perf_counter()
    scores = score_encoded(model, rows, batch_size)
    scored = time.perf_counter()
    metrics = task_metrics(task, examples, scores)
    tokens = sum(len(r.inputs) for rs in rows for r in rs)
    return {"acc": metrics["acc"], "acc_bytes": metrics["acc_norm_byte"], "score_s": scored - scoring,
            "total_s": time.perf_counter() - loaded, "load_s": loaded - start, "tokens": tokens}


def lm_eval_run(checkpoint: Path, task_dir: Path, name: str, limit: int, batch_size: int) -> dict[str, Any]:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    start = time.perf_counter()
    lm = HFLM(pretrained=str(checkpoint), tokenizer=str(checkpoint), dtype="float32", device="cpu",
              batch_size=batch_size)
    loaded = time.perf_counter()
    timed = {"s": 0.0}
    inner = lm.loglikelihood

    def loglikelihood(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = inner(*args, **kwargs)
        timed["s"] += time.perf_counter() - t0
        return out

    lm.loglikelihood = loglikelihood
    manager = TaskManager(include_path=str(task_dir), include_defaults=False)
    out = lm_eval.simple_evaluate(model=lm, tasks=[name], task_manager=manager, limit=limit,
                                  batch_size=batch_size, log_samples=False)
    result = out["results"][name]
    return {"acc": result["acc,none"], "acc_bytes": result["acc_bytes,none"], "score_s": timed["s"],
            "total_s": time.perf_counter() - loaded, "load_s": loaded - start}


def build(tmp: Path, preset: str, demo_examples: int) -> Path:
    torch.manual_seed(0)
    tokenizer = get_tokenizer("gpt2")
    cfg = GPT2Config.from_preset(preset, vocab_size=tokenizer.vocab_size, drop_rate=0.0)
    model = GPT2(cfg).eval()
    model.save_pretrained(tmp / "ckpt")
    tokenizer.save(tmp / "ckpt")
    rows = make_next_line_task(max(demo_examples, 500), seed=0)
    (tmp / "shakespeare.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    synthetic_hellaswag(tmp / "synthetic.jsonl", 10_000)
    (tmp / "tasks").mkdir()
    (tmp / "tasks" / "bench_shakespeare.yaml").write_text(TASK_YAML.format(
        name="bench_shakespeare", path=tmp / "shakespeare.jsonl", text="context", choices="choices",
        label="answer", delimiter=""))
    (tmp / "tasks" / "bench_synthetic.yaml").write_text(TASK_YAML.format(
        name="bench_synthetic", path=tmp / "synthetic.jsonl", text="ctx", choices="endings", label="label",
        delimiter=" "))
    return tmp / "ckpt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=200, help="examples scored per file")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--preset", default="cpu-10m", help="model shape (random weights, GPT-2 vocabulary)")
    parser.add_argument("--checkpoint", help="also score this checkpoint on the Shakespeare task")
    parser.add_argument("--demo_examples", type=int, default=500)
    args = parser.parse_args()
    os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    torch.set_num_threads(args.threads)
    print(f"{describe()}; {args.threads} thread(s), load average {os.getloadavg()[0]:.1f}; "
          f"preset {args.preset}, float32, batch {args.batch_size}, limit {args.limit}")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        os.environ["HF_HOME"] = str(tmp / "hf")
        ckpt = build(tmp, args.preset, args.demo_examples)
        print(f"{'file':<22}{'scorer':<10}{'ex/s score':>11}{'ex/s total':>11}{'acc':>8}{'acc_bytes':>10}")
        for label, task, data, lm_name in [("shakespeare next-line", "choice", tmp / "shakespeare.jsonl",
                                            "bench_shakespeare"),
                                           ("synthetic hellaswag", "hellaswag", tmp / "synthetic.jsonl",
                                            "bench_synthetic")]:
            mine = ours(ckpt, task, data, args.limit, args.batch_size)
            theirs = lm_eval_run(ckpt, tmp / "tasks", lm_name, args.limit, args.batch_size)
            for who, r in (("ours", mine), ("lm-eval", theirs)):
                print(f"{label:<22}{who:<10}{args.limit / r['score_s']:>11.1f}"
                      f"{args.limit / r['total_s']:>11.1f}{r['acc']:>8.3f}{r['acc_bytes']:>10.3f}")
            ratio_score = theirs["score_s"] / mine["score_s"]
            ratio_total = theirs["total_s"] / mine["total_s"]
            print(f"{'':<22}{'ratio':<10}{ratio_score:>10.2f}x{ratio_total:>10.2f}x   "
                  f"(mean row {mine['tokens'] / args.limit / 4:.0f} tokens)")
        if args.checkpoint:
            shakespeare = read_task("choice", tmp / "shakespeare.jsonl", args.demo_examples)
            model, tokenizer = GPT2.from_pretrained(args.checkpoint), load_tokenizer(args.checkpoint)
            rows = [example_rows(tokenizer, ex, model.cfg.context_length) for ex in shakespeare]
            metrics = task_metrics("choice", shakespeare, score_encoded(model, rows, args.batch_size))
            print(f"{args.checkpoint} on {len(shakespeare)} Shakespeare next-line examples (chance 0.250): "
                  + "  ".join(f"{k} {v:.3f}" for k, v in metrics.items()))


if __name__ == "__main__":
    main()
