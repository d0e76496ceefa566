"""Faster weights for CPU decoding: the memory layout one-token matrix-vector products want.

Generating one token multiplies a single vector by every weight matrix, so its speed is
set by how fast the weights stream from memory, and on CPU that depends on their layout:

- float32: torch's one-row kernel (MKL) reads a wide weight (out >= in: attention's QKV and
  output, the MLP's first layer, the LM head) ~1.5x faster when it lies in memory as (in, out),
  GPT-2's original Conv1D layout, and a narrow one (the MLP's 3072 -> 768) ~1.35x faster as
  (out, in), nn.Linear's (the same on AVX2 and AVX-512; 1.06-1.09x per token on gpt2-124M, one
  thread). The compiled decoding step runs its own loops instead (opaque_linear.one_row_linear),
  which read every weight fastest as (out, in). `prepare_for_decoding` lays each weight out
  the faster way for the step that will run: same values, same shape, no extra memory.
- bfloat16: the plain kernel reaches only ~half the bandwidth; oneDNN's prepacked weight
  format (what torch.compile's CPU "freezing" uses) runs ~2x faster. `PackedLinear` keeps
  such a copy beside the ordinary weight and uses it only for inference.
- float32 on 2+ threads: torch's one-row float32 product (MKL's gemv) runs on one thread
  whatever `torch.set_num_threads` says; oneDNN's prepacked product uses them all (2 threads:
  ~1.3x on gpt2-124M's matrices). On one thread torch's own is 2-10% faster, so the packed
  copy (a second copy of the weights in memory) is made the first time 2+ threads decode.

`nn.Linear`'s own forward stays the reference path; tests check both give the same logits.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpt2.generation.opaque_linear import OpaqueWhenCompiled


@functools.cache
def _mkldnn_packed(dtype: torch.dtype) -> bool:
    """Whether this torch build and CPU can run oneDNN's prepacked linear in `dtype` (private
    torch ops, so they are tried once on a tiny input rather than assumed)."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        if dtype == torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
        x = w = torch.ones(2, 2, dtype=dtype)
        y = torch.ops.mkldnn._linear_pointwise(x[:1], torch.ops.mkldnn._reorder_linear_weight(w, 1), None,
                                               "none", [], "")
        return y.tolist() == [[2.0, 2.0]]
    except (AttributeError, RuntimeError, TypeError):
        return False


class PackedLinear(OpaqueWhenCompiled, nn.Linear):
    """An nn.Linear (same `weight` and `bias` Parameters, same state_dict) that multiplies by a
    oneDNN-prepacked copy of its weight when nothing needs gradients: always in bf16, in
    float32 when torch runs 2+ threads (module docstring).

    The copy is remade whenever the weight changes (an optimizer step, `.to()`), detected
    by the weight's version counter and storage, so it can never be stale. In training, with
    gradients, off CPU, or in float32 on one thread, forward is exactly `nn.Linear.forward`.
    """

    @classmethod
    def wrap(cls, linear: nn.Linear) -> PackedLinear:
        packed = cls.__new__(cls)
        nn.Module.__init__(packed)
        packed.in_features, packed.out_features = linear.in_features, linear.out_features
        packed.weight, packed.bias = linear.weight, linear.bias  # shared: tying survives
        packed._packed, packed._packed_key = None, None
        packed.train(linear.training)
        return packed

    def __getstate__(self) -> dict:
        """Copies and pickles leave the packed weight behind (an opaque oneDNN tensor that
        cannot be copied); it is rebuilt on the next forward."""
        state = dict(super().__getstate__())
        state["_packed"], state["_packed_key"] = None, None
        return state

    def _key(self) -> tuple:
        w = self.weight
        return (w._version, w.data_ptr(), w.dtype, w.device)

    def _fast(self, x: Tensor) -> bool:
        """Whether this call uses the packed copy."""
        w = self.weight
        if self.training or torch.is_grad_enabled() or w.device.type != "cpu" or x.dtype != w.dtype:
            return False
        return w.dtype == torch.bfloat16 or (w.dtype == torch.float32 and torch.get_num_threads() > 1)

    def kernel_forward(self, x: Tensor) -> Tensor:
        """The product: with the packed copy (made or remade here when the weight changed)
        where `_fast`, else nn.Linear's."""
        w = self.weight
        if not self._fast(x):
            return F.linear(x, w, self.bias)  # the reference path
        if self._packed_key != self._key():
            self._packed = torch.ops.mkldnn._reorder_linear_weight(w.detach().contiguous(), 1)
            self._packed_key = self._key()
        return torch.ops.mkldnn._linear_pointwise(x, self._packed, self.bias, "none", [], "")


def _faster_layout(w: Tensor, compiled: bool) -> Tensor:
    """w (out, in) float32, the same values laid out in memory as (out, in) for the compiled
    step or a narrow weight, as (in, out) for a wide one (out >= in) in eager decoding."""
    out_features, in_features = w.shape
    if out_features >= in_features and not compiled:
        return w if w.t().is_contiguous() else w.t().contiguous().t()  # (in, out) memory
    return w.contiguous()  # (out, in) memory


def prepare_for_decoding(model: nn.Module, compiled: bool = False) -> nn.Module:
    """Give every Linear of `model` the fastest decoding layout for its dtype on CPU and for
    the step that will run, eager or `compiled` (see the module docstring); on other devices,
    nothing changes. Values, shapes, parameter names and weight tying are kept. Meant for a
    model loaded to generate from. Returns the model."""
    weight = next(model.parameters())
    if weight.device.type != "cpu":
        return model
    if weight.dtype == torch.float32:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.Linear):
                    module.weight.data = _faster_layout(module.weight.data, compiled)
    if weight.dtype in (torch.bfloat16, torch.float32) and _mkldnn_packed(weight.dtype):
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is nn.Linear:
                    setattr(parent, name, PackedLinear.wrap(child))
    return model
