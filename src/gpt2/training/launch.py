"""From a RunConfig to a ready Trainer: device, processes, data, tokenizer, model, resume.

Every inconsistency we can see before training starts is raised here as a ValueError
with one line that names the setting and what to do, so a run never fails an hour in
for a reason that was visible at step 0.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from gpt2.attention import ATTENTION_IMPLS, MultiHeadAttention
from gpt2.checkpoint import load_model, read_config, recover_interrupted_save
from gpt2.config import GPT2Config
from gpt2.device import pick_device
from gpt2.gpt_model import GPT2
from gpt2.training.checkpointing import LATEST, load_resume_state
from gpt2.training.config import RunConfig
from gpt2.training.distributed import DistInfo, dist_info_from_env, init_distributed
from gpt2.training.engine import Trainer


def build_trainer(cfg: RunConfig, resume: bool = False) -> Trainer:
    """Check the settings, build every piece, and restore the run's state when resuming."""
    device = pick_device(cfg.system.device)
    if cfg.system.threads > 0:
        torch.set_num_threads(cfg.system.threads)
    info = dist_info_from_env(device)
    data_dir, tokenizer = open_data(cfg.data.dir)
    ckpt = Path(cfg.train.out_dir) / LATEST
    if resume:
        if info.is_main:  # one process repairs a save that died between its two renames
            recover_interrupted_save(ckpt)
        if not ckpt.is_dir():
            raise ValueError(f"--resume: no checkpoint at {ckpt}; run without --resume to start the run")
    source = str(ckpt) if resume else cfg.model.init
    model_cfg = model_config(cfg, source, tokenizer)
    check_settings(cfg, info, model_cfg, tokenizer, source)
    init_distributed(info)  # only now wait for the other processes
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every process
    model = build_model(model_cfg, source, info.device)
    torch.manual_seed(cfg.train.seed + info.rank)  # dropout differs between processes
    train_batches, val_batches = make_loaders(cfg, data_dir, info, model.cfg.context_length)
    trainer = Trainer(cfg, model, train_batches, val_batches, tokenizer, info)
    if resume:
        trainer.restore(load_resume_state(ckpt))
    return trainer


def open_data(data_dir: str) -> tuple[Path, Any]:
    """The shard folder and its tokenizer, checked to belong together."""
    from gpt2.data.shards import TOKENIZER_DIR, read_meta
    from gpt2.tokenizers import load_tokenizer

    path = Path(data_dir)
    if not path.is_dir():
        raise ValueError(f"--data.dir {data_dir}: no such folder; create it with `gpt2 prepare`")
    meta = read_meta(path)
    for split in ("train", "val"):
        shards = meta.get("splits", {}).get(split, {}).get("shards", [])
        if not shards:
            raise ValueError(f"--data.dir {data_dir}: meta.json lists no {split} shards; "
                             "re-run `gpt2 prepare`")
        for shard in shards:
            if not (path / shard["file"]).is_file():
                raise ValueError(f"--data.dir {data_dir}: shard {shard['file']} listed in meta.json "
                                 "is missing; re-run `gpt2 prepare`")
    tokenizer = load_tokenizer(path / TOKENIZER_DIR)
    if not same_tokenizer(tokenizer.identity(), meta.get("tokenizer", {})):
        raise ValueError(f"--data.dir {data_dir}: the shards were made with a different tokenizer than "
                         f"{path / TOKENIZER_DIR}; re-run `gpt2 prepare`")
    return path, tokenizer


