"""Benchmark `gpt2 prepare` on the formats real corpora come in, side by side in one run.

    .venv/bin/python benchmarks/bench_prepare_formats.py            # ~200 MB of text per format
    .venv/bin/python benchmarks/bench_prepare_formats.py --mb 20    # a quick look

The same documents (Shakespeare cut into ~2 KB pieces, repeated to --mb of text) are written
as: one plain .txt (documents separated by blank lines: the baseline), a plain .jsonl, a
.jsonl.zst (zstandard level 3) and a Parquet file (snappy, pyarrow's default row groups of
up to 1 Mi rows: the worst case for memory, one row group of the text column is read at a
time). Each is prepared with GPT-2 BPE in a fresh process (bench_prepare.run_prepare):
MB/s counts bytes of text, so the rows compare directly; peak RSS of the main process and
of the largest worker (a worker is forked from the main process, so its figure includes what
the main process held at that moment).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from bench_prepare import run_prepare, tiktoken_cache
from gpt2.data.corpus import shakespeare_files
from gpt2.data.workers import default_workers
from gpt2.runtime.hardware import describe


def documents(mb: int) -> list[str]:
    """~2 KB documents cut from Shakespeare at line breaks, repeated to `mb` MB of text."""
    text = "".join(f.read_text(encoding="utf-8") for f in shakespeare_files())
    pieces, start = [], 0
    while start < len(text):
        end = text.find("\n", start + 2000) + 1 or len(text)
        pieces.append(text[start:end].strip("\n"))
        start = end
    docs, size = [], 0
    while size < mb * 1_000_000:
        for piece in pieces:
            docs.append(piece)
            size += len(piece.encode("utf-8"))
    return docs


NAMES = ("docs.txt", "docs.jsonl", "docs.jsonl.zst", "docs.parquet")


def write_inputs(mb: int, folder: Path) -> None:
    """The four inputs (run in a child process: its memory must not count in the RSS of the
    prepare processes, which Linux would carry over from this one through fork and exec)."""
    docs = documents(mb)
    paths = {name: folder / name for name in NAMES}
    paths["docs.txt"].write_text("\n\n".join(docs), encoding="utf-8")
    lines = "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs).encode()
    paths["docs.jsonl"].write_bytes(lines)
    paths["docs.jsonl.zst"].write_bytes(zstandard.ZstdCompressor(level=3, threads=-1).compress(lines))
    pq.write_table(pa.table({"text": docs}), paths["docs.parquet"])
    (folder / "text_mb").write_text(str(sum(len(d.encode("utf-8")) for d in docs) / 1e6))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=200, help="MB of text per format")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--write", help=argparse.SUPPRESS)  # the child that writes the inputs
    args = parser.parse_args()
    if args.write:
        write_inputs(args.mb, Path(args.write))
        return
    print(f"machine: {describe()}, python {platform.python_version()}, pyarrow {pa.__version__}, "
          f"zstandard {zstandard.__version__}, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        tiktoken_cache(Path(tmp))
        subprocess.run([sys.executable, __file__, "--mb", str(args.mb), "--write", tmp], check=True)
        text_mb = float((Path(tmp) / "text_mb").read_text())
        paths = {name: Path(tmp) / name for name in NAMES}
        print(f"{len(paths)} inputs of {text_mb:.0f} MB of text each; prepare with {args.workers} workers\n")
        print(f"{'input':16} {'file MB':>8} {'s':>7} {'text MB/s':>10} {'vs .txt':>8} {'tokens':>12} "
              f"{'RSS main':>9} {'RSS worker':>11}")
        base = None
        for name, path in paths.items():
            stats = run_prepare(str(path), Path(tmp) / f"out-{name}", args.workers)
            speed = text_mb / stats["seconds"]
            base = base or speed
            print(f"{name:16} {path.stat().st_size / 1e6:8.0f} {stats['seconds']:7.1f} {speed:10.2f} "
                  f"{speed / base:7.2f}x {stats['tokens']:12,} {stats['rss_main_mb']:6.0f} MB "
                  f"{stats['rss_worker_mb']:8.0f} MB", flush=True)
        print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
