"""Checkpoint directories: Hugging Face GPT-2 layout on disk, written atomically, read safely.

A checkpoint directory holds
- `config.json` and `model.safetensors` in transformers' GPT-2 layout (tensor names of
  GPT2LMHeadModel, Conv1D weights stored as (in, out)), so `GPT2LMHeadModel.from_pretrained`
  loads it;
- our own files: the tokenizer, optional JSON files (training config, ...), optional
  `training_state.pt` (optimizer, RNG, data position), and `gpt2_checkpoint.json`, a
  manifest of every file's size and sha256 so truncation or corruption is caught on load.

Nothing is unpickled freely: weights go through safetensors, the training state through
`torch.load(weights_only=True)`, everything else is JSON.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gpt2.config import GPT2Config

if TYPE_CHECKING:
    from gpt2.gpt_model import GPT2

MANIFEST = "gpt2_checkpoint.json"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAINING_STATE = "training_state.pt"
FORMAT_VERSION = 1

# Buffers that some transformers versions store; they carry no learned weights.
_IGNORED_HF_KEYS = re.compile(r".*\.attn\.(bias|masked_bias)$")
# Our Linear weights are (out, in); GPT-2's Conv1D stores (in, out).
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


class CheckpointError(ValueError):
    """A checkpoint directory is missing, incomplete, corrupt, or does not match."""


# --- name mapping -----------------------------------------------------------------------

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


def to_hf_state_dict(model: GPT2) -> dict[str, torch.Tensor]:
    """Our parameters under GPT-2's names and layouts (float32, contiguous, CPU)."""
    cfg = model.cfg
    out = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":  # tied to tok_emb; transformers re-ties on load
            continue
        hf = to_hf_name(name)
        t = tensor.detach().to("cpu", torch.float32)
        out[hf] = (t.t() if hf.endswith(_CONV1D) else t).contiguous()
    if not cfg.bias:  # zero biases make transformers compute the same bias-free function
        for hf_name, t in list(out.items()):
            if hf_name.endswith(".weight") and "wte" not in hf_name and "wpe" not in hf_name:
                width = t.shape[-1] if hf_name.endswith(_CONV1D) else t.shape[0]
                out[hf_name[: -len("weight")] + "bias"] = torch.zeros(width)
    return out


def from_hf_state_dict(hf: dict[str, torch.Tensor], cfg: GPT2Config, source: Path) -> dict[str, torch.Tensor]:
    """GPT-2's names and layouts -> ours, checking that every tensor is there and fits."""
    hf = {(k if k.startswith(("transformer.", "lm_head.")) else f"transformer.{k}"): v for k, v in hf.items()}
    from gpt2.gpt_model import GPT2

    with torch.device("meta"):
        expected = GPT2(cfg).state_dict()
    ours: dict[str, torch.Tensor] = {}
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
        ours[name] = t
    head = hf.pop("lm_head.weight", None)
    if head is not None and not torch.equal(head, ours["tok_emb.weight"]):
        raise CheckpointError(f"{source}: lm_head.weight is not tied to transformer.wte.weight; unsupported")
    if not cfg.bias:
        for key in [k for k in hf if k.endswith(".bias") and not _IGNORED_HF_KEYS.match(k)]:
            if torch.count_nonzero(hf.pop(key)):
                raise CheckpointError(f"{source}: config says bias=false but {key!r} is non-zero")
    unexpected = sorted(k for k in hf if not _IGNORED_HF_KEYS.match(k))
    if unexpected:
        raise CheckpointError(f"{source}: unexpected tensors {', '.join(unexpected[:5])}")
    return ours


