"""Hardware facts and the auto choices built on them.

The decision logic is tested with injected CPU facts and injected timings; the one real probe
only checks that it returns a valid Choice and writes its cache, never how fast anything ran.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
import torch

from gpt2.config import GPT2Config
from gpt2.runtime import autotune, hardware, probe
from gpt2.runtime.hardware import native_bf16
from hardware_helpers import CFG, GRAVITON3, IMITATION, ZEN3, ZEN4, grid

# --- facts -----------------------------------------------------------------------------------

def test_native_bf16_needs_flags_and_torch_and_onednn():
    assert native_bf16(ZEN4)
    assert not native_bf16(ZEN3)
    assert not native_bf16(IMITATION)  # flags list avx512_bf16, but torch and oneDNN won't use it
    assert not native_bf16(dataclasses.replace(ZEN4, capability="AVX2"))  # ATEN_CPU_CAPABILITY alone
    assert not native_bf16(dataclasses.replace(ZEN4, onednn_bf16=False))  # ONEDNN_MAX_CPU_ISA alone
    assert native_bf16(GRAVITON3)  # Arm: no x86 capability requirement
    assert not native_bf16(dataclasses.replace(GRAVITON3, flags=frozenset({"asimd"})))
    assert "AVX2 only" in hardware.bf16_support(ZEN3)[1]
    assert "emulated" in hardware.bf16_support(IMITATION)[1]


def test_parse_cpuinfo_x86_and_arm():
    x86 = ("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16 sse\n\n"
           "processor\t: 1\nmodel name\t: other\n")
    assert hardware.parse_cpuinfo(x86) == ("AMD EPYC", frozenset({"avx2", "avx512f", "avx512_bf16"}))
    arm = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\nCPU implementer\t: 0x41\nCPU part\t: 0xd40\n"
    model, flags = hardware.parse_cpuinfo(arm)
    assert model == "Arm implementer 0x41 part 0xd40"
    assert flags == {"asimd", "sve", "bf16", "i8mm"}


def test_describe_and_cpu_info_on_this_machine():
    info = hardware.cpu_info()
    assert info.cores >= 1 and info.torch_version == torch.__version__
    line = hardware.describe(info)
    assert info.model in line and f"torch {torch.__version__}" in line and info.capability in line
    assert hardware.describe(ZEN4) == "AMD EPYC 9454P (avx2 avx512f avx512_bf16), 2 cores, " \
                                      "torch 2.13.0+cpu (capability AVX512)"
    assert hardware.describe(IMITATION).endswith("(capability AVX2), bf16 emulated")


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("GPT2_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hardware.cache_dir() == tmp_path / "xdg" / "gpt2-from-scratch"
    monkeypatch.setenv("GPT2_CACHE_DIR", str(tmp_path / "mine"))
    assert hardware.cache_dir() == tmp_path / "mine"


_NATIVE = ("from gpt2.runtime.hardware import cpu_info, native_bf16; "
           "i = cpu_info(); print(native_bf16(i), i.capability)")


def test_avx2_imitation_has_no_native_bf16():
    """Runs on any CPU: under the imitation torch dispatches AVX2 and oneDNN stops at AVX2."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    out = subprocess.run([sys.executable, "-c", _NATIVE], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "False"


def test_native_bf16_without_imitation_follows_the_facts():
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    out = subprocess.run([sys.executable, "-c", _NATIVE], env=env, capture_output=True, text=True, check=True)
    native, capability = out.stdout.split()
    info = hardware.cpu_info()
    if "avx512_bf16" in info.flags and capability == "AVX512" and info.onednn_bf16:
        assert native == "True"
    elif not info.flags & {"avx512_bf16", "amx_bf16", "bf16"}:
        assert native == "False"


# --- decisions from injected facts and timings -------------------------------------------------

@pytest.mark.parametrize("info, why", [(ZEN3, "float32: CPU has no native bf16 (AVX2 only);"),
                                       (IMITATION, "so bf16 is emulated;")])
def test_no_native_bf16_means_float32_without_probing_bf16(fake_probe, info, why):
    choice = autotune.choose_training("cpu", CFG, 4, 16, info=info)
    assert choice.dtype == "float32" and why in choice.reason
    assert not any(dt == "bf16" for dt, _, _ in fake_probe[0])


