"""What 8 bits cost in quality, ours against llama.cpp's q8_0, on the same trained model and text.

A small GPT-2-BPE model is trained on the built-in Shakespeare corpus with our own CLI (`gpt2
prepare` + `gpt2 train`, cached in .bench/quality-model/, a few minutes once); its checkpoint is
already a Hugging Face GPT-2 folder, which llama.cpp's converter turns into GGUF f32 and q8_0.
The held-out text is the prepared val split, encoded once: both engines get the same ids.

Perplexity: --windows non-overlapping windows of the model's context; in each, every position
but the first is scored (the first token has no context). Ours feeds a window through the KV
cache 8 positions at a time, the rows that decoding steps take, so int8-dynamic rounds its
activations as when it generates (a whole prompt at once takes its float-activation path);
llama.cpp evaluates the window in one batch (q8_0 rounds activations either way). Against the
same engine's float32, over the same positions: the perplexity increase (with the standard error
of the per-window differences), the mean KL divergence of the next-token distributions, and how
often the most likely token is unchanged. Greedy agreement: 8 prompts of 16 held-out tokens, 64
greedy tokens each, compared position by position with the same engine's float32 (and ours
float32 with llama.cpp f32, as a check of the set-up). Each engine runs in its own worker
process, llama.cpp in its own environment (benchmarks/llamacpp_setup.sh); one thread each.

    bash benchmarks/llamacpp_setup.sh                     # once (cached in .bench/)
    .venv/bin/python benchmarks/bench_quant_quality.py [--windows 32]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / ".bench"
CACHE = BENCH / "quality-model"
DATA, RUN = CACHE / "data", CACHE / "run"
CONTEXT, STEPS = 256, 150
PROMPTS, PROMPT_LEN, NEW_TOKENS, CHUNK = 8, 16, 64, 8
PREPARE = ["prepare", "--input", "shakespeare", "--out", str(DATA), "--tokenizer", "gpt2",
           "--progress", "false"]
TRAIN = ["train", "--data.dir", str(DATA), "--model.preset", "cpu-small",
         "--model.context_length", str(CONTEXT), "--optim.name", "muon", "--optim.lr", "4e-3",
         "--optim.muon_lr", "0.032", "--optim.warmup_steps", "20",
         "--train.max_steps", str(STEPS), "--train.batch_size", "8", "--train.out_dir", str(RUN),
         "--train.log_interval", "10", "--eval.interval", "50", "--eval.batches", "5",
         "--eval.final_full", "false", "--eval.sample_tokens", "0", "--system.device", "cpu",
         "--system.progress", "false", "--overwrite", "true"]


def last_eval() -> dict | None:
    """The training run's last validation record (metrics.jsonl), or None before it has one."""
    metrics = RUN / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.exists() else []
    records = [r for r in map(json.loads, filter(str.strip, lines)) if "val_loss" in r]
    return records[-1] if records else None


def train_model() -> Path:
    """The trained checkpoint (a Hugging Face GPT-2 folder), made once with our CLI; a run cut
    short (its last evaluation before step STEPS) is trained again."""
    if (last_eval() or {}).get("step") != STEPS:
        for command in (PREPARE, TRAIN):
            print("running: gpt2 " + " ".join(command), flush=True)
            subprocess.run([sys.executable, "-m", "gpt2", *command], check=True, cwd=ROOT)
    return RUN / "latest"


def convert(llama_python: str, checkpoint: Path, kind: str) -> str:
    """The checkpoint as GGUF of `kind` (f32, q8_0) by llama.cpp's own converter; remade when older."""
    path = CACHE / f"model-{kind}.gguf"
    if not path.exists() or path.stat().st_mtime < (checkpoint / "model.safetensors").stat().st_mtime:
        converter = str(BENCH / "llama.cpp" / "convert_hf_to_gguf.py")
        command = [llama_python, converter, str(checkpoint), "--outtype", kind, "--outfile", str(path)]
        subprocess.run(command, check=True, capture_output=True)
    return str(path)


