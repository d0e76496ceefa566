"""Made-up CPUs and timings: the autotune tests decide from these, never from how fast
anything ran here (conftest's `fake_probe` measures with `fake_seconds`)."""

from __future__ import annotations

import dataclasses

from gpt2.config import GPT2Config
from gpt2.runtime.hardware import CpuInfo
from gpt2.runtime.probe import combo_key

ZEN4 = CpuInfo(model="AMD EPYC 9454P", machine="x86_64",
               flags=frozenset({"avx2", "avx512f", "avx512_bf16"}), cores=2,
               torch_version="2.13.0+cpu", capability="AVX512", onednn_bf16=True)
ZEN3 = dataclasses.replace(ZEN4, model="AMD Ryzen 7 5800X", flags=frozenset({"avx2"}),
                           capability="AVX2", onednn_bf16=False)
# Zen 4 under ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2: flags unchanged, torch limited.
IMITATION = dataclasses.replace(ZEN4, capability="AVX2", onednn_bf16=False)
GRAVITON3 = CpuInfo(model="Arm implementer 0x41 part 0xd40", machine="aarch64",
                    flags=frozenset({"asimd", "bf16", "sve"}), cores=2,
                    torch_version="2.13.0", capability="SVE256", onednn_bf16=True)
CFG = GPT2Config(vocab_size=65, context_length=64, emb_dim=32, n_heads=4, n_layers=1, drop_rate=0.0)


def fake_seconds(dtype: str, attention: str, threads: int, fp32: float = 10.0, bf16: float = 5.0,
                 sdpa: float = 0.8, many_threads: float = 1.5) -> float:
    """A made-up time: the dtype's base time x an attention factor x a factor for > 1 thread."""
    base = bf16 if dtype == "bf16" else fp32
    return base * (sdpa if attention == "sdpa" else 1.0) * (many_threads if threads > 1 else 1.0)


def grid(**factors: float) -> dict[str, float]:
    """Fake timings of every combo on a 2-core CPU."""
    return {combo_key(dt, a, t): fake_seconds(dt, a, t, **factors)
            for dt in ("float32", "bf16") for a in ("explicit", "sdpa") for t in (1, 2)}
