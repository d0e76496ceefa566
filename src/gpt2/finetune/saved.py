"""Fine-tuned checkpoints: what they hold, how they are written, loaded and merged.

A fine-tuned checkpoint is a checkpoint directory (gpt2.checkpoint: atomic, with a manifest
of sha256s) plus `finetune.json` ({task, classes, base, lora}), and:
- full fine-tuning: the model as config.json + model.safetensors (loads anywhere a GPT-2 does);
- LoRA: only `adapter_model.safetensors` + `adapter_config.json` (peft's format), a small
  file; the base model is read from `base` when loading, and `merge` writes a full checkpoint;
- classify: also `head.safetensors` (the class head; the body stays a GPT-2).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from gpt2.checkpoint import readable_path, save_checkpoint, verify_checkpoint
from gpt2.errors import GPT2Error
from gpt2.files import read_json
from gpt2.finetune.classifier import GPT2Classifier
from gpt2.finetune.lora import adapter_tensors, add_lora, load_adapter_tensors, merge_lora, peft_config
from gpt2.gpt_model import GPT2
from gpt2.tokenizers import Tokenizer, find_tokenizer

FINETUNE = "finetune.json"
ADAPTER = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
HEAD = "head.safetensors"


def finetune_info(task: str, base: str, classes: list[str] | None,
                  lora: dict[str, Any] | None) -> dict[str, Any]:
    """The contents of finetune.json. base: the directory the run started from (absolute)."""
    return {"task": task, "base": str(Path(base).resolve()), "classes": classes, "lora": lora}


def checkpoint_writer(info: dict[str, Any]) -> Callable[..., Path]:
    """A `RunCheckpoints.write` for fine-tuning: save_checkpoint with the adapters (instead of
    the weights) under LoRA, the class head, and finetune.json."""

    def write(path: Path, model: nn.Module, tokenizer: Any = None,
              training_state: dict[str, Any] | None = None, json_files: dict[str, Any] | None = None) -> Path:
        tensors, files = {}, {**(json_files or {}), FINETUNE: info}
        lora = info["lora"]
        if lora:
            tensors[ADAPTER] = adapter_tensors(model)
            files[ADAPTER_CONFIG] = peft_config(lora["rank"], lora["alpha"], lora["dropout"], lora["targets"],
                                                info["base"])
        if isinstance(model, GPT2Classifier):
            head = model.head.state_dict()
            tensors[HEAD] = {k: v.detach().float().cpu().contiguous() for k, v in head.items()}
        body = None if lora else getattr(model, "gpt", model)
        return save_checkpoint(path, body, tokenizer, training_state, files, tensor_files=tensors)

    return write


def read_info(path: str | Path) -> dict[str, Any] | None:
    """finetune.json of a checkpoint, or None for a plain (pretrained) checkpoint."""
    file = readable_path(path) / FINETUNE
    return read_json(file, "the checkpoint is damaged") if file.exists() else None


def _tensors(path: Path, name: str) -> dict[str, torch.Tensor]:
    verify_checkpoint(path, [name])
    if not (path / name).is_file():
        raise GPT2Error(f"{path / name}: missing from the fine-tuned checkpoint")
    return load_file(path / name)


def restore_weights(model: nn.Module, path: str | Path, info: dict[str, Any]) -> None:
    """Load a fine-tuned checkpoint's trained weights into `model`, built as the run built it
    (base weights, LoRA layers, head): the adapters or the full body, and the head."""
    path = readable_path(path)
    if info["lora"]:
        load_adapter_tensors(model, _tensors(path, ADAPTER), str(path / ADAPTER))
    else:
        body = getattr(model, "gpt", model)
        saved = GPT2.from_pretrained(path, device=body.device)
        body.load_state_dict(saved.state_dict())
    if isinstance(model, GPT2Classifier):
        model.head.load_state_dict({k: v.to(model.device) for k, v in _tensors(path, HEAD).items()})


def build_for(info: dict[str, Any], base: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """The model a run with `info` trains: the base GPT-2, its head and its LoRA layers."""
    if not Path(base).is_dir():
        raise GPT2Error(f"{base}: the base model of this fine-tune is not there; it is needed to load "
                        "the adapters (or merge them while it is)")
    model: nn.Module = GPT2.from_pretrained(base, device=device)
    if info["task"] == "classify":
        model = GPT2Classifier(model, info["classes"]).to(device)
    lora = info["lora"]
    if lora:
        add_lora(model, lora["rank"], lora["alpha"], lora["dropout"], lora["targets"])
    return model


def load_finetuned(path: str | Path, device: torch.device | str = "cpu",
                   merge: bool = False) -> tuple[nn.Module, Tokenizer, dict[str, Any]]:
    """(model in eval mode, tokenizer, finetune.json) of a fine-tuned checkpoint; merge=True
    folds LoRA adapters into the weights (a plain GPT2 / GPT2Classifier body)."""
    info = read_info(path)
    if info is None:
        raise GPT2Error(f"{path}: not a fine-tuned checkpoint (no {FINETUNE}); make one with `gpt2 finetune`")
    model = build_for(info, path if not info["lora"] else info["base"], device)
    restore_weights(model, path, info)
    if merge and info["lora"]:
        merge_lora(model)
    tokenizer = find_tokenizer(readable_path(path))
    if tokenizer is None:
        raise GPT2Error(f"{path}: has no tokenizer; it is damaged")
    return model.eval(), tokenizer, info


def merge_checkpoint(path: str | Path, out: str | Path) -> Path:
    """Write `path` (a fine-tuned checkpoint) with its LoRA adapters merged as a full checkpoint
    at `out`: config.json + model.safetensors that our GPT2.from_pretrained and transformers load."""
    model, tokenizer, info = load_finetuned(path, merge=True)
    merged = {**info, "lora": None, "base": info["base"], "merged_from": str(Path(path).resolve())}
    return checkpoint_writer(merged)(Path(out), model, tokenizer)
