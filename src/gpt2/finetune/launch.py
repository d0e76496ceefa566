"""From a FinetuneConfig to a ready Trainer: the same engine, checkpoints and resume as
`gpt2 train` (training/launch.py), over examples instead of token shards.

What differs is only what goes in: the model (a loaded GPT-2, maybe with a class head,
maybe frozen but for LoRA adapters or its last block), the batches (examples.py) and how a
checkpoint is written (saved.py: adapters only under LoRA). A resume rebuilds the model as
the run built it, loads the trained weights from <out_dir>/latest and continues bit for bit.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import torch

from gpt2.checkpoint import recover_interrupted_save
from gpt2.errors import GPT2Error
from gpt2.finetune.classifier import GPT2Classifier, set_trainable
from gpt2.finetune.data import Examples, load_examples
from gpt2.finetune.examples import ExampleBatches, val_batches
from gpt2.finetune.lora import add_lora
from gpt2.finetune.options import FinetuneConfig
from gpt2.finetune.saved import checkpoint_writer, finetune_info, read_info, restore_weights
from gpt2.runtime.resolve import resolve_runtime
from gpt2.tokenizers import Tokenizer, find_tokenizer
from gpt2.training.checkpointing import LATEST, load_resume_state
from gpt2.training.distributed import dist_info_from_env, init_distributed, launched_by_torchrun
from gpt2.training.engine import Trainer
from gpt2.training.fit_data import capped_steps
from gpt2.training.launch import build_model, trainer_in_its_folder
from gpt2.training.plan import model_config
from gpt2.training.resume import check_changes, keep_saved_seed, saved_choices, saved_config
from gpt2.training.run_folder import check_out_dir


def build_finetuner(cfg: FinetuneConfig, resume: bool = False, allow_changes: bool = False,
                    overwrite: bool = False) -> Trainer:
    """Check the settings and the data, build every piece, and restore the run when resuming."""
    source, out = cfg.model.init, Path(cfg.train.out_dir)
    if cfg.system.parallel != "ddp":  # its sharded checkpoints would not hold adapters or a head
        raise GPT2Error(f"--system.parallel {cfg.system.parallel}: fine-tuning runs on one process or "
                        "under DDP; use --system.parallel ddp")
    tokenizer = _tokenizer(source)
    ckpt = out / LATEST
    if resume:
        recover_interrupted_save(ckpt)
        if not ckpt.is_dir():
            raise GPT2Error(f"--resume: no checkpoint at {ckpt}; run without --resume to start the run")
    else:
        check_out_dir(out, overwrite)
    saved_classes = (read_info(ckpt) or {}).get("classes") if resume else None
    model_cfg = model_config(cfg, source, tokenizer)
    examples = load_examples(cfg.task.name, cfg.data, tokenizer, model_cfg.context_length,
                             cfg.train.context_length, saved_classes)
    cfg, notes = _fit(cfg, examples)
    kept = None  # what `auto` chose when the run started, reused by a resume
    if resume:
        saved = saved_config(ckpt)
        changes = check_changes(cfg, saved, allow_changes)
        cfg = keep_saved_seed(cfg, saved)
        kept = saved_choices(saved)
        notes += [f"changed for this resume: {'; '.join(changes)}"] if changes else []
    single = not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1
    world = int(os.environ.get("WORLD_SIZE", 1))
    micro = cfg.train.batch_size // (world * cfg.train.grad_accum_steps)
    if micro < 1 or cfg.train.batch_size % (world * cfg.train.grad_accum_steps):
        raise GPT2Error(f"--train.batch_size {cfg.train.batch_size} is not divisible by processes ({world}) "
                        f"x --train.grad_accum_steps ({cfg.train.grad_accum_steps})")
    runtime = resolve_runtime(cfg.system, model_cfg, "train", micro, examples.width, probe=single,
                              verbose=int(os.environ.get("RANK", 0)) == 0, attention=cfg.model.attention,
                              kept=kept)
    if runtime.attention is not None:
        model_cfg = dataclasses.replace(model_cfg, attention=runtime.attention)
    info = dist_info_from_env(runtime.device)
    init_distributed(info)
    torch.manual_seed(cfg.train.seed)  # the same head and adapters on every process
    model = prepare_model(cfg, build_model(model_cfg, source, info.device), examples.classes)
    torch.manual_seed(cfg.train.seed + info.rank)
    where = (info.rank, info.world_size, str(info.device))
    train = ExampleBatches(*examples.train, micro, cfg.train.seed, *where)
    val = val_batches(*examples.val, cfg.eval.batch_size or micro, *where)
    lora = dataclasses.asdict(cfg.lora) if cfg.lora.rank else None
    state = None
    if resume:
        restore_weights(model, ckpt, read_info(ckpt) or {"lora": lora})
        state = load_resume_state(ckpt)
    header = run_header(cfg, model, examples)
    if info.is_main:
        for note in notes + examples.notes:
            print(f"gpt2: note: {note}", file=sys.stderr)
        print("gpt2: " + describe_header(header), file=sys.stderr)
    writer = checkpoint_writer(finetune_info(cfg.task.name, source, examples.classes, lora))
    return trainer_in_its_folder(cfg, model, train, val, tokenizer, info, runtime.dtype, examples.width,
                                 overwrite=overwrite, state=state, header=header, writer=writer,
                                 record={"runtime": runtime.record()}, text=cfg.task.name == "chat")


def _tokenizer(source: str) -> Tokenizer:
    if source == "scratch" or not Path(source).is_dir():
        raise GPT2Error(f"--model.init {source}: fine-tuning starts from a model; give one of our checkpoint "
                        "directories or a local Hugging Face GPT-2 directory")
    if (read_info(source) or {}).get("lora"):
        raise GPT2Error(f"--model.init {source}: holds LoRA adapters only; make a full checkpoint first with "
                        f"`gpt2 merge --checkpoint {source} --out DIR`")
    tokenizer = find_tokenizer(source)
    if tokenizer is None:
        raise GPT2Error(f"--model.init {source}: holds no tokenizer, so its examples cannot be encoded")
    return tokenizer


def _fit(cfg: FinetuneConfig, examples: Examples) -> tuple[FinetuneConfig, list[str]]:
    """max_steps capped by max_passes over the training examples; the sample prompt for chat."""
    t, notes = cfg.train, []
    steps = capped_steps(t.max_steps, t.max_passes, len(examples.train[0]), t.batch_size)
    if steps != t.max_steps:
        notes.append(f"--train.max_steps lowered from {t.max_steps} to {steps}: --train.max_passes "
                     f"{t.max_passes:g} over {len(examples.train[0]):,} examples")
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(t, max_steps=steps))
    if cfg.eval.prompt is None and examples.first_val is not None:
        from gpt2.chat_template import render

        turns = examples.first_val
        first = next(i for i, m in enumerate(turns) if m["role"] == "assistant")
        if first:  # the conversation up to its first answer, ending in "Assistant:"
            cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, prompt=render(turns[:first])))
    return cfg, notes


def prepare_model(cfg: FinetuneConfig, model: torch.nn.Module, classes: list[str] | None) -> torch.nn.Module:
    """The model to train: a class head for classify; LoRA adapters, or the --trainable weights."""
    if cfg.task.name == "classify":
        model = GPT2Classifier(model, classes or []).to(model.device)
    if cfg.lora.rank:
        add_lora(model, cfg.lora.rank, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.targets)
    else:
        set_trainable(model, cfg.task.trainable)
    return model.train()


def run_header(cfg: FinetuneConfig, model: torch.nn.Module, examples: Examples) -> dict[str, Any]:
    """The facts a person wants before the run starts (also the first metrics row)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"task": cfg.task.name, "parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": trainable, "train_examples": len(examples.train[0]),
            "val_examples": len(examples.val[0]), "width": examples.width, "classes": examples.classes,
            "train_targets": int((examples.train[1] != -100).sum())}


def describe_header(h: dict[str, Any]) -> str:
    classes = f", classes {', '.join(h['classes'])}" if h["classes"] else ""
    return (f"{h['task']}: {h['trainable_parameters']:,} of {h['parameters']:,} parameters trained; "
            f"{h['train_examples']:,} train / {h['val_examples']:,} val examples of {h['width']} tokens, "
            f"{h['train_targets']:,} target tokens per pass{classes}")
