"""From a RunConfig to a ready Trainer: `plan.plan_run` decides (and checks) everything once;
`build_trainer` builds what the plan says - processes, model, loaders - and hands every
piece to a Trainer complete when constructed (resumed state, run record, header included).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from gpt2.config import GPT2Config
from gpt2.data.loaders import RandomWindowLoader, SequentialLoader
from gpt2.data.meta import ShardsMeta
from gpt2.gpt_model import GPT2
from gpt2.training.checkpointing import LATEST, load_resume_state
from gpt2.training.config import RunConfig
from gpt2.training.distributed import DistInfo, dist_info_from_env, init_distributed
from gpt2.training.engine import Trainer
from gpt2.training.plan import RunPlan, plan_run, print_notes
from gpt2.training.run_folder import claim_out_dir, lock_run_folder


def build_trainer(cfg: RunConfig, resume: bool = False, allow_changes: bool = False,
                  overwrite: bool = False) -> Trainer:
    """Plan the run (every check before any work), then build it."""
    return build(plan_run(cfg, resume, allow_changes, overwrite))


def build(plan: RunPlan) -> Trainer:
    """The Trainer `plan` describes, its state restored when it resumes."""
    cfg = plan.cfg
    info = dist_info_from_env(plan.runtime.device)
    init_distributed(info)  # only now wait for the other processes
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every process
    model = build_model(plan.model_cfg, "scratch" if plan.start == "scratch" else plan.source, info.device)
    torch.manual_seed(cfg.train.seed + info.rank)  # dropout differs between processes
    train_batches, val_batches = make_loaders(cfg, plan.data_dir, info, plan.window)
    header = run_header(cfg, model, plan.data_dir, train_batches.n_tokens, plan.window)
    header["notes"] = list(plan.notes)
    if info.is_main:
        print_notes(plan)
    if info.is_main and cfg.system.progress:  # shown with the progress bar; always in metrics.jsonl
        print("gpt2: " + describe_header(header), file=sys.stderr)
    state = load_resume_state(Path(plan.source)) if plan.start == "resume" else None
    return trainer_in_its_folder(cfg, model, train_batches, val_batches, plan.tokenizer, info,
                                 plan.runtime.dtype, plan.window, overwrite=plan.overwrite, state=state,
                                 header=header, record={"runtime": plan.runtime.record()})


def trainer_in_its_folder(cfg: Any, model: torch.nn.Module, train_batches: Any, val_batches: Any,
                          tokenizer: Any, info: DistInfo, amp_dtype: torch.dtype, window: int, *,
                          overwrite: bool, state: dict[str, Any] | None, **kwargs: Any) -> Trainer:
    """A Trainer (its arguments as Trainer's) holding its run folder: the main process claims
    cfg.train.out_dir (or, resuming from `state`, locks it) first, and gives it back if the
    Trainer cannot be built (e.g. a saved optimizer state that does not fit). Says where a
    resume continues."""
    out = Path(cfg.train.out_dir)
    folder = None  # one process per run folder; never replace another run without being asked
    if info.is_main:
        folder = lock_run_folder(out) if state is not None else claim_out_dir(out, overwrite)
    try:
        trainer = Trainer(cfg, model, train_batches, val_batches, tokenizer, info, amp_dtype, window,
                          folder=folder, state=state, **kwargs)
    except BaseException:
        if folder is not None:  # (a process ending does so too; a caller that goes on, e.g. a notebook, not)
            folder.undo()
            folder.release()
        raise
    if state is not None and info.is_main:
        print(f"gpt2: resumed from {out / LATEST} at step {trainer.progress.step} of {cfg.train.max_steps}",
              file=sys.stderr)
    return trainer


def run_header(cfg: RunConfig, model: GPT2, data_dir: Path, train_tokens: int, window: int) -> dict[str, Any]:
    """The facts a person wants before a run starts (also logged as the first metrics row)."""
    per_step = cfg.train.batch_size * window
    return {"parameters": model.num_parameters(), "train_tokens": train_tokens,
            "val_tokens": ShardsMeta.read(data_dir).splits["val"].tokens, "tokens_per_step": per_step,
            "planned_tokens": per_step * cfg.train.max_steps,
            "passes": per_step * cfg.train.max_steps / max(1, train_tokens), "eval_prompt": cfg.eval.prompt}


def describe_header(h: dict[str, Any]) -> str:
    """The header as one line of text."""
    return (f"{h['parameters'] / 1e6:.2f}M parameters; data {h['train_tokens']:,} train / "
            f"{h['val_tokens']:,} val tokens; {h['planned_tokens']:,} tokens planned "
            f"({h['tokens_per_step']:,} per step) = {h['passes']:.2f} passes over the train split; "
            f"samples start from {h['eval_prompt']!r}")


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
