"""Bounds checked before any work: numbers that would break training or sampling, and sizes
that would not fit in memory.

- `check_numbers`: every float option of a dataclass is finite (NaN and infinity come in as
  `.nan`, `inf`, TOML's `inf`, JSON's `Infinity`) and every integer fits in 64 bits, so torch
  and numpy accept it; seeds are in 0..2**63 - 1. Each options dataclass calls it from its
  `__post_init__`, so a value is refused where it enters, from a command line or a file.
- `check_fits`: a model or a batch is refused in one line, with the figure, when its estimated
  memory exceeds what this machine has available (`/proc/meminfo`'s MemAvailable; where that
  is unknown, no check), instead of an allocator's traceback seconds or minutes later.

No torch here: the `gpt2` command builds its options without importing it.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from gpt2.errors import GPT2Error

MAX_SEED = 2**63 - 1
MAX_INT = 2**63 - 1
MAX_LAYERS = 4096  # GPT-2 XL has 48; nothing trains with more than a few hundred


def check_numbers(options: Any, prefix: str = "--") -> None:
    """Refuse a non-finite float or an integer beyond 64 bits in any field of `options`."""
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise GPT2Error(f"{prefix}{f.name} must be a finite number, got {value}")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise GPT2Error(f"{prefix}{f.name} {value} is out of range (at most {MAX_INT:,} in size)")


def check_seed(name: str, seed: int | None) -> None:
    """A seed numpy and torch both take: an integer in 0..2**63 - 1 (or None)."""
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise GPT2Error(f"{name} must be an integer from 0 to 2**63 - 1, got {seed!r}")


def parameter_count(vocab_size: int, context_length: int, emb_dim: int, n_layers: int) -> int:
    """Parameters of a GPT-2 of this shape (tied head; Linear and LayerNorm biases)."""
    per_block = 12 * emb_dim * emb_dim + 13 * emb_dim  # attention 4d^2 + 4d, MLP 8d^2 + 5d, 2 LayerNorms 4d
    return (vocab_size + context_length) * emb_dim + n_layers * per_block + 2 * emb_dim


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (MemAvailable), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} EiB"  # pragma: no cover


def check_fits(what: str, nbytes: float, fix: str, available: int | None = None) -> None:
    """Refuse `what` (needing about `nbytes`) when it exceeds the memory available, in one line."""
    available = available_memory() if available is None else available
    if available is not None and nbytes > available:
        raise GPT2Error(f"{what} needs about {human_bytes(nbytes)} of memory, but this machine has "
                        f"{human_bytes(available)} available; {fix}")


def training_bytes(params: int, micro_batch: int, window: int, emb_dim: int, n_heads: int, n_layers: int,
                   vocab_size: int) -> float:
    """Estimated float32 training memory: weights, gradients and two optimizer moments (16 bytes
    a parameter), plus the activations kept for the backward pass (Korthikanti et al. 2022:
    about T * B * d * (34 + 5 * heads * T / d) values a layer) and the logits (3 copies)."""
    tokens = micro_batch * window
    activations = n_layers * tokens * (34 * emb_dim + 5 * n_heads * window) * 2  # x2: float32, not 16-bit
    return 16 * params + activations + 3 * 4 * tokens * vocab_size
