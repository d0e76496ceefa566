"""Choose precision, attention kernel and thread count for the hardware at hand ("auto").

On CPU the answer depends on the chip and the model width: bf16 autocast is ~2x faster than
float32 with AVX512_BF16 but 8-15x slower where it is emulated (AVX2), and tiny models often run
faster on one thread. So on CPU we time forward+backward of one TransformerBlock per sensible
combination and cache the timings; CUDA and MPS get fixed rules. The `decide_*` functions are
pure functions of facts and timings, so tests can inject both.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from gpt2.config import GPT2Config
from gpt2.runtime.hardware import CpuInfo, bf16_support, cpu_info, fbgemm_fp16
from gpt2.runtime.probe import ATTENTIONS, Combo, cached_timings, combo_key


@dataclass(frozen=True)
class Choice:
    """What to run with, and why, one short sentence per setting. None means "leave as it is"."""

    dtype: str  # "float32", "bf16" or "fp16" (autocast for training, weights for decoding)
    attention: str | None  # "explicit" or "sdpa"
    threads: int | None  # for torch.set_num_threads
    why: dict[str, str]  # "dtype", "attention", "threads" (each when decided here), "note"
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step, by combo_key
    probe_shape: tuple[int, int] | None = None  # (batch, seq) that was timed
    weights: str | None = None  # decoding: "fp16" = float16 linear weights (`--quantize fp16`)

    @property
    def reason(self) -> str:
        """The reasons as one line, in the order dtype, attention, threads, note."""
        return "; ".join(self.why.values())


def candidates(info: CpuInfo) -> list[Combo]:
    """Combos worth timing: bf16 only where native; 1 thread or all usable cores."""
    dtypes = ["float32", "bf16"] if bf16_support(info)[0] else ["float32"]
    return [(dt, a, t) for t in sorted({1, info.cores}) for dt in dtypes for a in ATTENTIONS]


def _compare(t: float, other: float, what: str) -> str:
    """How time t compares with another: '1.8x faster than float32'."""
    if abs(other / t - 1) < 0.05:
        return f"about as fast as {what}"
    return f"{other / t:.1f}x faster than {what}" if other > t else f"{t / other:.1f}x slower than {what}"


def _threads(n: int | str) -> str:
    return f"{n} thread{'' if str(n) == '1' else 's'}"


def decide_cpu(info: CpuInfo, timings: dict[str, float]) -> Choice:
    """The fastest timed combo, bf16 only where native; pure: give it any info and timings."""
    native, why = bf16_support(info)
    allowed = {k: s for k, s in timings.items() if native or not k.startswith("bf16/")}
    if not allowed:
        return Choice("float32", "sdpa", None, {"dtype": f"float32: {why}; nothing measured",
                                                "attention": "sdpa attention"})
    best = min(allowed, key=allowed.__getitem__)
    dtype, attention, threads = best.split("/")
    t = allowed[best]
    bf16 = timings.get(combo_key("bf16", attention, threads))
    if dtype == "bf16":
        fp32 = timings[combo_key("float32", attention, threads)]
        dtype_why = f"bf16 autocast: {why} and bf16 measured {_compare(t, fp32, 'float32')} for this shape"
    elif native and bf16 is not None:
        dtype_why = f"float32: {why} but bf16 measured {_compare(bf16, t, 'float32')} for this shape"
    else:
        dtype_why = f"float32: {why}"
    rival = "sdpa" if attention == "explicit" else "explicit"
    rival_t = timings.get(combo_key(dtype, rival, threads))
    attention_why = f"{attention} attention" + (f" {_compare(t, rival_t, rival)}" if rival_t else "")
    threads_why = _threads(threads) + "".join(f" ({_compare(t, s, _threads(k.split('/')[2]))})"
                                              for k, s in allowed.items()
                                              if k.startswith(f"{dtype}/{attention}/") and k != best)
    why = {"dtype": dtype_why, "attention": attention_why, "threads": threads_why}
    return Choice(dtype, attention, int(threads), why, dict(timings))


def decide_cuda(bf16_native: bool, capability: tuple[int, int]) -> Choice:
    """CUDA rules: bf16 where native (Ampere+), else fp16 with a GradScaler on tensor-core GPUs."""
    sm = f"GPU sm_{capability[0]}{capability[1]}"
    if bf16_native:
        return Choice("bf16", "sdpa", None, {"dtype": f"bf16 autocast: {sm} has native bf16",
                                             "attention": "sdpa attention"})
    if capability >= (7, 0):
        return Choice("fp16", "sdpa", None, {"dtype": f"fp16 autocast + GradScaler: {sm} has fp16 tensor "
                                             "cores but no native bf16", "attention": "sdpa attention"})
    why = f"float32: {sm} has no native bf16 nor fp16 tensor cores"
    return Choice("float32", "sdpa", None, {"dtype": why, "attention": "sdpa attention"})


def _cuda_bf16_native() -> bool:
    """Without including_emulation=False, recent torch says True even where bf16 is emulated (< sm_80)."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # an older torch without the argument, which did not count emulation either
        return torch.cuda.is_bf16_supported()


