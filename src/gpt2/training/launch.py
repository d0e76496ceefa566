"""From a RunConfig to a ready Trainer: device, processes, data, tokenizer, model, resume.

Every inconsistency we can see before training starts is raised here as a GPT2Error
with one line that names the setting and what to do, so a run never fails an hour in
for a reason that was visible at step 0.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import torch

from gpt2.checkpoint import read_config, recover_interrupted_save
from gpt2.config import GPT2Config
from gpt2.data.loaders import RandomWindowLoader, SequentialLoader
from gpt2.data.shards import open_data, read_meta, verify_shards
from gpt2.errors import GPT2Error
from gpt2.gpt_model import GPT2
from gpt2.runtime.resolve import resolve_runtime
from gpt2.tokenizers import Tokenizer, find_tokenizer, same_ids
from gpt2.training.checkpointing import LATEST, check_out_dir, claim_out_dir, load_resume_state
from gpt2.training.config import MODEL_FIELDS, RunConfig
from gpt2.training.distributed import DistInfo, dist_info_from_env, init_distributed, launched_by_torchrun
from gpt2.training.engine import Trainer
from gpt2.training.fit_data import fit_to_data
from gpt2.training.resume import check_changes, keep_saved_seed, saved_choices, saved_config


def build_trainer(cfg: RunConfig, resume: bool = False, allow_changes: bool = False,
                  overwrite: bool = False) -> Trainer:
    """Check the settings, build every piece, and restore the run's state when resuming."""
    data_dir, tokenizer = _open_data(cfg.data.dir)
    ckpt = Path(cfg.train.out_dir) / LATEST
    source = str(ckpt) if resume else cfg.model.init
    if not resume:
        check_out_dir(Path(cfg.train.out_dir), overwrite)  # before any work
    if resume:
        recover_interrupted_save(ckpt)  # a save that died between its two renames
        if not ckpt.is_dir():
            raise GPT2Error(f"--resume: no checkpoint at {ckpt}; run without --resume to start the run")
    window = cfg.train.context_length or model_config(cfg, source, tokenizer).context_length  # decided once
    cfg, fitted = fit_to_data(cfg, data_dir, tokenizer, window)  # before a resume compares settings
    kept = None  # what `auto` chose when the run started, reused by a resume
    if resume:
        saved = saved_config(ckpt)
        notes = check_changes(cfg, saved, allow_changes)
        cfg = keep_saved_seed(cfg, saved)
        kept = saved_choices(saved)
        if notes and int(os.environ.get("RANK", 0)) == 0:
            print(f"gpt2: note: changed for this resume: {'; '.join(notes)}", file=sys.stderr)
    model_cfg = model_config(cfg, source, tokenizer)
    single = not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1
    micro = cfg.train.batch_size // (int(os.environ.get("WORLD_SIZE", 1)) * cfg.train.grad_accum_steps)
    runtime = resolve_runtime(cfg.system, model_cfg, "train", max(1, micro), window, probe=single,
                              verbose=int(os.environ.get("RANK", 0)) == 0, attention=cfg.model.attention,
                              kept=kept)
    if runtime.attention is not None:  # asked for, or auto picked the faster kernel
        model_cfg = dataclasses.replace(model_cfg, attention=runtime.attention)
    info = dist_info_from_env(runtime.device)
    check_settings(cfg, info, model_cfg, tokenizer, source, window)
    init_distributed(info)  # only now wait for the other processes
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every process
    model = build_model(model_cfg, source, info.device)
    torch.manual_seed(cfg.train.seed + info.rank)  # dropout differs between processes
    train_batches, val_batches = make_loaders(cfg, data_dir, info, window)
    trainer = Trainer(cfg, model, train_batches, val_batches, tokenizer, info, runtime.dtype, window)
    trainer.checkpoints.run_config["runtime"] = runtime.record()  # train_config.json says how it ran
    trainer.header = {**run_header(cfg, model, data_dir, train_batches.n_tokens, window), "notes": fitted}
    if not resume and info.is_main:  # never replace another run without being asked
        out = Path(cfg.train.out_dir)
        trainer.checkpoints.replaced = claim_out_dir(out, overwrite)
        trainer.checkpoints.fresh = not out.exists()
    if info.is_main:
        for note in fitted:
            print(f"gpt2: note: {note}", file=sys.stderr)
    if info.is_main and cfg.system.progress:  # shown with the progress bar; always in metrics.jsonl
        print("gpt2: " + describe_header(trainer.header), file=sys.stderr)
    if resume:
        trainer.restore(load_resume_state(ckpt))
        if info.is_main:
            print(f"gpt2: resumed from {ckpt} at step {trainer.progress.step} of {cfg.train.max_steps}",
                  file=sys.stderr)
    return trainer


def run_header(cfg: RunConfig, model: GPT2, data_dir: Path, train_tokens: int, window: int) -> dict[str, Any]:
    """The facts a person wants before a run starts (also logged as the first metrics row)."""
    per_step = cfg.train.batch_size * window
    return {"parameters": model.num_parameters(), "train_tokens": train_tokens,
            "val_tokens": read_meta(data_dir)["splits"]["val"]["tokens"], "tokens_per_step": per_step,
            "planned_tokens": per_step * cfg.train.max_steps,
            "passes": per_step * cfg.train.max_steps / max(1, train_tokens), "eval_prompt": cfg.eval.prompt}


