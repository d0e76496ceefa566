"""int8 weights and int8 activations ("dynamic" quantization) for the fastest CPU decoding.

`quantize.py` stores the weights in int8 and keeps the activations in float32. llama.cpp's q8_0
goes one step further: it also rounds each activation vector to 8 bits just before a product,
so the dot products run on 8-bit integers (one instruction multiplies and adds 64 pairs on CPUs
with VNNI). This mode does the same, row by row: each row x of activations (one token) gets
its own scale s and zero point z, chosen at run time from its range (asymmetric, 0..255):

    s = (max(x, 0) - min(x, 0)) / 255      z = round(-min(x, 0) / s)
    x_q[k] = clamp(round(x[k] / s) + z, 0, 255)
    y[n] = s * w_scale[n] * sum_k (x_q[k] - z) * w_int8[n, k] + bias[n]    (`dynamic_linear_reference`)

The weights are `quantize.py`'s (per-channel symmetric int8). The integer products run in FBGEMM,
the x86 int8 kernel library that ships inside torch (`torch.ops.quantized.linear_dynamic`), one
row per call, so a row's result never depends on the other rows of a batch. Up to
`MAX_ROUNDED_ROWS` rows (a batch's decoding steps, a short prompt) go through it row by row: each
layer's weight stays in the CPU's cache from one row to the next, so 16 rows take 43 ms on gpt2-124M's
48 block matrices against 123 ms dequantized (one thread; 64 rows 193 vs 389 ms; on two threads the
two cross near 128 rows). A longer prompt keeps float activations (`dequantized_forward`).

On a CPU without VNNI (AVX2 only, or AVX-512 without VNNI) FBGEMM multiplies with an instruction
that adds pairs of u8 x s8 products in int16, which saturates for 8-bit activations (12% error on
gpt2's shapes); there the activations get 7 bits (0..127, FBGEMM's `reduce_range`), which cannot
saturate. `activation_levels()` finds out once which case the machine is, by comparing FBGEMM
with the reference on a small input: 255 levels, 127, or None where FBGEMM does not run.

FBGEMM takes its weight as a torch "quantized tensor", which torch 2.13 marks as deprecated; the
packed weight is made once per layer, and if a later torch drops these ops the mode says so in
one line, while `--quantize int8` keeps working.
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import Tensor, nn

from gpt2.errors import GPT2Error
from gpt2.generation.opaque_linear import call_packed
from gpt2.generation.quantize import AVX512_CODE, Int8Linear, quantize_weight, replace_linears

__all__ = ["DynamicInt8Linear", "activation_levels", "dynamic_linear_reference", "faster_than_int8",
           "quantize_int8_dynamic"]


def dynamic_linear_reference(x: Tensor, w_int8: Tensor, scales: Tensor, bias: Tensor | None = None,
                             levels: int = 255) -> Tensor:
    """The readable definition (module docstring), in float64: x (M, in) -> (M, out) float32.
    `levels`: 255 (8-bit activations) or 127 (7 bits, CPUs without VNNI)."""
    x = x.double()
    lo, hi = x.amin(-1, keepdim=True).clamp(max=0), x.amax(-1, keepdim=True).clamp(min=0)  # (M, 1)
    s = ((hi - lo) / levels).clamp(min=1e-30)  # an all-zero row: any scale gives zeros
    z = torch.round(-lo / s)
    x_q = torch.clamp(torch.round(x / s) + z, 0, levels)  # (M, in), integers 0..levels
    y = s * ((x_q - z) @ w_int8.double().T) * scales.double()  # (M, out)
    return (y + bias.double() if bias is not None else y).float()


def _pack(w_int8: Tensor, scales: Tensor, bias: Tensor | None) -> object:
    """FBGEMM's prepacked form of the int8 weight (out, in) with its per-row scales."""
    with warnings.catch_warnings():  # the quantized-tensor deprecation (module docstring)
        warnings.simplefilter("ignore", UserWarning)
        zero_points = torch.zeros(w_int8.size(0), dtype=torch.long)
        q = torch._make_per_channel_quantized_tensor(w_int8, scales.double(), zero_points, 0)
        return torch.ops.quantized.linear_prepack(q, None if bias is None else bias.float())


