"""Model FLOPs Utilisation (MFU): the model FLOP/s a run achieves over what the device could do.

MFU counts only the FLOPs the model needs (PaLM, Chowdhery et al. 2022, appendix B), not the
ones an implementation spends (recomputation, padding), so it compares implementations fairly:
nanoGPT reaches ~40% on an A100/H100 for GPT-2 small.

- FLOPs per token: 6 N + 12 L T d. Each weight of a matmul costs 2 FLOPs (a multiply and an
  add) per token in the forward pass and 4 in the backward (gradients of the input and of the
  weight); attention adds q k^T and weights @ v, 2 T d FLOPs each per layer per token forward.
- The peak: a table of dense bf16 tensor-core FLOP/s for known GPUs (no sparsity), and on a
  CPU the FLOP/s of a large matmul measured once per process (well under a second).
"""

from __future__ import annotations

import functools
import os
import time

import torch

from gpt2.config import GPT2Config

# Dense bf16 FLOP/s (fp32 accumulate) from the vendors' data sheets. Matched in order against
# torch.cuda.get_device_name(), so more specific names come first.
GPU_PEAK_BF16 = (
    ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12),
    ("B200", 2250e12), ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12), ("L40", 181e12),
    ("L4", 121e12), ("RTX 4090", 165e12), ("RTX 3090", 71e12), ("A10G", 70e12), ("A10", 125e12),
    ("V100", 125e12), ("T4", 65e12),  # V100, T4: no bf16; their fp16 tensor-core peak
)
PEAK_ENV = "GPT2_PEAK_TFLOPS"  # override the table (or the CPU measurement), e.g. for an unlisted GPU


def matmul_params(cfg: GPT2Config) -> int:
    """Weights that take part in a matmul per token: qkv (3 d^2), proj (d^2), fc and its
    projection (8 d^2) in each of the L blocks, and the LM head (V d). Embedding lookups,
    LayerNorms and biases are not matmuls."""
    d = cfg.emb_dim
    return cfg.n_layers * 12 * d * d + cfg.vocab_size * d


def flops_per_token(cfg: GPT2Config, seq_len: int) -> float:
    """Training FLOPs (forward + backward) per token at sequence length `seq_len`: 6 N + 12 L T d."""
    return 6 * matmul_params(cfg) + 12 * cfg.n_layers * seq_len * cfg.emb_dim


def flops_per_step(cfg: GPT2Config, batch: int, seq_len: int) -> float:
    """Training FLOPs of one step over `batch` sequences of `seq_len` tokens."""
    return batch * seq_len * flops_per_token(cfg, seq_len)


def gpu_peak_flops(name: str) -> float | None:
    """Dense bf16 peak of the GPU called `name` (as CUDA reports it), None when not in the table."""
    for key, peak in GPU_PEAK_BF16:
        if key in name:
            return peak
    return None


@functools.cache
def cpu_matmul_ceiling(dtype: torch.dtype = torch.float32, n: int = 1024, budget_s: float = 0.1) -> float:
    """FLOP/s of an (n x n) @ (n x n) matmul in `dtype` on the current threads: about the most
    this CPU does. Best of up to 5 timings within `budget_s`; measured once per process."""
    rng = torch.Generator().manual_seed(0)  # its own: the run's RNG stream must not move (resume)
    a, b = (torch.randn(n, n, generator=rng).to(dtype) for _ in range(2))
    a @ b  # warm-up: thread pool, oneDNN primitive
    best, start = float("inf"), time.perf_counter()
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
        if time.perf_counter() - start > budget_s:
            break
    return 2 * n**3 / best


def peak_flops(device: torch.device, dtype: torch.dtype = torch.bfloat16) -> float | None:
    """What MFU divides by, per device: $GPT2_PEAK_TFLOPS if set; a GPU's dense bf16 peak from
    the table (None when unknown); on a CPU the measured matmul ceiling in the run's `dtype`."""
    if os.environ.get(PEAK_ENV):
        return float(os.environ[PEAK_ENV]) * 1e12
    if device.type == "cuda":
        return gpu_peak_flops(torch.cuda.get_device_name(device))
    if device.type == "cpu":
        return cpu_matmul_ceiling(dtype if dtype in (torch.float32, torch.bfloat16) else torch.float32)
    return None


def mfu(flops_per_second: float, peak: float | None) -> float | None:
    """Achieved model FLOP/s (per device) over the device's peak; None when the peak is unknown."""
    return flops_per_second / peak if peak else None
