"""The decoding layers' own kernels, as one operator the compiler calls without looking inside.

The fast CPU layers (`HalfLinear`, `DynamicInt8Linear`: FBGEMM; `PackedLinear`: oneDNN) hold
their weights in a kernel library's packed format, an opaque object that torch.compile cannot
trace, and `Int8Linear` runs a loop compiled on its own (traced inside the step, it compiles
into slower code). So when the compiled decoding step (compiled_step.py) is traced, each of
them calls

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
    `kernel_forward(x)`, except while torch.compile traces a step without gradients, where it
    calls the registered operator instead, which the compiled code keeps as one call."""

    out_features: int
    _opaque_number: int

    def kernel_forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:  # x: (..., in) -> (..., out)
        if torch.compiler.is_compiling() and not torch.is_grad_enabled():  # compiled_step.py
            return torch.ops.gpt2.packed_linear(x, self._opaque_number, self.out_features)
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
