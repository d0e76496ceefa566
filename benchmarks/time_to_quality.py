"""Time to quality: seconds for `gpt2 train` to reach a validation loss on char-level
tiny Shakespeare, start-up included.

The corpus is ../shared/data/tinyshakespeare.txt beside the repo (or --text): characters, the first
90% for training and the last 10% for validation, as nanoGPT's shakespeare_char does.
The data folder is written first (timed separately); then one `gpt2 train --config ...`
process runs the recipe and the wall time of that whole process (Python start-up,
imports, model build, training, evaluations, the final loss over the whole validation
split) is the figure. It succeeds when that final whole-split loss is <= --target.

    .venv/bin/python benchmarks/time_to_quality.py
    .venv/bin/python benchmarks/time_to_quality.py --config configs/tinyshakespeare_char.yaml  # nanoGPT's
    .venv/bin/python benchmarks/time_to_quality.py --nanogpt ~/src/nanoGPT  # + nanoGPT's own train.py

--nanogpt DIR runs nanoGPT's own `train.py` (a checkout of github.com/karpathy/nanoGPT; its
files are copied to a temporary folder, the checkout is not written) with its README's CPU
recipe on the same text, timed the same way (its `prepare.py` not counted), and prints the
ratio of our wall time to its. Its val loss is its own 20-batch estimate at iteration 2000.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gpt2.data.shards import write_prepared
from gpt2.runtime.hardware import describe
from gpt2.tokenizers import get_tokenizer

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEXT = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"  # ../shared beside the repo


def prepare_char_split(text_path: Path, out: Path, train_fraction: float = 0.9) -> Path:
    """Character shards with nanoGPT's split: first 90% of the ids train, the rest val."""
    text = text_path.read_text(encoding="utf-8")
    tok = get_tokenizer("char", text=text)
    ids = np.array(tok.encode(text), dtype=np.int64)
    n = int(len(ids) * train_fraction)
    return write_prepared(out, tok, {"train": ids[:n], "val": ids[n:]},
                          split={"val_ratio": 1 - train_fraction, "how": "last 10%"})


def run_recipe(config: str, data: Path, out: Path, overrides: list[str]) -> tuple[float, float, int]:
    """Run one `gpt2 train` process: (wall seconds, whole-split val loss, steps)."""
    cmd = [str(Path(sys.executable).parent / "gpt2"), "train", "--config", config, f"--data.dir={data}",
           f"--train.out_dir={out}", "--system.progress=false", *overrides]
    t0 = time.perf_counter()
    result = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if result.returncode != 0:
        sys.exit(f"gpt2 train failed:\n{result.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    final = next(r["full_val_loss"] for r in reversed(rows) if "full_val_loss" in r)
    return wall, final, max(r["step"] for r in rows)


# nanoGPT's README: "a baby GPT ... on CPU", 2,000 iterations of 4 layers/4 heads/128 dims.
NANOGPT_CPU_RECIPE = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False",
                      "--eval_iters=20", "--log_interval=1", "--block_size=64", "--batch_size=12",
                      "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters=2000",
                      "--lr_decay_iters=2000", "--dropout=0.0"]


def run_nanogpt(checkout: Path, text_path: Path, work: Path) -> tuple[float, float]:
    """nanoGPT's own train.py with its CPU recipe, in a copy of `checkout`: (wall seconds of the
    train.py process, its last printed val loss estimate)."""
    if not (checkout / "train.py").exists():
        sys.exit(f"{checkout} has no train.py; pass a checkout of github.com/karpathy/nanoGPT")
    shutil.copytree(checkout, work, ignore=shutil.ignore_patterns(".git", "out-*", "*.bin", "*.pkl"))
    shutil.copy(text_path, work / "data" / "shakespeare_char" / "input.txt")  # so no download
    subprocess.run([sys.executable, "data/shakespeare_char/prepare.py"], cwd=work, check=True,
                   capture_output=True)
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, "train.py", *NANOGPT_CPU_RECIPE], cwd=work, capture_output=True,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - t0
    if result.returncode != 0:
        sys.exit(f"nanoGPT train.py failed:\n{result.stderr[-3000:]}")
    return wall, float(re.findall(r"val loss (\d+\.\d+)", result.stdout)[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "tinyshakespeare_char_fast.yaml"))
    parser.add_argument("--baseline", action="store_true",
                        help="also run nanoGPT's recipe (configs/tinyshakespeare_char.yaml) for the ratio")
    parser.add_argument("--nanogpt", type=Path, help="a nanoGPT checkout: also run its own train.py")
    parser.add_argument("--text", default=str(DEFAULT_TEXT))
    parser.add_argument("--target", type=float, default=1.88)
    parser.add_argument("overrides", nargs="*", help="extra `gpt2 train` options, e.g. --optim.lr=2e-3")
    args = parser.parse_args()
    text = Path(args.text)
    if not text.exists():
        sys.exit(f"{text} not found; pass --text path/to/tinyshakespeare.txt")
    recipes = [("fast", args.config)]
    if args.baseline:
        recipes.append(("nanoGPT", str(ROOT / "configs" / "tinyshakespeare_char.yaml")))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        data = prepare_char_split(text, Path(tmp) / "data")
        print(f"machine: {describe()}")
        print(f"data prepared in {time.perf_counter() - t0:.1f} s (not counted)")
        for name, config in recipes:
            extra = args.overrides if name == "fast" else []
            wall, final, steps = run_recipe(config, data, Path(tmp) / name, extra)
            results[name] = wall
            reached = "reached" if final <= args.target else "NOT reached"
            print(f"{name:8} {Path(config).name} {' '.join(extra)}: {steps} steps, whole-split val loss "
                  f"{final:.4f} ({reached} <= {args.target}), {wall:.1f} s wall including start-up")
            if name == "fast" and final <= args.target:
                print(f"seconds to reach val loss <= {args.target}: {wall:.1f}")
        if args.nanogpt:
            wall, estimate = run_nanogpt(args.nanogpt.expanduser(), text, Path(tmp) / "nanoGPT-checkout")
            results["nanoGPT train.py"] = wall
            print(f"nanoGPT's own train.py (its CPU recipe): val loss {estimate:.4f} (its 20-batch "
                  f"estimate), {wall:.1f} s wall including start-up")
    for baseline in ("nanoGPT", "nanoGPT train.py"):
        if baseline in results:
            ratio = results["fast"] / results[baseline]
            print(f"time ratio fast / {baseline} (same machine, same run): {ratio:.2f}")


if __name__ == "__main__":
    main()