def describe_header(h: dict[str, Any]) -> str:
    """The header as one line of text."""
    return (f"{h['parameters'] / 1e6:.2f}M parameters; data {h['train_tokens']:,} train / "
            f"{h['val_tokens']:,} val tokens; {h['planned_tokens']:,} tokens planned "
            f"({h['tokens_per_step']:,} per step) = {h['passes']:.2f} passes over the train split; "
            f"samples start from {h['eval_prompt']!r}")


def _open_data(data_dir: str) -> tuple[Path, Tokenizer]:
    """The data folder and its tokenizer, every shard verified against its sha256."""
    try:
        opened = open_data(data_dir)
        verify_shards(data_dir)
        return opened
    except GPT2Error as err:
        raise GPT2Error(f"--data.dir {err}") from None


def model_config(cfg: RunConfig, source: str, tokenizer: Tokenizer) -> GPT2Config:
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
        raise GPT2Error(f"--model.init {source}: no such directory; use 'scratch' or a checkpoint")
    base = read_config(source)
    runtime = {f: overrides.pop(f) for f in ("drop_rate", "attention") if f in overrides}
    clash = [f for f, v in overrides.items() if v != getattr(base, f)]
    if clash:
        given = ", ".join(f"--model.{f} {overrides[f]}" for f in clash)
        has = ", ".join(f"{f} {getattr(base, f)}" for f in clash)
        raise GPT2Error(f"{given} cannot change the model loaded from {source} (it has {has}); drop the "
                         "option (shorter training windows: --train.context_length)")
    return dataclasses.replace(base, **runtime)


def check_settings(cfg: RunConfig, info: DistInfo, model_cfg: GPT2Config, tokenizer: Tokenizer,
                   source: str, window: int) -> None:
    """Refuse settings that cannot work together, before any weights are built. (Each section
    has already checked its own values when it was built.)"""
    t = cfg.train
    if window > model_cfg.context_length:
        fix = ("leave it unset (it defaults to the loaded model's)" if source != "scratch"
               else "give the model more positions (--model.context_length)")
        raise GPT2Error(f"--train.context_length {window} is longer than the model's context_length "
                        f"{model_cfg.context_length}; lower it or {fix}")
    if tokenizer.vocab_size > model_cfg.vocab_size:
        raise GPT2Error(f"the data's tokenizer has {tokenizer.vocab_size} ids but the model's vocabulary has "
                        f"{model_cfg.vocab_size}; use data prepared with the model's tokenizer")
    theirs = find_tokenizer(source) if source != "scratch" else None
    if theirs is not None and not same_ids(theirs.identity(), tokenizer.identity()):
        raise GPT2Error(f"{source}: its tokenizer differs from the one the shards in --data.dir "
                        f"{cfg.data.dir} were made with; prepare the data with `--tokenizer {source}`")
    per_step = info.world_size * t.grad_accum_steps
    if t.batch_size % per_step:
        raise GPT2Error(f"--train.batch_size {t.batch_size} is not divisible by processes "
                        f"({info.world_size}) x --train.grad_accum_steps ({t.grad_accum_steps}); "
                        f"choose a multiple of {per_step}")
    if cfg.eval.sample_tokens > 0:
        try:
            ids = tokenizer.encode(cfg.eval.prompt)
        except ValueError as err:  # e.g. a character the char tokenizer has never seen
            raise GPT2Error(f"--eval.prompt {cfg.eval.prompt!r} cannot be encoded: {err}") from None
        if len(ids) > model_cfg.context_length:
            raise GPT2Error(f"--eval.prompt is {len(ids)} tokens, longer than the model's context "
                            f"{model_cfg.context_length}; shorten it")


def build_model(model_cfg: GPT2Config, source: str, device: torch.device) -> GPT2:
    """Fresh weights of `model_cfg`, or the weights of a checkpoint / Hugging Face directory
    run with `model_cfg`'s dropout and attention path (all `model_config` lets differ)."""
    if source == "scratch":
        return GPT2(model_cfg).to(device)
    model = GPT2.from_pretrained(source, device=device)
    if model.cfg != model_cfg:  # e.g. a different dropout for fine-tuning
        model.set_runtime_options(model_cfg)
    return model.train()


def make_loaders(cfg: RunConfig, data_dir: Path, info: DistInfo, window: int) -> tuple[Any, Any]:
    """Random training windows (this process's rows of each global batch) and a sequential,
    exact pass over the validation split."""
    t = cfg.train
    micro = t.batch_size // (info.world_size * t.grad_accum_steps)
    train = RandomWindowLoader(data_dir, split="train", batch_size=micro, context_length=window, seed=t.seed,
                               rank=info.rank, world_size=info.world_size, device=str(info.device))
    val_bs = cfg.eval.batch_size or micro
    cache: dict[int | None, SequentialLoader] = {}  # building one lists every window: do it once

    def val_batches(max_batches: int | None) -> Any:
        if max_batches not in cache:
            cache[max_batches] = SequentialLoader(
                data_dir, split="val", batch_size=val_bs, context_length=window, rank=info.rank,
                world_size=info.world_size, device=str(info.device), max_batches=max_batches)
        return cache[max_batches]

    return train, val_batches