def same_tokenizer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal kind and file hashes: the two produce the same ids for every text."""
    return a.get("kind") == b.get("kind") and a.get("sha256") == b.get("sha256")


MODEL_FIELDS = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "drop_rate", "bias",
                "attention")


def model_config(cfg: RunConfig, source: str, tokenizer: Any) -> GPT2Config:
    """The shape of the model to train: from a checkpoint / HF directory, or preset + overrides.

    A loaded model takes --model.drop_rate and --model.attention (neither changes a weight);
    any other --model.* option must agree with its config (shorter training windows are
    --train.context_length: the model's position table is not cropped)."""
    m = cfg.model
    overrides = {f: getattr(m, f) for f in MODEL_FIELDS if getattr(m, f) is not None}
    if source == "scratch":
        overrides.setdefault("vocab_size", tokenizer.vocab_size)
        return GPT2Config.from_preset(m.preset, **overrides)
    if not Path(source).is_dir():
        raise ValueError(f"--model.init {source}: no such directory; use 'scratch' or a checkpoint")
    base = read_config(source)
    runtime = {f: overrides.pop(f) for f in ("drop_rate", "attention") if f in overrides}
    clash = [f for f, v in overrides.items() if v != getattr(base, f)]
    if clash:
        given = ", ".join(f"--model.{f} {overrides[f]}" for f in clash)
        has = ", ".join(f"{f} {getattr(base, f)}" for f in clash)
        raise ValueError(f"{given} cannot change the model loaded from {source} (it has {has}); drop the "
                         "option (shorter training windows: --train.context_length)")
    return dataclasses.replace(base, **runtime)


def check_settings(cfg: RunConfig, info: DistInfo, model_cfg: GPT2Config, tokenizer: Any,
                   source: str) -> None:
    """Refuse settings that cannot work together, before any weights are built."""
    t = cfg.train
    ctx = t.context_length or model_cfg.context_length
    if ctx > model_cfg.context_length:
        raise ValueError(f"--train.context_length {ctx} is longer than the model's context_length "
                         f"{model_cfg.context_length}; lower it or give the model more positions")
    if tokenizer.vocab_size > model_cfg.vocab_size:
        raise ValueError(f"the data's tokenizer has {tokenizer.vocab_size} ids but the model's vocabulary "
                         f"has "
                         f"{model_cfg.vocab_size}; use data prepared with the model's tokenizer")
    if source != "scratch":
        theirs = _saved_tokenizer(source)
        if theirs is not None and not same_tokenizer(theirs.identity(), tokenizer.identity()):
            raise ValueError(f"{source}: its tokenizer differs from the one the shards in --data.dir "
                             f"{cfg.data.dir} were made with; prepare the data with `--tokenizer {source}`")
    per_step = info.world_size * t.grad_accum_steps
    if t.batch_size <= 0 or t.batch_size % per_step:
        raise ValueError(f"--train.batch_size {t.batch_size} is not divisible by processes "
                         f"({info.world_size}) x --train.grad_accum_steps ({t.grad_accum_steps}); "
                         f"choose a multiple of {per_step}")
    if t.max_steps <= 0:
        raise ValueError(f"--train.max_steps must be positive, got {t.max_steps}")
    if cfg.system.dtype == "fp16" and info.device.type != "cuda":
        raise ValueError("--system.dtype fp16 needs a CUDA GPU; use bf16 or float32 on this device")
    if cfg.optim.lr <= 0:
        raise ValueError(f"--optim.lr must be positive, got {cfg.optim.lr}")
    if cfg.eval.sample_tokens > 0:
        try:
            tokenizer.encode(cfg.eval.prompt)
        except ValueError as err:  # e.g. a character the char tokenizer has never seen
            raise ValueError(f"--eval.prompt {cfg.eval.prompt!r} cannot be encoded: {err}") from None


def _saved_tokenizer(source: str) -> Any:
    """The tokenizer saved in a checkpoint / HF directory (any of the files `gpt2 generate`
    reads), or None when it holds none: then only the vocabulary size is checked."""
    from gpt2.tokenizers import load_tokenizer

    try:
        return load_tokenizer(source)
    except FileNotFoundError:
        return None


def build_model(model_cfg: GPT2Config, source: str, device: torch.device) -> GPT2:
    """Fresh weights of `model_cfg`, or the weights of a checkpoint / Hugging Face directory
    run with `model_cfg`'s dropout and attention path (all `model_config` lets differ)."""
    if source == "scratch":
        return GPT2(model_cfg).to(device)
    model = load_model(source, device=device)
    if model.cfg != model_cfg:  # e.g. a different dropout for fine-tuning
        set_runtime_options(model, model_cfg)
    return model.train()


def set_runtime_options(model: GPT2, cfg: GPT2Config) -> None:
    """Give a built model `cfg`'s dropout rate and attention path in place (no weight changes)."""
    model.cfg = cfg
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = cfg.drop_rate
        if isinstance(module, MultiHeadAttention):
            module.attn_dropout = cfg.drop_rate  # attention-weight dropout, a float given to the kernel
            module.attend = ATTENTION_IMPLS[cfg.attention]


def make_loaders(cfg: RunConfig, data_dir: Path, info: DistInfo, model_ctx: int) -> tuple[Any, Any]:
    """Random training windows (this process's rows of each global batch) and a sequential,
    exact pass over the validation split."""
    from gpt2.data.loaders import RandomWindowLoader, SequentialLoader

    t = cfg.train
    ctx = t.context_length or model_ctx
    micro = t.batch_size // (info.world_size * t.grad_accum_steps)
    train = RandomWindowLoader(data_dir, split="train", batch_size=micro, context_length=ctx, seed=t.seed,
                               rank=info.rank, world_size=info.world_size, device=str(info.device))
    val_bs = cfg.eval.batch_size or micro
    cache: dict[int | None, SequentialLoader] = {}  # building one lists every window: do it once

    def val_batches(max_batches: int | None) -> Any:
        if max_batches not in cache:
            cache[max_batches] = SequentialLoader(
                data_dir, split="val", batch_size=val_bs, context_length=ctx, rank=info.rank,
                world_size=info.world_size, device=str(info.device), max_batches=max_batches)
        return cache[max_batches]

    return train, val_batches