def heldout(windows: int) -> dict[str, list[list[int]]]:
    """Perplexity windows, then greedy prompts from the val split after them (the same ids for both)."""
    import numpy as np

    from gpt2.data.shards import open_shard, split_shards

    ids = np.concatenate([np.asarray(open_shard(p)) for p in split_shards(DATA, "val")]).astype(int)
    start, stride = windows * CONTEXT, 4 * CONTEXT
    if start + PROMPTS * stride > len(ids):
        sys.exit(f"--windows {windows}: the val split holds {len(ids)} tokens, too few; use fewer windows")
    return {"windows": [ids[i * CONTEXT:(i + 1) * CONTEXT].tolist() for i in range(windows)],
            "prompts": [ids[start + i * stride:][:PROMPT_LEN].tolist() for i in range(PROMPTS)]}


def log_softmax(logits):
    """(T, V) logits -> float64 log-probabilities, numpy (the same formula for both engines)."""
    import numpy as np

    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def measure(log_probs: dict, greedy: dict, data: dict) -> dict:
    """For each precision of one engine (log_probs: name -> window -> (T, V) log-probabilities,
    the first name its float32; greedy: name -> prompt -> tokens): per window the summed NLL of
    window[1:] and the KL divergence from float32 over the same positions (row t predicts token
    t + 1); how many of those positions keep float32's most likely token; the greedy tokens."""
    import numpy as np

    out = {name: {"nll": [], "kl": [], "top1": 0} for name in log_probs}
    for window in data["windows"]:
        rows, targets = np.arange(len(window) - 1), window[1:]
        results = {name: f(window)[:-1] for name, f in log_probs.items()}  # (T - 1, V) each
        ref = next(iter(results.values()))
        for name, lp in results.items():
            out[name]["nll"].append(-float(lp[rows, targets].sum()))
            out[name]["kl"].append(float((np.exp(ref) * (ref - lp)).sum()))
            out[name]["top1"] += int((lp.argmax(axis=1) == ref.argmax(axis=1)).sum())
    for name, f in greedy.items():
        out[name]["tokens"] = [f(prompt) for prompt in data["prompts"]]
    return out


def modes() -> dict:
    """Our precisions: name -> function that turns a float32 GPT2 into that engine (in place)."""
    from gpt2.generation import quantize_int8

    table = {"float32": lambda model: model, "int8": quantize_int8}
    try:
        from gpt2.generation import quantize_int8_dynamic

        table["int8-dynamic"] = quantize_int8_dynamic
    except ImportError:
        print("note: gpt2.generation.quantize_int8_dynamic is not importable here; int8-dynamic skipped")
    return table


def ours(checkpoint: str, data_file: str) -> dict:
    """In a worker process: `measure` for our engine at every precision of `modes()`, one thread."""
    import torch

    from gpt2 import GPT2
    from gpt2.attention import KVCache
    from gpt2.generation import SamplingOptions, generate

    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    models = {mode: make(GPT2.from_pretrained(checkpoint)) for mode, make in modes().items()}

    def log_probs(model):
        def run(window: list[int]):
            cache, ids = KVCache(model.cfg, 1, CONTEXT), torch.tensor([window])  # ids: (1, T)
            logits = torch.cat([model(part, cache=cache) for part in ids.split(CHUNK, dim=1)], dim=1)
            return log_softmax(logits[0].numpy())  # (T, V)
        return run

    def greedy(model):
        def run(prompt: list[int]) -> list[int]:
            out = generate(model, torch.tensor([prompt]), NEW_TOKENS, SamplingOptions(temperature=0))
            return out[0, PROMPT_LEN:].tolist()
        return run

    data = json.loads(Path(data_file).read_text())
    return measure({m: log_probs(model) for m, model in models.items()},
                   {m: greedy(model) for m, model in models.items()}, data)


