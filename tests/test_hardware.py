"""Hardware facts and the auto choices built on them.

The decision logic is tested with injected CPU facts and injected timings; the one real probe
only checks that it returns a valid Choice and writes its cache, never how fast anything ran.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from gpt2.config import GPT2Config
from gpt2.runtime import autotune, hardware, probe, resolve
from gpt2.runtime.autotune import Choice
from gpt2.runtime.hardware import CpuInfo, native_bf16
from gpt2.runtime.options import DeviceOptions
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


@pytest.fixture
def fake_probe(monkeypatch, tmp_path):
    """Cache in tmp_path; `measure` returns `fake_seconds` and records what it was asked."""
    monkeypatch.setenv("GPT2_CACHE_DIR", str(tmp_path))
    calls: list[list[tuple[str, str, int]]] = []

    def measure(cfg, batch, seq, combos):
        calls.append(list(combos))
        return {combo_key(*c): fake_seconds(*c) for c in combos}

    monkeypatch.setattr(probe, "measure", measure)
    monkeypatch.setattr(probe, "others_share", lambda before, after: 0.0)  # a quiet machine...
    monkeypatch.setattr(probe, "LOAD_SAMPLE_S", 0.0)  # ...sampled at once
    return calls


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


# --- the cache ---------------------------------------------------------------------------------

def test_cache_hit_does_not_probe_again(fake_probe):
    first = autotune.choose_training("cpu", CFG, 4, 16, info=ZEN4)
    second = autotune.choose_training("cpu", CFG, 4, 16, info=ZEN4)
    assert len(fake_probe) == 1 and first == second
    autotune.choose_training("cpu", CFG, 4, 16, info=ZEN4, refresh=True)
    assert len(fake_probe) == 2


@pytest.mark.parametrize("change", [dict(model="Intel Xeon"), dict(torch_version="2.14.0"),
                                    dict(capability="AVX2", onednn_bf16=False), dict(cores=4), {}])
def test_cache_is_stale_for_another_cpu_torch_or_shape(fake_probe, change):
    autotune.choose_training("cpu", CFG, 4, 16, info=ZEN4)
    cfg = CFG if change else dataclasses.replace(CFG, emb_dim=64)  # {}: same CPU, wider model
    autotune.choose_training("cpu", cfg, 4, 16, info=dataclasses.replace(ZEN4, **change))
    assert len(fake_probe) == 2


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"key": {"float32/sdpa/1": "fast"}}', ""])
def test_corrupt_cache_is_ignored_and_rewritten(fake_probe, tmp_path, content):
    (tmp_path / probe.CACHE_FILE).write_text(content)
    choice = autotune.choose_training("cpu", CFG, 4, 16, info=ZEN4)
    assert choice.dtype == "bf16" and len(fake_probe) == 1
    data = json.loads((tmp_path / probe.CACHE_FILE).read_text())
    assert list(data) == [probe.cache_key(ZEN4, CFG, *choice.probe_shape)]


def test_bf16_slowdown_measures_only_what_is_missing(fake_probe):
    ratio = autotune.bf16_slowdown(CFG, 4, 16, info=ZEN3)
    assert ratio == pytest.approx(5.0 / 10.0)  # fake_seconds' bf16 and float32 base times
    assert autotune.bf16_slowdown(CFG, 4, 16, info=ZEN3) == ratio and len(fake_probe) == 1


# --- one real probe ----------------------------------------------------------------------------

def test_real_probe_returns_a_choice_and_writes_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GPT2_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(probe, "BUSY_FRACTION", 1.0)  # cache it even if CI is busy
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    choice = autotune.choose_training("cpu", CFG, 2, 16)
    assert isinstance(choice, Choice) and choice.reason
    assert choice.dtype in ("float32", "bf16") and choice.attention in ("explicit", "sdpa")
    assert choice.threads in (1, hardware.cpu_info().cores)
    assert choice.dtype == "float32" or native_bf16(hardware.cpu_info())
    assert set(choice.timings) == {combo_key(*c) for c in autotune.candidates(hardware.cpu_info())}
    assert all(s > 0 for s in choice.timings.values())
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)  # restored
    cached = json.loads((tmp_path / probe.CACHE_FILE).read_text())
    assert cached == {probe.cache_key(hardware.cpu_info(), CFG, *choice.probe_shape): choice.timings}
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left no temp file behind


# --- a busy machine ----------------------------------------------------------------------------

def test_others_share_counts_only_other_processes(monkeypatch):
    monkeypatch.setattr(os, "sysconf", lambda name: 100)  # ticks per second
    # 200 busy ticks of 200 in all; 0.5 s of them (50 ticks) were ours: others used 75%
    assert probe.others_share((100, 1000, 0.0), (300, 1200, 0.5)) == pytest.approx(0.75)
    assert probe.others_share(None, (300, 1200, 0.5)) == 0.0  # no /proc/stat: unknown
    ticks = probe.cpu_ticks()
    if ticks is not None:  # Linux: some time was idle, and this process has used some CPU
        assert 0 < ticks[0] < ticks[1] and ticks[2] > 0


def test_timings_from_a_busy_machine_are_used_once_and_not_cached(fake_probe, tmp_path, monkeypatch):
    monkeypatch.setattr(probe, "others_share", lambda before, after: 0.6)
    choice = autotune.choose_training("cpu", CFG, 4, 16, info=ZEN4)
    assert choice.dtype == "bf16" and "used 60% of the CPU" in choice.reason and "not cached" in choice.reason
    assert not (tmp_path / probe.CACHE_FILE).exists()
    autotune.choose_training("cpu", CFG, 4, 16, info=ZEN4)
    assert len(fake_probe) == 2  # measured again: nothing was cached


def test_cached_timings_are_not_trusted_while_the_machine_is_busy(fake_probe, tmp_path, monkeypatch):
    """Measured quiet, 2 threads win and are cached; under load now, the run measures again for
    itself and takes 1 thread, leaving the quiet timings cached for a quiet machine."""
    load = {"share": 0.0}
    monkeypatch.setattr(probe, "others_share", lambda before, after: load["share"])
    monkeypatch.setattr(probe, "measure", lambda cfg, batch, seq, combos: fake_probe.append(combos) or {
        combo_key(*c): fake_seconds(*c, many_threads=2.0 if load["share"] else 0.5) for c in combos})
    assert autotune.choose_training("cpu", CFG, 4, 16, info=ZEN4).threads == 2
    cached = (tmp_path / probe.CACHE_FILE).read_text()
    load["share"] = 0.6  # other processes take 60% of the CPU now
    busy = autotune.choose_training("cpu", CFG, 4, 16, info=ZEN4)
    assert busy.threads == 1 and "used 60% of the CPU" in busy.reason and len(fake_probe) == 2
    assert (tmp_path / probe.CACHE_FILE).read_text() == cached  # the quiet timings stay
    load["share"] = 0.0
    assert autotune.choose_training("cpu", CFG, 4, 16, info=ZEN4).threads == 2 and len(fake_probe) == 2


def test_the_header_reports_forced_settings_as_forced(fake_probe, monkeypatch):
    """--system.threads 1 (or --system.dtype float32) beside a probe that prefers 2 threads (and
    bf16): the line says what runs, as asked, not the probe's sentence about something else."""
    monkeypatch.setattr(autotune, "cpu_info", lambda: ZEN4)
    monkeypatch.setattr(resolve, "cpu_info", lambda: ZEN4)
    monkeypatch.setattr(probe, "measure", lambda cfg, batch, seq, combos: {
        combo_key(*c): fake_seconds(*c, many_threads=0.5) for c in combos})
    saved = torch.get_num_threads()
    try:
        auto = resolve.resolve_runtime(DeviceOptions(device="cpu"), CFG, "train", 4, 16, verbose=False)
        forced = resolve.resolve_runtime(DeviceOptions(device="cpu", dtype="float32", threads=1), CFG,
                                         "train", 4, 16, verbose=False, attention="sdpa")
    finally:
        torch.set_num_threads(saved)
    assert (auto.threads, auto.dtype) == (2, torch.bfloat16) and "2 threads (2.0x faster" in auto.reason
    assert (forced.threads, forced.dtype, forced.attention) == (1, torch.float32, "sdpa")
    assert forced.reason == "float32 as asked; sdpa attention as asked; 1 thread as asked"


