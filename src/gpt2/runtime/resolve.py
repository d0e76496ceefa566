"""From `DeviceOptions` (what the user asked for, maybe `auto`) to what a run uses: the device,
the precision, the attention kernel and the CPU threads, with one line saying why.

This is the one place that decides what `auto` means; train, eval, generate and serve all
call `resolve_runtime`. `auto` is decided by autotune.py from the hardware at hand: rules on
a GPU, a short cached probe on a CPU (bf16 only where the CPU computes it natively and
measurably faster; cached timings only while the machine is quiet). A resumed run passes the
choices its first run made (`kept`), so a new probe cannot change the numbers halfway. A
setting the user gave is used as given and reported as asked. An explicit `bf16` on a CPU
that only emulates it still runs, with a warning giving the measured slowdown.
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
    attention: str | None  # "sdpa" / "explicit" (chosen or asked); None: keep the model's own
    threads: int
    reason: str
    weights: str | None = None  # decoding with `auto`: "fp16" = float16 linear weights, else None

    @property
    def dtype_name(self) -> str:
        """The precision as the options spell it: "float32", "bf16" or "fp16"."""
        return next(name for name, dtype in DTYPES.items() if dtype == self.dtype)

    def record(self) -> dict:
        """What a run stores under `runtime` in train_config.json: where and how it ran (its
        settings, `auto` included, are stored beside it as the user gave them)."""
        hardware = describe() if self.device.type == "cpu" else torch.cuda.get_device_name(self.device)
        return {"device": str(self.device), "dtype": self.dtype_name, "attention": self.attention,
                "threads": self.threads, "reason": self.reason, "hardware": hardware}


DECODING = ("generate", "chat", "serve")  # the purposes that decode (rules, no probe)


def _choose(device: torch.device, cfg: GPT2Config, purpose: str, batch_size: int, seq_len: int,
            probe: bool) -> autotune.Choice:
    """What `auto` means here: rules for decoding, else the (cached) probe of autotune.py."""
    if purpose in DECODING:
        return autotune.choose_decoding(device, rows=batch_size)
    if device.type == "cpu" and not probe:  # e.g. several processes: they would time each other
        dtype = "bf16" if native_bf16(cpu_info()) else "float32"
        return autotune.Choice(dtype, "sdpa", None, {"dtype": f"{dtype} by rule (no probe with several "
                                                              "processes)", "attention": "sdpa attention"})
    return autotune.choose_training(device, cfg, batch_size, seq_len)


def _threads(n: int) -> str:
    return f"{n} thread{'' if n == 1 else 's'}"


def resolve_runtime(options: DeviceOptions, cfg: GPT2Config, purpose: str, batch_size: int = 1,
                    seq_len: int | None = None, probe: bool = True, verbose: bool = True,
                    attention: str | None = None, kept: autotune.Choice | None = None) -> Runtime:
    """Resolve `options` for running `cfg` on `batch_size` x `seq_len` token batches for
    `purpose` ("train", "eval", or one of DECODING), set torch's thread count, and (verbose) print
    whatever was decided for the user in one line on stderr.

    attention: the kernel the user asked for (None: auto may choose one); kept: the choices a
    resumed run made when it started, used for whatever is `auto` instead of deciding anew."""
    device = pick_device(options.device)
    auto = options.dtype == "auto" or options.threads == 0
    choice = kept or (_choose(device, cfg, purpose, batch_size, seq_len or cfg.context_length, probe)
                      if auto else None)
    name = choice.dtype if options.dtype == "auto" else options.dtype
    dtype = DTYPES[name]
    check_dtype(dtype, device)
    chosen_threads = choice.threads if choice is not None else None
    threads = options.threads or chosen_threads or torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(threads)
    why = dict(choice.why) if choice is not None else {}
    if options.dtype != "auto":
        why["dtype"] = f"{name} as asked"
    if attention is not None:
        why["attention"] = f"{attention} attention as asked"
    if options.threads:
        why["threads"] = f"{_threads(threads)} as asked"
    elif "threads" not in why and device.type == "cpu":
        why["threads"] = f"{_threads(threads)} (torch's default)"
    reason = "; ".join(why.values())
    if device.type == "cpu" and dtype == torch.bfloat16 and not native_bf16(cpu_info()):
        slower = autotune.bf16_slowdown(cfg, batch_size, seq_len or cfg.context_length)
        print(f"gpt2: warning: bf16 is emulated on this CPU ({describe()}): measured {slower:.1f}x slower "
              "than float32; use --dtype auto or float32", file=sys.stderr)
    weights = choice.weights if choice is not None and options.dtype == "auto" else None
    runtime = Runtime(device, dtype, attention or (choice.attention if choice else None), threads, reason,
                      weights)
    decided = choice is not None and (options.dtype == "auto" or (not options.threads and choice.threads)
                                      or (attention is None and choice.attention is not None and kept))
    if verbose and decided:  # something was decided for the user: say what and why
        print(f"gpt2: {purpose} on {device.type}, {name}, {_threads(threads)}: {reason}", file=sys.stderr)
    return runtime
