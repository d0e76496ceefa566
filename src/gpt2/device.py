"""Choosing where and in which precision the model runs."""

from __future__ import annotations

import contextlib

import torch

DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}


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
        raise ValueError(f"unknown device {preference!r}; use auto, cpu, cuda, cuda:N or mps") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {preference!r} requested but CUDA is not available; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {preference!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device.type == "mps" and not (torch.backends.mps.is_available()):
        raise ValueError(f"device {preference!r} requested but MPS is not available; use --device cpu")
    return device


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """'float32' / 'bf16' / 'fp16' (or a torch.dtype) -> torch.dtype."""
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


def autocast(device: torch.device, dtype: str | torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast to `dtype` on `device`; a context that does nothing for float32 (or None)."""
    dt = torch.float32 if dtype is None else resolve_dtype(dtype)
    if dt == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dt)