def llama(ggufs: dict[str, str], data_file: str) -> dict:
    """In a worker process of the llama.cpp environment: `measure` for each GGUF (f32 first)."""
    from llama_cpp import Llama

    models = {kind: Llama(model_path=path, n_ctx=CONTEXT, n_batch=CONTEXT, logits_all=True, n_threads=1,
                          n_threads_batch=1, verbose=False) for kind, path in ggufs.items()}

    def log_probs(llm):
        def run(window: list[int]):
            llm.reset()
            llm.eval(window)
            return log_softmax(llm.scores[:len(window)])  # (T, V)
        return run

    def greedy(llm):
        def run(prompt: list[int]) -> list[int]:
            llm.reset()
            out = []
            for token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
                out.append(int(token))
                if len(out) == NEW_TOKENS:
                    break
            return out
        return run

    data = json.loads(Path(data_file).read_text())
    return measure({k: log_probs(llm) for k, llm in models.items()},
                   {k: greedy(llm) for k, llm in models.items()}, data)


def worker(python: str, call: str) -> dict:
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); " \
           f"import bench_quant_quality as b, json; print(json.dumps(b.{call}))"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        sys.exit(f"worker {call} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def agreement(a: list[list[int]], b: list[list[int]]) -> str:
    same = sum(x == y for p, q in zip(a, b, strict=True) for x, y in zip(p, q, strict=False))
    return f"{same}/{sum(len(p) for p in a)}"


def row(engine: str, precision: str, run: dict, base: dict, scored: int) -> str:
    """One table line: perplexity, its increase over `base` (the same engine's float32) with the
    standard error of the per-window differences (paired: the same text), mean KL divergence
    from float32 per token, next tokens equal to float32's (teacher-forced), greedy agreement."""
    ppl, base_ppl = (math.exp(sum(r["nll"]) / scored) for r in (run, base))
    diffs = [(a - b) / (CONTEXT - 1) for a, b in zip(run["nll"], base["nll"], strict=True)]  # nats/token
    mean = sum(diffs) / len(diffs)
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / max(len(diffs) - 1, 1) / len(diffs))
    return (f"| {engine} | {precision} | {ppl:.3f} | {ppl - base_ppl:+.3f} | {math.expm1(mean):+.3%} "
            f"(± {se:.3%}) | {sum(run['kl']) / scored:.2e} | {run['top1']}/{scored} | "
            f"{agreement(base['tokens'], run['tokens'])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=32, help=f"perplexity windows of {CONTEXT} tokens")
    parser.add_argument("--kind", default="native",
                        help="which llama.cpp build (LLAMA_KIND of llamacpp_setup.sh)")
    args = parser.parse_args()
    from bench_llamacpp import llama_env
    from gpt2.runtime.hardware import describe

    llama_python = llama_env(args.kind)
    checkpoint = train_model()
    cfg = json.loads((checkpoint / "config.json").read_text())  # Hugging Face names
    data_file = CACHE / "heldout.json"
    data_file.write_text(json.dumps(heldout(args.windows)))
    ggufs = {kind: convert(llama_python, checkpoint, kind) for kind in ("f32", "q8_0")}
    lc = worker(llama_python, f"llama({ggufs!r}, {str(data_file)!r})")
    us = worker(sys.executable, f"ours({str(checkpoint)!r}, {str(data_file)!r})")
    scored = args.windows * (CONTEXT - 1)
    print(f"\nmodel: {cfg['n_layer']} layers x {cfg['n_embd']}, context {CONTEXT}, {STEPS} steps on the "
          f"built-in Shakespeare corpus, val loss {last_eval()['val_loss']:.3f}; "
          f"held out: {args.windows} windows x {CONTEXT} tokens ({scored} scored) of the val split; "
          f"greedy: {PROMPTS} prompts x {NEW_TOKENS} tokens; one thread; {describe()}\n")
    print("| engine | precision | perplexity | increase | increase (± s.e.) | KL from float32 (nats/token) "
          "| next token = float32's | greedy = float32's |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for kind, run in lc.items():
        print(row("llama.cpp", kind, run, lc["f32"], scored))
    for mode, run in us.items():
        print(row("ours", mode, run, us["float32"], scored))
    f32 = math.exp(sum(us["float32"]["nll"]) / scored) / math.exp(sum(lc["f32"]["nll"]) / scored) - 1
    print(f"\ncheck: ours float32 vs llama.cpp f32: perplexity {f32:+.3%}, greedy tokens equal "
          f"{agreement(us['float32']['tokens'], lc['f32']['tokens'])}")


if __name__ == "__main__":
    main()