def test_bf16_chosen_when_native_and_faster():
    choice = autotune.decide_cpu(ZEN4, grid(fp32=10.0, bf16=5.0))
    assert (choice.dtype, choice.attention, choice.threads) == ("bf16", "sdpa", 1)
    assert "AVX512_BF16" in choice.reason and "2.0x faster than float32" in choice.reason


def test_float32_chosen_when_native_bf16_measures_slower():
    choice = autotune.decide_cpu(ZEN4, grid(fp32=5.0, bf16=6.0))
    assert choice.dtype == "float32"
    assert "bf16 measured 1.2x slower than float32" in choice.reason


def test_emulated_bf16_is_never_chosen_even_if_timings_say_faster():
    assert autotune.decide_cpu(ZEN3, grid(fp32=10.0, bf16=1.0)).dtype == "float32"
    assert autotune.decide_cpu(IMITATION, grid(fp32=10.0, bf16=1.0)).dtype == "float32"


def test_attention_and_threads_follow_the_timings():
    choice = autotune.decide_cpu(ZEN3, grid(sdpa=1.3, many_threads=0.5))
    assert (choice.attention, choice.threads) == ("explicit", 2)
    assert "explicit attention 1.3x faster than sdpa" in choice.reason
    assert "2 threads (2.0x faster than 1 thread)" in choice.reason
    assert autotune.decide_cpu(ZEN3, {}).dtype == "float32"  # nothing measured: safe default


def test_candidates():
    assert {dt for dt, _, _ in autotune.candidates(ZEN4)} == {"float32", "bf16"}
    assert {t for _, _, t in autotune.candidates(dataclasses.replace(ZEN4, cores=8))} == {1, 8}
    assert len(autotune.candidates(dataclasses.replace(ZEN3, cores=1))) == 2  # one thread, 2 kernels


def test_probe_shape_caps_tokens():
    assert probe.probe_shape(GPT2Config.from_preset("char-tiny"), 12, 128)[1] == 128
    batch, seq = probe.probe_shape(GPT2Config.from_preset("char-tiny"), 12, 128)
    assert batch * seq <= probe.MAX_PROBE_TOKENS
    wide_batch, wide_seq = probe.probe_shape(GPT2Config(), 12, 1024)
    assert wide_batch * wide_seq < batch * seq  # fewer tokens for wide models


def test_cuda_rules():
    assert autotune.decide_cuda(True, (8, 0)).dtype == "bf16"
    assert autotune.decide_cuda(False, (7, 5)).dtype == "fp16"
    assert autotune.decide_cuda(False, (6, 1)).dtype == "float32"
    assert all(autotune.decide_cuda(b, c).attention == "sdpa" for b, c in ((True, (9, 0)), (False, (7, 0))))


def test_decoding_rules():
    assert autotune.decide_decoding("cpu", *hardware.bf16_support(ZEN4)).dtype == "bf16"
    assert autotune.decide_decoding("cpu", *hardware.bf16_support(ZEN3)).dtype == "float32"
    assert autotune.decide_decoding("cpu", *hardware.bf16_support(IMITATION)).dtype == "float32"
    assert autotune.decide_decoding("cuda", True).dtype == "bf16"
    assert autotune.decide_decoding("mps", False).dtype == "float32"
    assert autotune.choose_decoding("cpu", info=ZEN3).dtype == "float32"
    # Where FBGEMM's float16 GEMM runs, a CPU decodes with float16 weights and float32 activations.
    for native in (True, False):
        half = autotune.decide_decoding("cpu", native, fp16_gemm=True)
        assert (half.dtype, half.weights) == ("float32", "fp16") and "float16 weights" in half.reason
    assert autotune.decide_decoding("cuda", True, fp16_gemm=True).weights is None
    assert autotune.decide_decoding("cpu", True).weights is None
    assert autotune.decide_decoding("cpu", True, fp16_gemm=True, rows=8).dtype == "bf16"  # a server's batch
    assert autotune.decide_decoding("cpu", False, fp16_gemm=True, rows=8).weights == "fp16"  # no native bf16
    assert autotune.choose_decoding("cpu", info=ZEN4).weights == ("fp16" if hardware.fbgemm_fp16() else None)