def choose_training(device: torch.device | str, cfg: GPT2Config, batch_size: int, seq_len: int,
                    info: CpuInfo | None = None, refresh: bool = False) -> Choice:
    """Precision, attention and threads for training `cfg` at this micro-batch on `device`.

    On CPU this times one block (about a second) unless the cache already has the timings.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return decide_cuda(_cuda_bf16_native(), torch.cuda.get_device_capability(device))
    if device.type != "cpu":
        return Choice("float32", "sdpa", None, {"dtype": f"float32 on {device.type}: autocast there is not "
                                                "reliably faster", "attention": "sdpa attention"})
    info = info or cpu_info()
    timings, shape, busy = cached_timings(info, cfg, batch_size, seq_len, candidates(info), refresh)
    choice = decide_cpu(info, timings)
    if busy is not None:
        note = f"other processes used {busy:.0%} of the CPU while measuring: for this run only, not cached"
        choice = dataclasses.replace(choice, why={**choice.why, "note": note})
    return dataclasses.replace(choice, probe_shape=shape)


def bf16_slowdown(cfg: GPT2Config, batch_size: int, seq_len: int, info: CpuInfo | None = None) -> float:
    """Measured bf16-autocast time / float32 time on CPU at the current thread count (> 1: slower).

    For warning a user who asks for bf16 where it is emulated: "measured 9.1x slower".
    """
    info = info or cpu_info()
    threads = torch.get_num_threads()
    fp32, bf16 = [(dt, cfg.attention, threads) for dt in ("float32", "bf16")]
    timings, _, _ = cached_timings(info, cfg, batch_size, seq_len, [fp32, bf16])
    return timings[combo_key(*bf16)] / timings[combo_key(*fp32)]


def decide_decoding(device_type: str, bf16_native: bool, why: str = "", fp16_gemm: bool = False,
                    rows: int = 1) -> Choice:
    """Weights for generation of up to `rows` sequences at once. On a CPU where FBGEMM's float16
    GEMM runs: float16 linear weights with float32 activations when decoding one or a few rows
    (its one-row products stream weights faster than oneDNN's bf16 kernel: ~1.4x the bf16
    model's decoding, ~2x float32's on gpt2-124M, benchmarks/RESULTS.md; from 4 rows on, native
    bf16 is faster, so a server there keeps the rule below), and at any number of rows where the
    CPU lacks native bf16 (AVX2: faster than float32 from 1 to 64 rows, e.g. 16 rows 32.9 vs
    60.5 ms per pass over the weights, 2 threads). Else bf16 where the device computes it
    natively."""
    if device_type == "cpu" and fp16_gemm and (rows < 4 or not bf16_native):
        why = "float16 weights (float32 activations): FBGEMM's float16 GEMM decodes fastest on this CPU"
        return Choice("float32", None, None, {"dtype": why}, weights="fp16")
    if device_type in ("cpu", "cuda") and bf16_native:
        extra = "; oneDNN's prepacked bf16 linear is ~2x faster" if device_type == "cpu" else ""
        return Choice("bf16", None, None, {"dtype": f"bf16 weights: {why or 'native bf16'}{extra}"})
    why = why or f"no native bf16 on {device_type}"
    return Choice("float32", None, None, {"dtype": f"float32 weights: {why}"})


def choose_decoding(device: torch.device | str, info: CpuInfo | None = None, rows: int = 1) -> Choice:
    """`decide_decoding` with this machine's facts; no probe."""
    device = torch.device(device)
    if device.type == "cpu":
        return decide_decoding("cpu", *bf16_support(info or cpu_info()), fp16_gemm=fbgemm_fp16(), rows=rows)
    if device.type == "cuda":
        return decide_decoding("cuda", _cuda_bf16_native())
    return decide_decoding(device.type, False)
