"""The probe behind `auto` on a CPU: time forward+backward of one TransformerBlock at the
model's width for each combination of precision, attention kernel and thread count, and
cache the timings per CPU, torch build and shape (a different CPU or torch re-probes).

Timings taken while other processes kept the CPU busy are used for this run only, never
cached: on a busy 2-core machine two threads wait for each other and measure several times
slower than one, which is true for that moment but not for the machine. The same rule guards
the cache the other way: cached timings (taken on a quiet machine) are used only while the
machine is quiet now; when others use more than BUSY_FRACTION of the CPU at the start of a
run, it measures again for itself (a stale "2 threads are faster" ran 2x slower than one
thread under a load of 4 on 2 cores).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import typing
import warnings
from pathlib import Path

import torch

from gpt2.config import AttentionImpl, GPT2Config
from gpt2.files import write_bytes_atomic
from gpt2.runtime.hardware import CpuInfo, cache_dir
from gpt2.transformer_block import TransformerBlock

ATTENTIONS: tuple[str, ...] = typing.get_args(AttentionImpl)
# Tokens per probe step: about PROBE_FLOPS of work (~20 ms on 2 idle cores): the probe takes < 1 s,
# but at least MIN_PROBE_TOKENS: autocast re-casts every weight to bf16 on each forward, and with
# too few tokens that cast hides bf16's speed (GPT-2 small: bf16 ~= fp32 at 32 tokens, 2.5x at 512).
PROBE_FLOPS = 2e9
MAX_PROBE_TOKENS = 2048
MIN_PROBE_TOKENS = 128
PROBE_BUDGET_S = 0.5  # after warm-up and one timed round, more rounds (up to 5) only within this
CACHE_FILE = "autotune.json"
BUSY_FRACTION = 0.25  # others' share of all cores above which timings are not cached, nor trusted
LOAD_SAMPLE_S = 0.2  # how long the load is sampled before trusting cached timings
Combo = tuple[str, str, int]  # (dtype, attention, threads)


def combo_key(dtype: str, attention: str, threads: int) -> str:
    """'bf16/explicit/2': how one combination is named in timings and in the cache."""
    return f"{dtype}/{attention}/{threads}"


def probe_shape(cfg: GPT2Config, batch_size: int, seq_len: int) -> tuple[int, int]:
    """(batch, seq) to time: the training shape, shrunk to about PROBE_FLOPS of work."""
    d = cfg.emb_dim
    flops_per_token = 72 * d * d + 12 * seq_len * d  # 6 x (12 d^2 weights) + attention scores
    tokens = int(min(MAX_PROBE_TOKENS, max(MIN_PROBE_TOKENS, PROBE_FLOPS / flops_per_token)))
    seq = min(seq_len, tokens)
    return max(1, min(batch_size, tokens // seq)), seq


def measure(cfg: GPT2Config, batch: int, seq: int, combos: list[Combo]) -> dict[str, float]:
    """Best seconds per forward+backward of one TransformerBlock on CPU, for each combo.

    Combos are interleaved round by round so a noisy neighbour slows all of them alike. Round 0
    warms up (allocations, oneDNN primitives); its time is kept only for a combo dropped right
    after it for being 5x slower than the best (e.g. threads contending with another process).
    Later rounds drop combos 3x slower. The caller's RNG state and thread count are restored.
    """
    saved_threads = torch.get_num_threads()
    best: dict[str, float] = {}
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(0)
        blocks = {a: TransformerBlock(dataclasses.replace(cfg, attention=a)) for a in ATTENTIONS}
        x = torch.randn(batch, seq, cfg.emb_dim, requires_grad=True)  # (B, T, d)
        start = time.perf_counter()
        rounds = 0
        active = sorted(combos, key=lambda c: c[2])
        try:
            while rounds < 2 or (rounds < 6 and time.perf_counter() - start < PROBE_BUDGET_S):
                for dtype, attention, threads in active:  # grouped by thread count
                    torch.set_num_threads(threads)
                    seconds = _step_seconds(blocks[attention], x, dtype)
                    key = combo_key(dtype, attention, threads)
                    best[key] = seconds if rounds <= 1 else min(best[key], seconds)
                limit = (5 if rounds == 0 else 3) * min(best.values())
                active = [c for c in active if best[combo_key(*c)] < limit]
                rounds += 1
        finally:
            torch.set_num_threads(saved_threads)
    return best


def _step_seconds(block: TransformerBlock, x: torch.Tensor, dtype: str) -> float:
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        y = block(x)  # (B, T, d)
    y.float().sum().backward()
    seconds = time.perf_counter() - start
    block.zero_grad(set_to_none=True)
    x.grad = None
    return seconds


def cache_key(info: CpuInfo, cfg: GPT2Config, batch: int, seq: int) -> str:
    """Everything that changes the timings: another CPU, torch or ISA limit means a new probe."""
    return (f"{info.model}|{','.join(sorted(info.flags))}|torch {info.torch_version}|"
            f"{info.capability}|onednn_bf16={info.onednn_bf16}|cores={info.cores}|"
            f"d={cfg.emb_dim},h={cfg.n_heads},bias={cfg.bias},drop={cfg.drop_rate}|B={batch},T={seq}")


def _read_cache(path: Path) -> dict[str, dict[str, float]]:
    """The cache file's entries; a missing, corrupt or foreign file reads as empty."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and all(
        isinstance(s, (int, float)) for s in v.values())} if isinstance(data, dict) else {}


