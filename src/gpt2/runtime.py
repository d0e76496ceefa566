"""From `DeviceOptions` (what the user asked for, maybe `auto`) to what a run uses: the device,
the precision, the attention kernel and the CPU threads, with one line saying why."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gpt2.config import GPT2Config
from gpt2.device import DeviceOptions, check_dtype, pick_device, resolve_dtype


@dataclass(frozen=True)
class Runtime:
    """The resolved choice: every field concrete, plus the reason shown to the user."""

    device: torch.device
    dtype: torch.dtype
    attention: str | None  # "sdpa" / "explicit", or None to keep the model's own
    threads: int
    reason: str


def resolve_runtime(options: DeviceOptions, cfg: GPT2Config, purpose: str) -> Runtime:
    """Resolve `options` for running `cfg` for `purpose` ("train", "eval" or "generate"),
    and apply the thread count."""
    device = pick_device(options.device)
    dtype = torch.float32 if options.dtype == "auto" else resolve_dtype(options.dtype)
    check_dtype(dtype, device)
    threads = options.threads or torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(threads)
    reason = f"{device.type}, {str(dtype).removeprefix('torch.')}, {threads} thread(s)"
    return Runtime(device, dtype, None, threads, reason)
