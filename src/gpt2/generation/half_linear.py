"""16-bit float weights with float32 activations, for faster CPU decoding (`--quantize fp16`).

Decoding one token reads every weight once, so 2-byte weights stream twice as fast as float32
ones. The bf16 model (`--dtype bf16`) gets there too, but it also rounds every activation to
bf16 (8 bits of mantissa) and its one-row products run in oneDNN's kernel, which is built for
many rows. This mode keeps the activations, LayerNorms and attention in float32 and rounds only
the weights of the linear layers, to IEEE float16 (11 bits of mantissa: GPT-2's weights, all far
below float16's limit of 65504, lose less than bf16 would); the products run in FBGEMM's float16
GEMM (the x86 kernel library inside torch, made for few rows), as llama.cpp's f16 files do:

    y = x @ float32(float16(w)).T + bias                          (`half_linear_reference`)

Measured on gpt2-124M, one thread (benchmarks/RESULTS.md): decoding ~2x float32 and ~1.4x the
bf16 model; reading a long prompt ~0.9x the bf16 model (oneDNN), faster than float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpt2.errors import GPT2Error
from gpt2.generation.opaque_linear import OpaqueWhenCompiled, call_packed
from gpt2.generation.quantize import replace_linears
from gpt2.runtime.hardware import fbgemm_fp16

__all__ = ["HalfLinear", "half_linear_reference", "quantize_fp16"]


def half_linear_reference(x: Tensor, w_half: Tensor, bias: Tensor | None = None) -> Tensor:
    """The readable definition: x (..., in) float32 @ the float16 weight (out, in) as float32."""
    return F.linear(x, w_half.float(), bias)


class HalfLinear(OpaqueWhenCompiled, nn.Module):
    """An inference-only nn.Linear with a float16 `weight` (out, in) and a float32 `bias` (out,)
    (buffers), multiplying float32 inputs through FBGEMM's prepacked copy of the weight."""

    def __init__(self, w_half: Tensor, bias: Tensor | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = w_half.shape
        self.register_buffer("weight", w_half.detach().half().contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self._packed: object | None = None  # made on the first call
        self.train(False)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> HalfLinear:
        return cls(linear.weight.half(), linear.bias)

    def __getstate__(self) -> dict:
        """Copies leave the packed weight behind (an opaque FBGEMM object); it is remade."""
        state = dict(super().__getstate__())
        state["_packed"] = None
        return state

    def train(self, mode: bool = True) -> HalfLinear:
        if mode:
            raise RuntimeError("a model with float16 weights is for inference only; train the float32 "
                               "model and convert it afterwards")
        return super().train(False)

    def kernel_forward(self, x: Tensor) -> Tensor:  # x: (..., in) float32 -> (..., out)
        """The product itself: FBGEMM's on CPU, the reference elsewhere."""
        if x.device.type != "cpu" or x.dtype != torch.float32:
            return half_linear_reference(x, self.weight.to(x.device), self.bias)
        if self._packed is None:
            self._packed = torch.ops.quantized.linear_prepack_fp16(self.weight.float(), self.bias)
        return call_packed(torch.ops.quantized.linear_dynamic_fp16, x, self._packed)  # (..., in) as it is

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"bias={self.bias is not None}"


def quantize_fp16(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear of a float32 GPT2 by a `HalfLinear`, in place (like
    `quantize_int8`: the LM head gets its own float16 copy of the embedding, inference only).
    Raises GPT2Error where FBGEMM cannot run."""
    if not fbgemm_fp16():  # runtime/hardware.py: tried once
        raise GPT2Error("--quantize fp16 needs FBGEMM's float16 kernels (torch on an x86 CPU), "
                        "which this torch build lacks; use --dtype bf16 or float32")
    return replace_linears(model, HalfLinear.from_linear)
