"""Weight-only int8 quantization for faster CPU decoding (inference only).

Decoding one token multiplies one vector by every weight matrix, so its speed is set by
how many bytes of weights stream from memory. Storing each weight as int8 (1 byte instead
of 4) with one float scale per output row ("per-channel symmetric"):

    scale[n] = max_k |w[n, k]| / 127        w_int8[n, k] = round(w[n, k] / scale[n]) in [-127, 127]
    y = x @ (w_int8 * scale[:, None]).T + bias                  (`int8_linear_reference`)

Activations stay float32; only the weights are rounded (error <= scale / 2 per weight).

The fast path multiplies without ever building the float weight. torch's own candidates,
measured on gpt2-124M's 49 matrices (benchmarks/bench_quantize.py): `_weight_int8pack_mm`
only has a vectorized x86 kernel for bf16 activations (float32 takes a scalar loop, ~4x
slower than float32 F.linear); `quantize_dynamic` is fast but rounds the activations to
int8 too. So `_int8_matmul` is the reference formula written so that torch.compile turns it
into one fused loop that reads each int8 weight once: the weight is read as int32 words of 4
int8s, unpacked with shifts (full-width vector loads: plain int8 loads make inductor's AVX2
code ~6x slower). It serves inputs of up to 32 rows (decoding, short prompts); longer ones
dequantize and use F.linear's GEMM. Compiling takes ~10-20 s once per machine (inductor caches
it on disk). Without a C++ compiler everything takes the reference path, with a warning.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpt2.errors import GPT2Error
from gpt2.generation.opaque_linear import OpaqueWhenCompiled, one_row_linear, store_once

__all__ = ["Int8Linear", "int8_linear_reference", "quantize_int8", "quantize_weight", "replace_linears"]


def quantize_weight(w: Tensor) -> tuple[Tensor, Tensor]:
    """(out, in) float weight -> int8 weight (out, in) and float32 scales (out,)."""
    scales = w.detach().float().abs().amax(dim=1) / 127
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))  # all-zero row: stays 0
    w_int8 = torch.round(w.detach().float() / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return w_int8.contiguous(), scales


def int8_linear_reference(x: Tensor, w_int8: Tensor, scales: Tensor, bias: Tensor | None = None) -> Tensor:
    """The readable definition: x (..., in) @ dequantized weight (in, out) + bias."""
    y = x @ (w_int8.to(x.dtype) * scales.to(x.dtype)[:, None]).T
    return y + bias if bias is not None else y


_SHIFTS = torch.tensor([24, 16, 8, 0], dtype=torch.int32).view(4, 1)
# Whether torch (and so inductor, which follows ATEN_CPU_CAPABILITY too) runs AVX-512 code here.
AVX512_CODE = torch.backends.cpu.get_cpu_capability() == "AVX512"


def _int8_matmul(x4: Tensor, w32: Tensor, scales: Tensor, shifts: Tensor) -> Tensor:
    """`int8_linear_reference` without bias, in the layout the compiled loop wants.
    x4 (M, 4, in/4) float: x with each group of 4 inputs de-interleaved, x4[m, j, i] =
    x[m, 4i + j]; w32 (out, in/4): the int8 weight viewed as int32, byte j of word i being
    w_int8[:, 4i + j] (little-endian). Returns (M, out)."""
    w = ((w32.unsqueeze(1) << shifts) >> 24).to(x4.dtype)  # (out, 4, in/4): byte j, sign-extended
    return (x4.unsqueeze(1) * w).sum(dim=(-1, -2)) * scales


@functools.cache
def _compiled_matmul():
    """The compiled kernel, or None when torch.compile cannot build one here (checked once,
    on a small input, against the reference)."""
    try:
        kernel = torch.compile(_int8_matmul, dynamic=True)
        w, s = quantize_weight(torch.randn(37, 40))
        x = torch.randn(1, 40)
        with torch.no_grad():
            y = kernel(x.view(1, 10, 4).transpose(1, 2).contiguous(), w.view(torch.int32), s, _SHIFTS)
        torch.testing.assert_close(y, int8_linear_reference(x, w, s), rtol=1e-4, atol=1e-4)
        return kernel
    except Exception as e:  # noqa: BLE001 (any compiler/toolchain failure means: no fast path)
        warnings.warn(f"int8 fast kernel unavailable ({type(e).__name__}: {e}); using the slow "
                      "reference path", RuntimeWarning, stacklevel=3)
        return None


class Int8Linear(OpaqueWhenCompiled, nn.Module):
    """An inference-only replacement for nn.Linear with an int8 weight (out, in), float32
    `scales` (out,) and an optional float `bias` (out,), all buffers: nothing to train."""

    MAX_FAST_ROWS = 32  # beyond, dequantizing and F.linear's GEMM is faster (long prompts)

    def __init__(self, w_int8: Tensor, scales: Tensor, bias: Tensor | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = w_int8.shape
        self.register_buffer("weight", w_int8.contiguous())
        self.register_buffer("scales", scales.float().contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.train(False)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        w_int8, scales = quantize_weight(linear.weight)
        return cls(w_int8, scales, linear.bias)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The float weight (out, in) this layer multiplies by."""
        return torch.mul(self.weight, self.scales[:, None]).to(dtype)  # one pass: int8 * float32

    def train(self, mode: bool = True) -> Int8Linear:
        if mode:
            raise RuntimeError("an int8-quantized model is for inference only; train the float "
                               "model and quantize it afterwards")
        return super().train(False)

    def kernel_forward(self, x: Tensor) -> Tensor:  # x: (..., in) -> (..., out)
        """The product: the compiled loop for up to MAX_FAST_ROWS rows, else dequantized."""
        rows = x.numel() // self.in_features
        fast = (rows <= self.MAX_FAST_ROWS and x.dtype == torch.float32 and x.device.type == "cpu"
                and not x.requires_grad and self.in_features % 4 == 0)
        kernel = _compiled_matmul() if fast else None
        if kernel is None:
            return self.dequantized_forward(x)
        return self._word_product(x, kernel)

    def _word_product(self, x: Tensor, matmul: Callable[..., Tensor]) -> Tensor:
        """x (..., in) float32 @ the int8 weight read as int32 words, through `matmul`
        (`_int8_matmul` or its compiled kernel) -> (..., out)."""
        rows = x.numel() // self.in_features
        x4 = x.reshape(rows, self.in_features // 4, 4).transpose(1, 2).contiguous()  # (M, 4, in/4)
        y = matmul(x4, self.weight.view(torch.int32), self.scales, _SHIFTS)  # (M, out)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def one_row_forward(self, x: Tensor) -> Tensor:  # x: (1, ..., 1, in) -> (1, ..., 1, out)
        """One row in the compiled step: loops traced into the step, x stored once (inlined,
        the loop would recompute x's LayerNorm for every output). With AVX-512 the plain
        formula (`one_row_linear`); inductor's AVX2 code for plain int8 loads is ~5x slower,
        so there `_int8_matmul`'s int32 words (measured, benchmarks/RESULTS.md)."""
        if AVX512_CODE:
            return one_row_linear(x, self.weight, self.bias, self.scales)
        if self.in_features % 4:  # not whole int32 words: the kernel, as one call
            return self.opaque_forward(x)
        return self._word_product(x, lambda x4, *weight: _int8_matmul(store_once(x4), *weight))

    def dequantized_forward(self, x: Tensor) -> Tensor:
        """x @ the dequantized weight in F.linear's GEMM: long inputs, and where no kernel runs."""
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantize(x.dtype), bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"bias={self.bias is not None}"


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear of `model` (a float32 GPT2) by an `Int8Linear`, in place, and
    return it. The tied LM head gets its own int8 copy of the embedding; `tok_emb` stays
    float32 for lookups, so the tie is intentionally broken. Afterwards the model is in eval
    mode, no parameter requires grad, `model.train()` raises, and it cannot be saved as a
    GPT2 checkpoint (quantize again after loading the float one)."""
    return replace_linears(model, Int8Linear.from_linear)


@torch.no_grad()
def replace_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Module]) -> nn.Module:
    """`make(linear)` in place of every nn.Linear of a float32 model, which is left in eval mode
    without gradients (what `quantize_int8`, `quantize_int8_dynamic` and `quantize_fp16` share)."""
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes != {torch.float32}:
        raise GPT2Error(f"quantization expects a float32 model, got {sorted(map(str, dtypes))}")
    model.eval()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, make(child))
    model.requires_grad_(False)
    return model