# --- writing ----------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_checkpoint(path: str | Path, model: GPT2, tokenizer: Any = None,
                    training_state: dict[str, Any] | None = None,
                    json_files: dict[str, Any] | None = None) -> Path:
    """Write a complete checkpoint to `path`, replacing any checkpoint there atomically.

    Everything is written into a hidden sibling folder and fsynced; only then does it
    take the place of `path` by rename. A crash at any moment leaves either the old
    checkpoint or the new one (see `recover_interrupted_save`), never a mix.
    tokenizer: anything with `save(directory)`. json_files: {"name.json": data}.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted_save(path)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by a killed save
        shutil.rmtree(stale, ignore_errors=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    tmp.mkdir()
    try:
        _write_json(tmp / CONFIG, model.cfg.to_hf_dict())
        save_file(to_hf_state_dict(model), tmp / WEIGHTS, metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save(tmp)
        for name, data in (json_files or {}).items():
            _write_json(tmp / name, data)
        if training_state is not None:
            torch.save(training_state, tmp / TRAINING_STATE)
        files = {
            str(p.relative_to(tmp)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        manifest = {"format": "gpt2-from-scratch", "version": FORMAT_VERSION, "files": files}
        _write_json(tmp / MANIFEST, manifest)
        _fsync_tree(tmp)
        _swap_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _swap_into_place(tmp: Path, path: Path) -> None:
    old = path.parent / f".{path.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.rename(path, old)  # from here until the next rename, `old` is the good copy
    os.rename(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    shutil.rmtree(old, ignore_errors=True)


def recover_interrupted_save(path: str | Path) -> None:
    """If a save died between its two renames, put the previous checkpoint back.

    For writers (the next save does it too); readers use `_readable_path` and touch nothing.
    """
    path = Path(path)
    old = path.parent / f".{path.name}.old"
    if not path.exists() and (old / MANIFEST).exists():
        with contextlib.suppress(OSError):  # another process may have repaired it first
            os.rename(old, path)


def _readable_path(path: Path) -> Path:
    """`path`, or the previous checkpoint a save is replacing right now (between renames)."""
    old = path.parent / f".{path.name}.old"
    return old if not path.exists() and (old / MANIFEST).exists() else path


# --- reading ----------------------------------------------------------------------------

def verify_checkpoint(path: str | Path, names: Iterable[str] | None = None) -> None:
    """Check that the files the manifest lists (or only `names` among them) are present,
    complete and unchanged. Loading the weights checks only the files it reads."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        return  # a plain Hugging Face directory: nothing to verify against
    manifest = _read_json(manifest_path)
    if manifest.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{manifest_path}: format version {manifest['version']} is newer than "
                              f"this gpt2 package understands ({FORMAT_VERSION}); upgrade it")
    files = manifest.get("files", {})
    for name in files if names is None else [n for n in names if n in files]:
        info, file = files[name], path / name
        if not isinstance(info, dict) or not {"bytes", "sha256"} <= info.keys():
            raise CheckpointError(f"{manifest_path}: malformed entry for {name!r}; re-save the checkpoint")
        if not file.exists():
            raise CheckpointError(f"{file}: missing from the checkpoint")
        size = file.stat().st_size
        if size != info["bytes"]:
            raise CheckpointError(
                f"{file}: {size} bytes, expected {info['bytes']}; the file is truncated or was replaced"
            )
        if _sha256(file) != info["sha256"]:
            raise CheckpointError(f"{file}: sha256 does not match the manifest; the file is corrupt")


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{file}: not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{file}: not valid JSON ({err})") from None


def read_config(path: str | Path) -> GPT2Config:
    """The model config stored in a checkpoint or Hugging Face directory."""
    file = _readable_path(Path(path)) / CONFIG
    try:
        return GPT2Config.from_hf_dict(_read_json(file))
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{file}: not a GPT-2 config ({err})") from None


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Load model.safetensors, a sharded safetensors index, or (safely) pytorch_model.bin."""
    index = path / "model.safetensors.index.json"
    try:
        if (path / WEIGHTS).exists():
            return load_file(path / WEIGHTS)
        if index.exists():
            shards = sorted(set(_read_json(index)["weight_map"].values()))
            return {k: v for shard in shards for k, v in load_file(path / shard).items()}
        if (path / "pytorch_model.bin").exists():
            return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, RuntimeError, KeyError) as err:
        raise CheckpointError(
            f"{path}: cannot read the weights ({err}); the file is truncated or corrupt"
        ) from None
    raise CheckpointError(f"{path}: no {WEIGHTS} or pytorch_model.bin found; is this a checkpoint directory?")


def load_model(path: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None) -> GPT2:
    """Build a GPT2 from our checkpoint directory or a local Hugging Face GPT-2 directory."""
    from gpt2.gpt_model import GPT2

    path = _readable_path(Path(path))
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    verify_checkpoint(path, [CONFIG, WEIGHTS])
    cfg = read_config(path)
    state = from_hf_state_dict(_read_weights(path), cfg, path)
    with torch.device("meta"):
        model = GPT2(cfg)  # no point initialising weights that are about to be replaced
    model.to_empty(device=device)
    model.lm_head.weight = model.tok_emb.weight  # re-tie after materialising
    state["lm_head.weight"] = state["tok_emb.weight"]
    model.load_state_dict(state)
    if dtype is not None:
        model.to(dtype)
    return model.eval()


def load_training_state(path: str | Path) -> dict[str, Any] | None:
    """The optimizer / RNG / data state saved beside the weights, or None if there is none."""
    path = _readable_path(Path(path))
    file = path / TRAINING_STATE
    if not file.exists():
        return None
    verify_checkpoint(path, [TRAINING_STATE])
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses anything that is not plain data
        raise CheckpointError(f"{file}: cannot load the training state ({err})") from None
