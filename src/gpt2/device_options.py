"""`DeviceOptions`: where and in which precision the model runs, the options every command shares.

The dataclass lives here, without torch, so that the `gpt2` command can build its options and
`--help` without importing torch; turning these names into torch devices and dtypes is
device.py's work (and re-exports `DeviceOptions`, so `from gpt2.device import DeviceOptions`
works too).
"""

from __future__ import annotations

from dataclasses import dataclass

from gpt2.errors import GPT2Error

DTYPE_NAMES = ("auto", "float32", "bf16", "fp16")  # device.DTYPES maps all but auto to torch dtypes


@dataclass(frozen=True)
class DeviceOptions:
    """Hardware and numerics.

    Args:
        device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps.
        dtype: Precision the model computes in: auto (the fastest this hardware runs well), float32,
            bf16 or fp16 (CUDA only). Training and evaluation autocast; generation casts the weights.
        threads: CPU threads for torch; 0 = auto.
    """

    device: str = "auto"
    dtype: str = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_NAMES:
            raise GPT2Error(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPE_NAMES)}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise GPT2Error(f"--threads must be 0 (auto) or a positive number, got {self.threads!r}")
