"""Checkpoint directories: Hugging Face GPT-2 layout on disk, written atomically, read safely.

A checkpoint directory holds
- `config.json` and `model.safetensors` in transformers' GPT-2 layout (see hf_layout.py),
  so `GPT2LMHeadModel.from_pretrained` loads it;
- our own files: the tokenizer, optional JSON files (training config, ...), optional
  `training_state.pt` (optimizer, RNG, data position), and `gpt2_checkpoint.json`, a
  manifest of every file's size and sha256 so truncation or corruption is caught on load.

This module reads and writes files only; `GPT2.from_pretrained` builds the model from
`read_config` and `read_weights`. Nothing is unpickled freely: weights go through
safetensors (or `torch.load(weights_only=True)` for a Hugging Face `pytorch_model.bin`),
the training state through `torch.load(weights_only=True)`, everything else is JSON.
"""

from __future__ import annotations

import contextlib
import pickle
import shutil
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from gpt2.config import GPT2Config
from gpt2.errors import CheckpointError
from gpt2.files import (
    json_bytes,
    member,
    read_json,
    readable_dir,
    recover_dir,
    replace_dir,
    sha256_file,
    staging_dir,
    write_bytes_atomic,
)
from gpt2.hf_layout import to_hf_state_dict

__all__ = ["CheckpointError", "load_training_state", "read_config", "read_weights", "readable_path",
           "recover_interrupted_save", "save_checkpoint", "verify_checkpoint"]

MANIFEST = "gpt2_checkpoint.json"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAINING_STATE = "training_state.pt"
FORMAT_VERSION = 1
_FIX = "re-save the checkpoint"


