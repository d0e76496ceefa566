"""Faster weights for CPU decoding: the memory layout one-token matrix-vector products want.

Generating one token multiplies a single vector by every weight matrix, so its speed is
set by how fast the weights stream from memory, and on CPU that depends on their layout:

- float32: torch's kernel reads an (out, in) weight ~1.4x faster when it lies in memory as
  (in, out), GPT-2's original Conv1D layout. `prepare_for_decoding` re-lays each weight out
  that way: same values, same shape, no extra memory.
- bfloat16: the plain kernel reaches only ~half the bandwidth; oneDNN's prepacked weight
  format (what torch.compile's CPU "freezing" uses) runs ~2x faster. `PackedLinear` keeps
  such a copy beside the ordinary weight and uses it only for inference.

`nn.Linear`'s own forward stays the reference path; tests check both give the same logits.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@functools.cache
def _mkldnn_bf16() -> bool:
    """Whether this torch build and CPU can run oneDNN's prepacked bf16 linear (private torch
    ops, so they are tried once on a tiny input rather than assumed)."""
    try:
        if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            return False
        x = w = torch.ones(2, 2, dtype=torch.bfloat16)
        y = torch.ops.mkldnn._linear_pointwise(x[:1], torch.ops.mkldnn._reorder_linear_weight(w, 1), None,
                                               "none", [], "")
        return y.tolist() == [[2.0, 2.0]]
    except (AttributeError, RuntimeError, TypeError):
        return False


class PackedLinear(nn.Linear):
    """An nn.Linear (same `weight` and `bias` Parameters, same state_dict) that multiplies by a
    oneDNN-prepacked bf16 copy of its weight when nothing needs gradients.

    The copy is remade whenever the weight changes (an optimizer step, `.to()`), detected
    by the weight's version counter and storage, so it can never be stale. In training, with
    gradients, or off CPU/bf16, forward is exactly `nn.Linear.forward`.
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

    def forward(self, x: Tensor) -> Tensor:  # x: (..., in) -> (..., out)
        w = self.weight
        fast = (not self.training and not torch.is_grad_enabled() and w.dtype == torch.bfloat16
                and w.device.type == "cpu" and x.dtype == torch.bfloat16)
        if not fast:
            return F.linear(x, w, self.bias)  # the reference path
        if self._packed_key != self._key():
            self._packed = torch.ops.mkldnn._reorder_linear_weight(w.detach(), 1)
            self._packed_key = self._key()
        return torch.ops.mkldnn._linear_pointwise(x, self._packed, self.bias, "none", [], "")


def prepare_for_decoding(model: nn.Module) -> nn.Module:
    """Give every Linear of `model` the fastest decoding layout for its dtype on CPU (see the
    module docstring); on other devices, nothing changes. Values, shapes, parameter names
    and weight tying are kept. Meant for a model loaded to generate from. Returns the model."""
    weight = next(model.parameters())
    if weight.device.type != "cpu":
        return model
    if weight.dtype == torch.bfloat16 and _mkldnn_bf16():
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is nn.Linear:
                    setattr(parent, name, PackedLinear.wrap(child))
    elif weight.dtype == torch.float32:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.Linear) and not module.weight.t().is_contiguous():
                    module.weight.data = module.weight.data.t().contiguous().t()  # (in, out) memory
    return model