@functools.cache
def activation_levels() -> int | None:
    """255 where FBGEMM's dynamic int8 linear gives the reference's result with 8-bit
    activations, 127 where only 7 bits do (no VNNI: module docstring), None where it does not
    run (private torch ops, so tried once on a seeded input rather than assumed)."""
    seeded = torch.Generator().manual_seed(0)
    w, s = quantize_weight(torch.randn(64, 256, generator=seeded))
    x = 4 * torch.randn(1, 256, generator=seeded)  # a range that saturates int16 pairs at 8 bits
    try:
        packed = _pack(w, s, None)
        for levels in (255, 127):
            y = torch.ops.quantized.linear_dynamic(x, packed, levels == 127)  # reduce_range
            if torch.allclose(y, dynamic_linear_reference(x, w, s, levels=levels), atol=1e-4, rtol=1e-4):
                return levels
    except (AttributeError, RuntimeError, NotImplementedError):
        pass
    return None


def faster_than_int8(compiled: bool) -> bool:
    """Whether `--quantize int8-dynamic` decodes faster than weight-only `int8` here: wherever
    FBGEMM's int8 kernel runs (x86), except in the compiled step (`compiled`) on a CPU where
    torch runs AVX-512 code, whose wide integer loads make inductor's int8 loops the faster
    (1.12-1.22x llama.cpp's q8_0 against 0.92-1.05x; without AVX-512 int8-dynamic is 1.4-1.6x
    faster; eagerly FBGEMM's kernel reads the weights ~1.6x faster than int8's own loop:
    benchmarks/RESULTS.md)."""
    return activation_levels() is not None and not (compiled and AVX512_CODE)


class DynamicInt8Linear(Int8Linear):
    """An `Int8Linear` whose rows (up to MAX_ROUNDED_ROWS of them) are rounded to int8 and
    multiplied in FBGEMM; the same buffers (`weight` int8, `scales`, `bias`), inference only."""

    MAX_ROUNDED_ROWS = 64  # decoding steps of a batch, short prompts; longer prompts: float path

    def __init__(self, w_int8: Tensor, scales: Tensor, bias: Tensor | None = None) -> None:
        super().__init__(w_int8, scales, bias)
        self._packed: object | None = None  # made on the first call

    def __getstate__(self) -> dict:
        """Copies leave the packed weight behind (an opaque FBGEMM object); it is remade."""
        state = dict(super().__getstate__())
        state["_packed"] = None
        return state

    def one_row_forward(self, x: Tensor) -> Tensor:
        """In the compiled step too, FBGEMM's kernel (as one call): loops would not round the
        activations to int8."""
        return self.opaque_forward(x)

    def kernel_forward(self, x: Tensor) -> Tensor:
        """The product itself: FBGEMM's for up to MAX_ROUNDED_ROWS rows, else float."""
        rows = x.numel() // self.in_features
        if rows > self.MAX_ROUNDED_ROWS or x.dtype != torch.float32 or x.device.type != "cpu":
            return self.dequantized_forward(x)  # float activations: a prompt
        if self._packed is None:
            self._packed = _pack(self.weight, self.scales, self.bias)
        seven_bits = activation_levels() == 127  # FBGEMM's reduce_range
        if rows == 1:  # a decoding step of one sequence: (..., in) as it is, no copies
            return call_packed(torch.ops.quantized.linear_dynamic, x, self._packed, seven_bits)
        flat = x.reshape(rows, self.in_features)
        ys = [call_packed(torch.ops.quantized.linear_dynamic, row, self._packed, seven_bits)
              for row in flat.split(1)]
        return torch.cat(ys).reshape(*x.shape[:-1], self.out_features)  # (..., out)


def quantize_int8_dynamic(model: nn.Module) -> nn.Module:
    """Like `quantize_int8`, with `DynamicInt8Linear` layers: int8 weights, and one-token steps
    that round their activations to int8 too. Raises GPT2Error where FBGEMM cannot run."""
    if activation_levels() is None:
        raise GPT2Error("--quantize int8-dynamic needs FBGEMM's int8 kernels (torch on an x86 CPU), "
                        "which this torch build lacks; use --quantize int8")
    return replace_linears(model, DynamicInt8Linear.from_linear)
