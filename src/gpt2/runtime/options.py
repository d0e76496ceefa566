"""`DeviceOptions`: where and in which precision the model runs, the options every command shares.

No torch here, so that the `gpt2` command can build its options and `--help` without
importing torch; what the names mean in torch is device.py's work.
"""

from __future__ import annotations

import os
import re
import typing
from dataclasses import dataclass
from typing import Literal

from gpt2.errors import GPT2Error
from gpt2.limits import check_numbers

Precision = Literal["float32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)  # device.DTYPES maps each to a torch dtype
DTYPE_NAMES: tuple[str, ...] = ("auto", *PRECISIONS)


@dataclass(frozen=True)
class DeviceOptions:
    """Hardware and numerics."""

    device: str = "auto"
    """auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps."""
    dtype: str = "auto"
    """Precision the model computes in: auto (the fastest this hardware runs well), float32,
    bf16 or fp16 (CUDA only). Training and evaluation autocast; generation casts the weights."""
    threads: int = 0
    """CPU threads for torch; 0 = auto (the probe's choice, checked against the load now)."""

    def __post_init__(self) -> None:
        check_numbers(self)
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(self.device)):
            raise GPT2Error(f"--device {self.device!r}: choose auto, cpu, cuda, cuda:N or mps")
        if self.dtype not in DTYPE_NAMES:
            raise GPT2Error(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPE_NAMES)}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise GPT2Error(f"--threads must be 0 (auto) or a positive number, got {self.threads!r}")
        most = 4 * (os.cpu_count() or 1)
        if self.threads > most:
            raise GPT2Error(f"--threads {self.threads:,} is more than 4 x the {most // 4} cores here; "
                            "use 0 (auto) or at most the number of cores")
