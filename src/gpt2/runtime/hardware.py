"""Facts about the CPU and the torch build at hand, for choosing precision and threads.

Only facts live here (no model imports, no timing); `gpt2.runtime.autotune` turns them into choices.

Why both CPU flags and torch's view: the flags say what the silicon can do, but torch only
uses AVX-512 kernels when its dispatch capability is AVX512, and oneDNN only runs bf16 natively
when its ISA limit allows it. `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` imitates an
AVX2-only CPU on an AVX-512 machine: the flags still list avx512_bf16, yet bf16 is emulated.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

# Flags that matter for precision choices, in the order `describe` prints them.
RELEVANT_FLAGS = (
    "avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16",  # x86
    "asimd", "bf16", "i8mm", "sve", "sve2",  # Arm ("bf16" is FEAT_BF16)
)
X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class CpuInfo:
    """What the CPU offers and what this torch build can use of it."""

    model: str  # e.g. "AMD EPYC 9454P 48-Core Processor"
    machine: str  # platform.machine(): "x86_64", "aarch64", "arm64", ...
    flags: frozenset[str]  # the subset of RELEVANT_FLAGS the CPU reports
    cores: int  # cores this process may run on (its affinity mask), not the machine's total
    torch_version: str
    capability: str  # torch's kernel dispatch level: "AVX512", "AVX2", "DEFAULT", "SVE256", ...
    onednn_bf16: bool  # oneDNN reports native bf16 support (respects ONEDNN_MAX_CPU_ISA)


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """Model name and relevant flags from the text of Linux's /proc/cpuinfo (x86 or Arm)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():  # only the first processor's block: all cores report the same
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    model = fields.get("model name") or fields.get("Model") or fields.get("Hardware") or ""
    if not model and "CPU part" in fields:  # Arm: no name, only vendor and part numbers
        model = f"Arm implementer {fields.get('CPU implementer', '?')} part {fields['CPU part']}"
    words = (fields.get("flags") or fields.get("Features") or "").split()  # x86 / Arm
    return model, frozenset(words) & frozenset(RELEVANT_FLAGS)


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: respects taskset, cgroups cpusets, Slurm
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _torch_capability() -> str:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):  # very old torch
        return "unknown"


def _onednn_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # a build without oneDNN, or a renamed private op: assume no native bf16
        return False


@functools.cache
def fbgemm_fp16() -> bool:
    """Whether FBGEMM's float16 GEMM (torch's x86 kernel library; private ops) runs here and
    agrees with F.linear on a small input: what `--quantize fp16` and `auto` decoding use."""
    try:
        w, x = torch.randn(24, 40).half().float(), torch.randn(3, 40)
        y = torch.ops.quantized.linear_dynamic_fp16(x, torch.ops.quantized.linear_prepack_fp16(w, None))
        return bool(torch.allclose(y, torch.nn.functional.linear(x, w), atol=1e-4, rtol=1e-4))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


@functools.cache
def cpu_info() -> CpuInfo:
    """The CpuInfo of this process (read once; the environment variables act at torch import)."""
    try:
        model, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:  # not Linux
        model, flags = "", frozenset()
    return CpuInfo(
        model=model or platform.processor() or platform.machine() or "unknown CPU",
        machine=platform.machine(),
        flags=flags,
        cores=_usable_cores(),
        torch_version=torch.__version__,
        capability=_torch_capability(),
        onednn_bf16=_onednn_bf16(),
    )


def bf16_support(info: CpuInfo) -> tuple[bool, str]:
    """(native, why): whether bf16 matmuls run natively here, and a short human reason.

    Native needs all three: the instructions (AVX512_BF16/AMX_BF16 on x86, BF16 on Arm),
    oneDNN willing to use them, and on x86 torch dispatching to its AVX-512 kernels.
    """
    x86 = [f.upper() for f in X86_BF16_FLAGS if f in info.flags]
    if x86 or "bf16" in info.flags:
        has = f"CPU has {'/'.join(x86) if x86 else 'Arm BF16'}"
        if not info.onednn_bf16:
            return False, (f"{has} but oneDNN bf16 is unavailable (ONEDNN_MAX_CPU_ISA set?), "
                           "so bf16 is emulated")
        if x86 and not info.capability.startswith(("AVX512", "AMX")):
            return False, (f"{has} but torch dispatches {info.capability} kernels "
                           "(ATEN_CPU_CAPABILITY set?), so bf16 is emulated")
        return True, has
    if "avx512f" in info.flags:
        isa = "AVX-512 without BF16"
    elif "avx2" in info.flags:
        isa = "AVX2 only"
    elif "asimd" in info.flags:
        isa = "Arm NEON without BF16"
    else:
        isa = "no bf16 instructions found"
    return False, f"CPU has no native bf16 ({isa})"


def native_bf16(info: CpuInfo) -> bool:
    """True when bf16 autocast/weights run on native bf16 instructions (see `bf16_support`)."""
    return bf16_support(info)[0]


def describe(info: CpuInfo | None = None) -> str:
    """One line for benchmark tables and logs, e.g.
    "AMD EPYC (avx2 avx512f avx512_bf16), 2 cores, torch 2.13.0+cpu (capability AVX512)"."""
    info = info or cpu_info()
    flags = " ".join(f for f in RELEVANT_FLAGS if f in info.flags) or "no SIMD flags read"
    line = (f"{info.model} ({flags}), {info.cores} core{'s' if info.cores != 1 else ''}, "
            f"torch {info.torch_version} (capability {info.capability})")
    if not native_bf16(info) and (info.flags & {*X86_BF16_FLAGS, "bf16"}):
        line += ", bf16 emulated"  # instructions present but disabled for torch/oneDNN
    return line


def cache_dir() -> Path:
    """Where measurements are cached: $GPT2_CACHE_DIR, else $XDG_CACHE_HOME/gpt2-from-scratch,
    else ~/.cache/gpt2-from-scratch. Not created here."""
    if os.environ.get("GPT2_CACHE_DIR"):
        return Path(os.environ["GPT2_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "gpt2-from-scratch"
