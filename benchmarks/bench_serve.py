"""Load test of `gpt2 serve` on loopback: C concurrent streaming clients for D seconds, against
a server that batches concurrent requests (--max_batch 8) and one that serves them one at a
time (--max_batch 1), and optionally the same against an older version of the project
(--baseline_src, e.g. v0.2's equal-settings batching). Prints requests/s, time to first
token (p50/p95), generated tokens/s and errors for each.

The server is the real command in its own process (so the clients do not share its GIL),
on a checkpoint of random weights saved to a temporary folder: the cpu-10m preset's shape
with GPT-2's BPE tokenizer unless --checkpoint is given. The load is mixed, as real traffic
is: each request is greedy or sampled (temperature 0.8, top-k 40) at random, asks for 32 to
--max_tokens tokens, and each client waits 0-0.5 s between requests, so arrivals spread
over time. The draws are seeded, so every server sees the same sequence of requests. The
run is bounded in time (--seconds) and in requests (--max_requests per client).

    .venv/bin/python benchmarks/bench_serve.py [--clients 16] [--seconds 30] [--max_tokens 256]
    .venv/bin/python benchmarks/bench_serve.py --batches 8 --compile false,auto --dtype auto
    git worktree add /tmp/gpt2-v0.2 10c2e90     # the version before the decoding engine
    .venv/bin/python benchmarks/bench_serve.py --baseline_src /tmp/gpt2-v0.2/src
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import torch

from gpt2 import GPT2, GPT2Config
from gpt2.checkpoint import save_checkpoint
from gpt2.runtime.hardware import describe
from gpt2.tokenizers import get_tokenizer

PROMPTS = ["The meaning of life is", "Once upon a time", "In the beginning", "To be, or not to be:"]


@dataclass
class Load:
    """What the clients saw."""

    ttft: list[float] = field(default_factory=list)  # seconds to the first piece of text
    tokens: int = 0
    requests: int = 0
    errors: int = 0


def random_checkpoint(folder: Path) -> Path:
    tokenizer = get_tokenizer("gpt2")
    torch.manual_seed(0)
    cfg = GPT2Config.from_preset("cpu-10m", vocab_size=tokenizer.vocab_size, drop_rate=0.0)
    save_checkpoint(folder / "cpu-10m-random", GPT2(cfg).eval(), tokenizer=tokenizer)
    return folder / "cpu-10m-random"


def start_server(checkpoint: Path, max_batch: int, threads: int, dtype: str, compile_step: str | None,
                 src: str | None = None) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "gpt2", "serve", "--checkpoint", str(checkpoint), "--port", str(port),
               "--max_batch", str(max_batch), "--max_n", "1", "--device", "cpu", "--dtype", dtype,
               "--threads", str(threads)] + (["--compile", compile_step] if compile_step else [])
    env = {**os.environ, "PYTHONPATH": src} if src else None  # src: another version's package
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # --compile: the step is compiled before the server is up
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


def mixed_request(rng: random.Random, max_tokens: int) -> dict:
    """Half greedy, half temperature 0.8 / top-k 40; 32 to max_tokens tokens."""
    body = {"prompt": rng.choice(PROMPTS), "max_tokens": rng.randint(min(32, max_tokens), max_tokens),
            "stream": True, "temperature": 0.0}
    if rng.random() < 0.5:
        body.update(temperature=0.8, top_k=40)
    return body


async def one_request(client: httpx.AsyncClient, body: dict, load: Load) -> None:
    start, first = time.perf_counter(), None
    try:
        async with client.stream("POST", "/v1/completions", json=body) as response:
            if response.status_code != 200:
                load.errors += 1
                await response.aread()
                return
            async for line in response.aiter_lines():
                if line.startswith("data: {") and '"finish_reason": null' in line:
                    first = first or time.perf_counter()
                    load.tokens += 1  # one chunk per generated token (BPE pieces may be held back)
        load.requests += 1
        load.ttft.append((first or time.perf_counter()) - start)
    except httpx.HTTPError:
        load.errors += 1


async def run_load(url: str, clients: int, seconds: float, max_tokens: int,
                   max_requests: int) -> tuple[Load, float]:
    load, stop_at = Load(), time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients)

    async def client_loop(i: int, client: httpx.AsyncClient) -> None:
        rng = random.Random(i)  # the same requests, in the same order, for every server
        for _ in range(max_requests):
            await asyncio.sleep(rng.uniform(0, 0.5))
            if time.perf_counter() >= stop_at:
                return
            await one_request(client, mixed_request(rng, max_tokens), load)

    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await asyncio.gather(*(client_loop(i, client) for i in range(clients)))
    return load, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--max_tokens", type=int, default=256, help="the longest request (32 to this)")
    parser.add_argument("--max_requests", type=int, default=200, help="per client, a bound besides --seconds")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--batches", default="8,1", help="the --max_batch values to compare")
    parser.add_argument("--compile", default="false", help="the --compile values to compare (this version)")
    parser.add_argument("--dtype", default="float32", help="the servers' --dtype (auto: gpt2 serve's choice)")
    parser.add_argument("--checkpoint", help="serve this checkpoint instead of random cpu-10m weights")
    parser.add_argument("--baseline_src", help="also run the servers of another version's src/ folder")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(args.checkpoint) if args.checkpoint else random_checkpoint(Path(tmp))
        batches = [int(b) for b in args.batches.split(",")]
        servers = [("this", None, b, c) for b in batches for c in args.compile.split(",")]
        if args.baseline_src:
            servers += [("baseline", args.baseline_src, b, None) for b in batches]
        for version, src, max_batch, compile_step in servers:
            proc, url = start_server(checkpoint, max_batch, args.threads, args.dtype, compile_step, src)
            try:
                load, wall = asyncio.run(run_load(url, args.clients, args.seconds, args.max_tokens,
                                                  args.max_requests))
                health = httpx.get(f"{url}/health").json()
            finally:
                proc.terminate()
                proc.wait(30)
            rows.append((version, max_batch, compile_step or "-", load, wall, health["largest_batch"]))
    print(f"gpt2 serve load test: {checkpoint.name}, {args.clients} streaming clients, {args.seconds:.0f} s, "
          f"mixed greedy/sampled, 32-{args.max_tokens} tokens/request, {args.threads} thread(s), "
          f"--dtype {args.dtype}, "
          f"{describe()}")
    print(f"{'version':>8} {'max_batch':>9} {'compile':>7} {'requests':>8} {'req/s':>6} {'TTFT p50':>9} "
          f"{'TTFT p95':>9} {'tokens/s':>9} {'errors':>6} {'largest batch':>13}")
    for version, max_batch, compile_step, load, wall, largest in rows:
        p50, p95 = percentile(load.ttft, 50), percentile(load.ttft, 95)
        print(f"{version:>8} {max_batch:>9} {compile_step:>7} {load.requests:>8} "
              f"{load.requests / wall:>6.2f} {p50:>8.2f}s {p95:>8.2f}s {load.tokens / wall:>9.1f} "
              f"{load.errors:>6} {largest:>13}")


if __name__ == "__main__":
    main()
