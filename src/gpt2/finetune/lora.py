"""LoRA (Hu et al., 2021): fine-tune a frozen linear layer W through a low-rank update.

    y = W x + b + (alpha / r) * B (A dropout(x)),   A: (r, in), B: (out, r)

A starts random and B at zero, so training starts from the unchanged model; only A and B
(r * (in + out) numbers per layer instead of in * out) are trained and saved. Merging folds
the update into the weight, W' = W + (alpha / r) B A, leaving a plain GPT-2 again.

The adapters are stored as the `peft` library stores them for transformers' GPT-2
(`adapter_model.safetensors` + `adapter_config.json`), so `peft.PeftModel` loads ours (the
test compares the two): GPT-2's Conv1D keeps weights as (in, out), which peft handles with
fan_in_fan_out; A and B themselves have the same shapes in both.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from gpt2.errors import GPT2Error
from gpt2.hf_layout import to_hf_name

PEFT_PREFIX = "base_model.model."


class LoRALinear(nn.Module):
    """`base` (frozen) plus a trainable rank-`rank` update scaled by alpha / rank."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.base, self.rank, self.alpha = base, rank, alpha
        self.scale = alpha / rank
        base.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))  # (out,r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear (and peft) initialise A
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., in) -> (..., out)."""
        update = self.dropout(x) @ self.lora_A.t() @ self.lora_B.t()  # (..., r) then (..., out)
        return self.base(x) + self.scale * update

    def merged_weight(self) -> Tensor:
        """W + (alpha / r) B A: the one weight that computes what this layer computes (no dropout)."""
        return self.base.weight + self.scale * (self.lora_B @ self.lora_A)  # (out, in)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Module name (relative to the GPT-2 body, e.g. 'blocks.0.attn.qkv') -> its LoRALinear."""
    return {name: m for name, m in _body(model).named_modules() if isinstance(m, LoRALinear)}


def _body(model: nn.Module) -> nn.Module:
    return getattr(model, "gpt", model)  # a GPT2Classifier's GPT-2, or the GPT-2 itself


def add_lora(model: nn.Module, rank: int, alpha: float, dropout: float, targets: list[str]) -> None:
    """Freeze every weight of the GPT-2 body and wrap the `targets` linears of each block
    (e.g. 'attn.qkv') in a LoRALinear. A classifier's head stays trainable."""
    body = _body(model)
    body.requires_grad_(False)
    for block in body.blocks:
        for target in targets:
            parent_name, attr = target.split(".")
            parent = getattr(block, parent_name)
            setattr(parent, attr, LoRALinear(getattr(parent, attr), rank, alpha, dropout))


@torch.no_grad()
def merge_lora(model: nn.Module) -> None:
    """Replace each LoRALinear by a plain nn.Linear holding its merged weight (in place)."""
    body = _body(model)
    for name, layer in lora_layers(model).items():
        parent_name, attr = name.rsplit(".", 1)
        merged = layer.base
        merged.weight.copy_(layer.merged_weight())
        setattr(body.get_submodule(parent_name), attr, merged)
    body.requires_grad_(True)


def adapter_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The adapters under peft's names for transformers' GPT-2, e.g.
    'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight' (float32, CPU)."""
    out = {}
    for name, layer in lora_layers(model).items():
        hf = to_hf_name(f"{name}.weight").removesuffix(".weight")
        out[f"{PEFT_PREFIX}{hf}.lora_A.weight"] = layer.lora_A.detach().float().cpu().contiguous()
        out[f"{PEFT_PREFIX}{hf}.lora_B.weight"] = layer.lora_B.detach().float().cpu().contiguous()
    return out


@torch.no_grad()
def load_adapter_tensors(model: nn.Module, tensors: dict[str, Tensor], source: str) -> None:
    """Undo `adapter_tensors` on a model `add_lora` prepared the same way; every adapter must
    be there with its shape, nothing else."""
    expected = adapter_tensors(model)
    if set(tensors) != set(expected):
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        raise GPT2Error(f"{source}: the adapters do not match --lora.targets/--lora.rank "
                        f"(missing {missing[:2]}, unexpected {extra[:2]})")
    for name, layer in lora_layers(model).items():
        hf = PEFT_PREFIX + to_hf_name(f"{name}.weight").removesuffix(".weight")
        for param, key in ((layer.lora_A, f"{hf}.lora_A.weight"), (layer.lora_B, f"{hf}.lora_B.weight")):
            if tensors[key].shape != param.shape:
                raise GPT2Error(f"{source}: {key} has shape {tuple(tensors[key].shape)}, expected "
                                f"{tuple(param.shape)}")
            param.copy_(tensors[key])


def peft_config(rank: int, alpha: float, dropout: float, targets: list[str], base: str) -> dict[str, Any]:
    """adapter_config.json as peft writes it for LoRA on transformers' GPT-2: the target
    modules as a regex of GPT-2's module names (so attn.c_proj and mlp.c_proj stay apart)."""
    hf = sorted(to_hf_name(f"blocks.0.{t}.weight").split(".h.0.", 1)[1].removesuffix(".weight")
                for t in targets)  # e.g. attn.c_attn
    pattern = r".*\.h\.\d+\.(" + "|".join(t.replace(".", r"\.") for t in hf) + ")"
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": alpha,
            "lora_dropout": dropout, "target_modules": pattern, "fan_in_fan_out": True, "bias": "none",
            "base_model_name_or_path": base, "inference_mode": True, "modules_to_save": None,
            "init_lora_weights": True}