def save_checkpoint(path: str | Path, model: nn.Module | None, tokenizer: Any = None,
                    training_state: dict[str, Any] | None = None,
                    json_files: dict[str, Any] | None = None, staged: Path | None = None,
                    tensor_files: dict[str, dict[str, torch.Tensor]] | None = None) -> Path:
    """Write a complete checkpoint of `model` (anything with `.cfg` and GPT2's parameter
    names) to `path`, replacing any checkpoint there atomically (see gpt2.files.replace_dir):
    a crash at any moment leaves either the old checkpoint or the new one, never a mix.
    tokenizer: anything with `save(directory)`. json_files: {"name.json": data}. staged: a
    `staging_dir(path)` already holding files of other writers (the shards of every process,
    training/sharded_checkpoint.py), sealed into the manifest with the rest.
    tensor_files: {"name.safetensors": tensors} beside the model (e.g. LoRA adapters); with
    model None they are the only tensors (a LoRA checkpoint holds no copy of its base model).
    """
    path = Path(path)
    recover_interrupted_save(path)
    tmp = staged or staging_dir(path)
    try:
        if model is not None:
            write_bytes_atomic(tmp / CONFIG, json_bytes(model.cfg.to_hf_dict()))
            with _writing(tmp / WEIGHTS, path):
                save_file(to_hf_state_dict(model, model.cfg.bias), tmp / WEIGHTS, metadata={"format": "pt"})
        for name, tensors in (tensor_files or {}).items():
            with _writing(tmp / name, path):
                save_file(tensors, tmp / name, metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save(tmp)
        for name, data in (json_files or {}).items():
            write_bytes_atomic(tmp / name, json_bytes(data))
        if training_state is not None:
            with _writing(tmp / TRAINING_STATE, path):
                torch.save(training_state, tmp / TRAINING_STATE)
        files = {
            str(p.relative_to(tmp)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        manifest = {"format": "gpt2-from-scratch", "version": FORMAT_VERSION, "files": files}
        write_bytes_atomic(tmp / MANIFEST, json_bytes(manifest))
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


@contextlib.contextmanager
def _writing(file: Path, checkpoint: Path) -> Iterator[None]:
    """safetensors and torch.save report a failed write (a full disk, a file-size limit) as their
    own exceptions, with a C++ message; make it the one-line error that names the file."""
    try:
        yield
    except (SafetensorError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{checkpoint}: could not write {file.name} ({reason[:200]}); is the disk "
                              "full? the previous checkpoint there is intact") from None


def recover_interrupted_save(path: str | Path) -> None:
    """If a save died between its two renames, put the previous checkpoint back (writers only)."""
    recover_dir(Path(path), MANIFEST)


def readable_path(path: str | Path) -> Path:
    """`path`, or the previous checkpoint a save is replacing right now (between renames).
    Every reader goes through this, so all readers agree in every state a save can leave."""
    return readable_dir(Path(path), MANIFEST)


def verify_checkpoint(path: str | Path, names: Iterable[str] | None = None) -> None:
    """Check that the files the manifest lists (or only `names` among them) are present,
    complete and unchanged. Loading the weights checks only the files it reads."""
    path = readable_path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        return  # a plain Hugging Face directory: nothing to verify against
    manifest = read_json(manifest_path, _FIX, CheckpointError)
    version = manifest.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise CheckpointError(f"{manifest_path}: format version {manifest['version']} is newer than "
                              f"this gpt2 package understands ({FORMAT_VERSION}); upgrade it")
    files = manifest.get("files")
    if version != FORMAT_VERSION or not isinstance(files, dict):
        raise CheckpointError(f"{manifest_path}: not a manifest of format version {FORMAT_VERSION} (version "
                              f"{version!r}, files {type(files).__name__}); the checkpoint is damaged or "
                              "crafted")
    for name in files if names is None else [n for n in names if n in files]:
        info, file = files[name], member(path, name, manifest_path)
        if not isinstance(info, dict) or not isinstance(info.get("bytes"), int) or \
                not isinstance(info.get("sha256"), str):
            raise CheckpointError(f"{manifest_path}: malformed entry for {name!r}; {_FIX}")
        if not file.exists():
            raise CheckpointError(f"{file}: missing from the checkpoint")
        size = file.stat().st_size
        if size != info["bytes"]:
            raise CheckpointError(
                f"{file}: {size} bytes, expected {info['bytes']}; the file is truncated or was replaced"
            )
        if sha256_file(file) != info["sha256"]:
            raise CheckpointError(f"{file}: sha256 does not match the manifest; the file is corrupt")


def read_config(path: str | Path) -> GPT2Config:
    """The model config stored in a checkpoint or Hugging Face directory."""
    file = readable_path(path) / CONFIG
    data = read_json(file, "is this a checkpoint directory?", CheckpointError)
    try:
        return GPT2Config.from_hf_dict(data)
    except KeyError as err:
        raise CheckpointError(f"{file}: not a GPT-2 config (no key {err})") from None
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{file}: not a GPT-2 config ({err})") from None


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint under GPT-2's names, verified against the manifest:
    model.safetensors, a sharded safetensors index, or (safely) pytorch_model.bin."""
    path = readable_path(path)
    verify_checkpoint(path, [CONFIG, WEIGHTS])
    index = path / "model.safetensors.index.json"
    try:
        if (path / WEIGHTS).exists():
            return load_file(member(path, WEIGHTS, "the checkpoint"))
        if index.exists():
            shards = sorted(set(read_json(index, _FIX, CheckpointError)["weight_map"].values()))
            return {k: v for shard in shards for k, v in load_file(member(path, shard, index)).items()}
        if (path / "pytorch_model.bin").exists():
            bin_file = member(path, "pytorch_model.bin", "the checkpoint")
            with warnings.catch_warnings():  # torch's note on pickle protocols is not the user's concern
                warnings.simplefilter("ignore", UserWarning)
                return torch.load(bin_file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path / 'pytorch_model.bin'}: refused, it holds more than plain tensors "
                              "(loading it could run code); re-save the weights as model.safetensors"
                              ) from None
    except (SafetensorError, OSError, RuntimeError, KeyError, AttributeError, TypeError) as err:
        raise CheckpointError(
            f"{path}: cannot read the weights ({err}); the file is truncated or corrupt"
        ) from None
    raise CheckpointError(f"{path}: no {WEIGHTS} or pytorch_model.bin found; is this a checkpoint directory?")


def load_training_state(path: str | Path) -> dict[str, Any] | None:
    """The optimizer / RNG / data state saved beside the weights, or None if there is none."""
    path = readable_path(path)
    file = path / TRAINING_STATE
    if not file.exists():
        return None
    verify_checkpoint(path, [TRAINING_STATE])
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refuses anything but plain data
        raise CheckpointError(f"{file}: cannot load the training state: it holds more than plain data "
                              "(loading it could run code); the checkpoint is damaged or was crafted"
                              ) from None
    except (RuntimeError, OSError, ValueError, EOFError) as err:
        raise CheckpointError(f"{file}: cannot load the training state ({err}); {_FIX}") from None
