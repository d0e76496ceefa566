"""Where and in which precision the model runs: the options every command shares.

`dtype` has one meaning everywhere: the precision the model computes in. Training and
evaluation autocast to it (the weights and the loss stay float32); generation casts the
weights (nothing is trained, and a bf16 weight is half the memory to read per token).
`auto` is resolved from the hardware at hand by resolve.py; the options themselves,
`DeviceOptions`, are declared in options.py (which does not import torch).
"""

from __future__ import annotations

import contextlib

import torch

from gpt2.errors import GPT2Error
from gpt2.runtime.options import PRECISIONS

DTYPES = dict(zip(PRECISIONS, (torch.float32, torch.bfloat16, torch.float16), strict=True))


def pick_device(preference: str | torch.device | None = "auto") -> torch.device:
    """'auto' (or None) picks cuda, then mps, then cpu; anything else is used as given."""
    if preference is None or str(preference) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preference)
    except RuntimeError as err:
        raise GPT2Error(f"unknown device {preference!r}; use auto, cpu, cuda, cuda:N or mps") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GPT2Error(f"device {preference!r} requested but CUDA is not available; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise GPT2Error(f"device {preference!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device.type == "mps" and not (torch.backends.mps.is_available()):
        raise GPT2Error(f"device {preference!r} requested but MPS is not available; use --device cpu")
    return device


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """'float32' / 'bf16' / 'fp16' (or a torch.dtype) -> torch.dtype ('auto' is resolved by
    resolve.py first, since it depends on the device and the model)."""
    if isinstance(name, torch.dtype):
        return name
    if name == "auto":  # never read silently as float32
        raise GPT2Error("dtype 'auto' is not resolved yet: resolve it with "
                        "gpt2.runtime.resolve.resolve_runtime (as every gpt2 command does), "
                        "or give float32, bf16 or fp16")
    if name not in DTYPES:
        raise GPT2Error(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


def check_dtype(dtype: torch.dtype, device: torch.device) -> None:
    """Refuse a precision the device cannot run: fp16 needs CUDA (CPUs have no fast fp16 and
    training in it needs a GradScaler)."""
    if dtype == torch.float16 and device.type != "cuda":
        raise GPT2Error(f"dtype fp16 needs a CUDA GPU; use bf16 or float32 on {device.type}")


def autocast(device: torch.device, dtype: str | torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast to `dtype` on `device`; a context that does nothing for float32 (or None)."""
    dt = torch.float32 if dtype is None else resolve_dtype(dtype)
    if dt == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dt)
