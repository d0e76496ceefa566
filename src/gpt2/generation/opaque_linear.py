"""The decoding layers inside the compiled decoding step (compiled_step.py): loops, or their
own kernels as one operator the compiler calls without looking inside.

One row (every step of a single sequence) becomes loops: `one_row_linear` writes the product
with a float weight (float32, bf16, float16) as a sum of elementwise products, which inductor
compiles into one pass over the weight, fused with what comes after (`Int8Linear` traces its
own int8 formula in the same way). On gpt2-124M that makes the float32 step 1.33-1.42x
faster than with MKL's one-row product, weight-only int8 1.34x (AVX2) to 1.68x (AVX-512)
faster than its loop compiled on its own, float16 and bf16 1.00-1.06x (benchmarks/RESULTS.md).

Everything else (several rows, and `DynamicInt8Linear`, which rounds activations to int8 too)
runs the fast layer's own kernel (`HalfLinear`, `DynamicInt8Linear`: FBGEMM; `PackedLinear`:
oneDNN; `Int8Linear`: a loop compiled on its own). Those hold their weights in a kernel
library's packed format, an opaque object that torch.compile cannot trace, so each of them
calls

    torch.ops.gpt2.packed_linear(x, layer, out_features)       x: (..., in) -> (..., out)

instead: an operator registered here with two implementations, the real one (run the layer
registered under the number `layer`, which calls its kernel as in eager mode) and the one
the compiler traces with (an empty tensor of the output's shape). The compiled code then
calls the kernel directly, ~5 us per call, between its own fused kernels.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable

import torch
from torch import Tensor, nn

_LAYERS: weakref.WeakValueDictionary[int, nn.Module] = weakref.WeakValueDictionary()  # number -> layer
_NUMBERS = itertools.count()  # never reused, so a compiled step can only call its own layers

_LIBRARY = torch.library.Library("gpt2", "DEF")
_LIBRARY.define("packed_linear(Tensor x, int layer, int out_features) -> Tensor")


def _run(x: Tensor, layer: int, out_features: int) -> Tensor:
    return _LAYERS[layer].kernel_forward(x)  # type: ignore[attr-defined]


def _shape(x: Tensor, layer: int, out_features: int) -> Tensor:
    return x.new_empty(*x.shape[:-1], out_features)


_LIBRARY.impl("packed_linear", _run, "CPU")
_LIBRARY.impl("packed_linear", _shape, "Meta")


def one_row_linear(x: Tensor, weight: Tensor, bias: Tensor | None, scales: Tensor | None = None) -> Tensor:
    """x (1, ..., 1, in) one row @ weight (out, in).T (times `scales` (out,), an int8 weight's
    per-row scales) + bias -> (1, ..., 1, out), in float32 whatever the weight's type, rounded
    to x's dtype at the end: `F.linear` written as a product summed over `in`, for
    torch.compile. Compiled, it is one loop over the weight's rows, each a vectorized dot
    product with x (an (out, in) weight in (out, in) memory: fast_linear.py lays float32
    weights out so for the compiled step). x is computed once, in float32, before the loop
    (`store_once`); inlined, the loop would recompute x's LayerNorm for every output."""
    x32 = store_once(x.float())
    y = (x32[..., None, :] * weight.float()).sum(-1)  # (..., out, in) -> (..., out)
    if scales is not None:
        y = y * scales
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


def store_once(x: Tensor) -> Tensor:
    """x itself; while torch.compile traces, a request that inductor store x in memory rather
    than compute it inside each loop that reads it (the operator inductor's own lowerings use
    to fix a layout)."""
    return torch.ops.prims.inductor_force_stride_order(x, x.stride())


def call_packed(op: Callable[..., Tensor], x: Tensor, packed: object, *args: object) -> Tensor:
    """`op(x, packed, *args)` for an FBGEMM kernel whose packed weight is a C++ object. Called
    plainly, torch first asks every argument for `__torch_function__`; the packed object
    answers by throwing a C++ exception, which costs ~10 us a call (~1 ms a token on
    gpt2-124M's 49 products, perf shows the time in the unwinder). With subclass dispatch off
    for the call, nobody is asked: the same kernel, the same result, ~5 us."""
    with torch._C.DisableTorchFunctionSubclass():
        return op(x, packed, *args)


class OpaqueWhenCompiled:
    """Mixed into each fast layer (before nn.Module): `forward` runs the layer's own
    `kernel_forward(x)`, except while torch.compile traces a step without gradients, where one
    row is `one_row_forward(x)` (loops) and the rest `opaque_forward(x)`, the registered
    operator, which the compiled code keeps as one call."""

    in_features: int
    out_features: int
    weight: Tensor
    bias: Tensor | None
    _opaque_number: int

    def kernel_forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def one_row_forward(self, x: Tensor) -> Tensor:
        """The product of one row as the compiled step computes it: `one_row_linear`'s loops."""
        return one_row_linear(x, self.weight, self.bias)

    def opaque_forward(self, x: Tensor) -> Tensor:
        """The layer's kernel as one call of the registered operator, for the compiled step."""
        return torch.ops.gpt2.packed_linear(x, self._opaque_number, self.out_features)

    def forward(self, x: Tensor) -> Tensor:  # x: (..., in) -> (..., out)
        if torch.compiler.is_compiling() and not torch.is_grad_enabled():  # compiled_step.py
            if x.numel() == self.in_features and x.device.type == "cpu":
                return self.one_row_forward(x)
            return self.opaque_forward(x)
        return self.kernel_forward(x)


def register_layers(model: nn.Module) -> None:
    """Give every `OpaqueWhenCompiled` layer of `model` its number (once), before a compiled
    step is traced through it. A copy of a layer (deepcopy, pickle) carries its original's
    number, so it gets a number of its own here."""
    for layer in model.modules():
        registered = _LAYERS.get(getattr(layer, "_opaque_number", -1))
        if isinstance(layer, OpaqueWhenCompiled) and registered is not layer:
            layer._opaque_number = next(_NUMBERS)
            _LAYERS[layer._opaque_number] = layer
