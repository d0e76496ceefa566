"""Our parameter names and layouts <-> GPT-2's (Hugging Face `GPT2LMHeadModel`).

Inside the model the attention projections are one `qkv` Linear and `proj`, the MLP has
`fc` and `proj`, blocks have `norm1`/`norm2`. On disk the names are GPT-2's
(`transformer.h.3.attn.c_attn.weight`, ...) and the four projection weights are stored as
(in, out), the layout of GPT-2's Conv1D, while nn.Linear keeps (out, in). This module is
the only place that knows either fact; the model code never sees Conv1D.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from gpt2.errors import CheckpointError

# Buffers that some transformers versions store; they carry no learned weights.
_IGNORED_HF_KEYS = re.compile(r".*\.attn\.(bias|masked_bias)$")
# Our Linear weights are (out, in); GPT-2's Conv1D stores (in, out).
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_LAYER_MAP = {
    "norm1": "ln_1", "attn.qkv": "attn.c_attn", "attn.proj": "attn.c_proj",
    "norm2": "ln_2", "mlp.fc": "mlp.c_fc", "mlp.proj": "mlp.c_proj",
}
_TOP_MAP = {"tok_emb": "transformer.wte", "pos_emb": "transformer.wpe", "final_norm": "transformer.ln_f"}


def to_hf_name(name: str) -> str:
    """'blocks.3.attn.qkv.weight' -> 'transformer.h.3.attn.c_attn.weight'."""
    module, param = name.rsplit(".", 1)
    if module in _TOP_MAP:
        return f"{_TOP_MAP[module]}.{param}"
    _, layer, sub = module.split(".", 2)  # 'blocks', '3', 'attn.qkv'
    return f"transformer.h.{layer}.{_LAYER_MAP[sub]}.{param}"


def to_hf_state_dict(model: nn.Module, bias: bool = True) -> dict[str, Tensor]:
    """`model`'s parameters under GPT-2's names and layouts (float32, contiguous, CPU).
    bias=False: zero biases are added, so transformers computes the same bias-free function."""
    out = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":  # tied to tok_emb; transformers re-ties on load
            continue
        hf = to_hf_name(name)
        t = tensor.detach().to("cpu", torch.float32)
        out[hf] = (t.t() if hf.endswith(_CONV1D) else t).contiguous()
    if not bias:
        for hf_name, t in list(out.items()):
            if hf_name.endswith(".weight") and "wte" not in hf_name and "wpe" not in hf_name:
                width = t.shape[-1] if hf_name.endswith(_CONV1D) else t.shape[0]
                out[hf_name[: -len("weight")] + "bias"] = torch.zeros(width)
    return out


def from_hf_state_dict(hf: dict[str, Tensor], expected: Mapping[str, Tensor], bias: bool,
                       source: Path) -> dict[str, Tensor]:
    """GPT-2's names and layouts -> ours. `expected` is the target model's state_dict (a
    meta-device one will do: only names and shapes are read); every tensor must be there
    and fit, and nothing unknown may be left over."""
    hf = {(k if k.startswith(("transformer.", "lm_head.")) else f"transformer.{k}"): v for k, v in hf.items()}
    ours: dict[str, Tensor] = {}
    for name, ref in expected.items():
        if name == "lm_head.weight":
            continue
        key = to_hf_name(name)
        if key not in hf:
            raise CheckpointError(f"{source}: tensor {key!r} is missing")
        t = hf.pop(key)
        if key.endswith(_CONV1D):
            t = t.t()
        if tuple(t.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{source}: tensor {key!r} has shape {tuple(t.shape)} but config.json implies "
                f"{tuple(ref.shape)}; the weights and config.json do not match"
            )
        if not t.is_floating_point():
            raise CheckpointError(f"{source}: tensor {key!r} is {t.dtype}, not floating point; the weights "
                                  "are damaged or were crafted")
        if not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{source}: tensor {key!r} holds NaN or infinite values; these weights "
                                  "cannot generate text (saved from a diverged run?)")
        ours[name] = t
    head = hf.pop("lm_head.weight", None)
    if head is not None and not torch.equal(head, ours["tok_emb.weight"]):
        raise CheckpointError(f"{source}: lm_head.weight is not tied to transformer.wte.weight; unsupported")
    if not bias:
        for key in [k for k in hf if k.endswith(".bias") and not _IGNORED_HF_KEYS.match(k)]:
            if torch.count_nonzero(hf.pop(key)):
                raise CheckpointError(f"{source}: config says bias=false but {key!r} is non-zero")
    unexpected = sorted(k for k in hf if not _IGNORED_HF_KEYS.match(k))
    if unexpected:
        raise CheckpointError(f"{source}: unexpected tensors {', '.join(unexpected[:5])}")
    return ours