def _write_cache(path: Path, data: dict[str, dict[str, float]]) -> None:
    """Write atomically (readers never see half a file); a read-only home must not stop
    training: then we just probe again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, json.dumps(data, indent=1, sort_keys=True).encode())
    except OSError as err:
        warnings.warn(f"could not write the autotune cache {path}: {err}", stacklevel=3)


def cpu_ticks() -> tuple[int, int, float] | None:
    """(busy ticks of all CPUs, all ticks, this process's CPU seconds) now, from Linux's
    /proc/stat; None where there is none."""
    try:
        # user nice system idle iowait irq softirq steal (guest time is already inside user/nice)
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    own = os.times()
    return sum(ticks) - idle, sum(ticks), own.user + own.system


def others_share(before: tuple[int, int, float] | None, after: tuple[int, int, float] | None) -> float:
    """Fraction of all cores that other processes used between two `cpu_ticks` (0 if unknown)."""
    if before is None or after is None or after[1] <= before[1]:
        return 0.0
    own_ticks = (after[2] - before[2]) * os.sysconf("SC_CLK_TCK")
    return max(0.0, (after[0] - before[0] - own_ticks) / (after[1] - before[1]))


def others_load(seconds: float | None = None) -> float:
    """Fraction of all cores other processes use now, sampled over `seconds` (0 if unknown)."""
    before = cpu_ticks()
    time.sleep(LOAD_SAMPLE_S if seconds is None else seconds)
    return others_share(before, cpu_ticks())


def cached_timings(info: CpuInfo, cfg: GPT2Config, batch_size: int, seq_len: int, combos: list[Combo],
                   refresh: bool = False) -> tuple[dict[str, float], tuple[int, int], float | None]:
    """Timings of `combos` (measuring only those not cached yet, or all of them when the machine
    is busy now), the probe shape, and, when the machine was too busy to cache what was
    measured, the share of the CPU others took (else None)."""
    batch, seq = probe_shape(cfg, batch_size, seq_len)
    path = cache_dir() / CACHE_FILE
    key = cache_key(info, cfg, batch, seq)
    cache = _read_cache(path)
    timings = {} if refresh else dict(cache.get(key, {}))
    missing = [c for c in combos if combo_key(*c) not in timings]
    if not missing and others_load() > BUSY_FRACTION:  # quiet-machine timings do not hold now
        missing = list(combos)
    busy = None
    if missing:
        before = cpu_ticks()
        timings.update(measure(cfg, batch, seq, missing))
        share = others_share(before, cpu_ticks())
        if share <= BUSY_FRACTION:
            cache[key] = timings
            _write_cache(path, cache)
        else:
            busy = share
    return {combo_key(*c): timings[combo_key(*c)] for c in combos}, (batch, seq), busy