@pytest.mark.parametrize("purpose", resolve.DECODING)
def test_every_decoding_command_gets_the_decoding_rule_under_its_own_name(purpose, capsys):
    """`gpt2 generate`, `chat` and `serve` take the decoding rules (no probe: a probe would time
    training steps) and the line saying what `auto` chose names the command that runs."""
    saved = torch.get_num_threads()
    try:
        runtime = resolve.resolve_runtime(DeviceOptions(device="cpu", threads=1), CFG, purpose, 4)
    finally:
        torch.set_num_threads(saved)
    rule = autotune.choose_decoding("cpu", rows=4)
    assert (runtime.dtype, runtime.weights) == (resolve.DTYPES[rule.dtype], rule.weights)
    assert capsys.readouterr().err.startswith(f"gpt2: {purpose} on cpu, {rule.dtype}, 1 thread: ")


@pytest.mark.skipif(probe.cpu_ticks() is None or hardware.cpu_info().cores > 8,
                    reason="needs Linux's /proc/stat, and few enough cores to keep busy")
def test_a_real_probe_beside_busy_processes_is_not_cached_nor_trusts_the_cache(monkeypatch, tmp_path):
    """Real processes spinning on every core: quiet timings in the cache are set aside (the run
    measures for itself), and what it measured is not cached."""
    monkeypatch.setenv("GPT2_CACHE_DIR", str(tmp_path))
    info = hardware.cpu_info()
    shape = probe.probe_shape(CFG, 2, 16)
    quiet = {probe.cache_key(info, CFG, *shape): {combo_key(*c): 1.0 for c in autotune.candidates(info)}}
    (tmp_path / probe.CACHE_FILE).write_text(json.dumps(quiet))  # a made-up quiet measurement
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(info.cores)]
    try:
        choice = autotune.choose_training("cpu", CFG, 2, 16)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert "not cached" in choice.reason and set(choice.timings.values()) != {1.0}
    assert json.loads((tmp_path / probe.CACHE_FILE).read_text()) == quiet
