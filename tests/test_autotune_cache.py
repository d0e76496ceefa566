"""The autotune cache and the probe on a busy machine: measured once per CPU, torch and
shape, never cached or trusted while other processes use the CPU; what the run header says."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from gpt2.runtime import autotune, hardware, probe, resolve
from gpt2.runtime.autotune import Choice
from gpt2.runtime.hardware import native_bf16
from gpt2.runtime.options import DeviceOptions
from gpt2.runtime.probe import combo_key
from hardware_helpers import CFG, ZEN3, ZEN4, fake_seconds

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
