"""From `DeviceOptions` (what the user asked for, maybe `auto`) to what a run uses: the device,
the precision, the attention kernel and the CPU threads, with one line saying why.

`auto` is decided by autotune.py from the hardware at hand: rules on a GPU, a short cached
probe on a CPU (bf16 only where the CPU computes it natively and measurably faster). An
explicit `bf16` on a CPU that only emulates it still runs, with a warning giving the
measured slowdown.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from gpt2.config import GPT2Config
from gpt2.runtime import autotune
from gpt2.runtime.device import DTYPES, check_dtype, pick_device
from gpt2.runtime.hardware import cpu_info, describe, native_bf16
from gpt2.runtime.options import DeviceOptions


@dataclass(frozen=True)
class Runtime:
    """The resolved choice: every field concrete, plus the reason shown to the user."""

    device: torch.device
    dtype: torch.dtype
    attention: str | None  # "sdpa" / "explicit" chosen by auto; None: keep the model's own
    threads: int
    reason: str

    def record(self) -> dict:
        """What a run stores in train_config.json about where and how it ran."""
        hardware = describe() if self.device.type == "cpu" else torch.cuda.get_device_name(self.device)
        return {"device": str(self.device), "dtype": str(self.dtype).removeprefix("torch."),
                "attention": self.attention, "threads": self.threads, "reason": self.reason,
                "hardware": hardware}


def _choose(device: torch.device, cfg: GPT2Config, purpose: str, batch_size: int, seq_len: int,
            probe: bool) -> autotune.Choice:
    """What `auto` means here: rules for decoding, else the (cached) probe of autotune.py."""
    if purpose == "generate":
        return autotune.choose_decoding(device)
    if device.type == "cpu" and not probe:  # e.g. several processes: they would time each other
        native = native_bf16(cpu_info())
        return autotune.Choice("bf16" if native else "float32", "sdpa", None,
                               f"{'bf16' if native else 'float32'} by rule (no probe with several processes)")
    return autotune.choose_training(device, cfg, batch_size, seq_len)


def resolve_runtime(options: DeviceOptions, cfg: GPT2Config, purpose: str, batch_size: int = 1,
                    seq_len: int | None = None, probe: bool = True, verbose: bool = True) -> Runtime:
    """Resolve `options` for running `cfg` on `batch_size` x `seq_len` token batches for
    `purpose` ("train", "eval" or "generate"), set torch's thread count, and (verbose) print
    whatever `auto` chose in one line on stderr."""
    device = pick_device(options.device)
    auto = options.dtype == "auto" or options.threads == 0
    choice = _choose(device, cfg, purpose, batch_size, seq_len or cfg.context_length, probe) if auto else None
    name = choice.dtype if options.dtype == "auto" else options.dtype
    dtype = DTYPES[name]
    check_dtype(dtype, device)
    threads = options.threads or (choice.threads if choice and choice.threads else torch.get_num_threads())
    if device.type == "cpu":
        torch.set_num_threads(threads)
    attention = choice.attention if choice is not None else None
    reason = choice.reason if choice is not None and options.dtype == "auto" else f"{name} as asked"
    if device.type == "cpu" and dtype == torch.bfloat16 and not native_bf16(cpu_info()):
        slower = autotune.bf16_slowdown(cfg, batch_size, seq_len or cfg.context_length)
        print(f"gpt2: warning: bf16 is emulated on this CPU ({describe()}): measured {slower:.1f}x slower "
              "than float32; use --dtype auto or float32", file=sys.stderr)
    runtime = Runtime(device, dtype, attention, threads, reason)
    decided = choice is not None and (options.dtype == "auto" or choice.threads is not None)
    if verbose and decided:  # something was decided for the user: say what and why
        print(f"gpt2: {purpose} on {device.type}, {name}, {threads} thread(s): {reason}", file=sys.stderr)
    return runtime
