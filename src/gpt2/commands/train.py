"""`gpt2 train`: a training run from config sections (each an option group: `--optim.lr 3e-4`,
or `optim: {lr: 3e-4}` in the YAML/TOML file given with `--config`)."""

from __future__ import annotations

import sys

from gpt2.training.config import (
    CheckpointSection,
    DataSection,
    EvalSection,
    ModelSection,
    OptimSection,
    RunConfig,
    SystemSection,
    TrainSection,
)


def train(model: ModelSection, data: DataSection, optim: OptimSection, train: TrainSection,
          eval: EvalSection, checkpoint: CheckpointSection, system: SystemSection,
          resume: bool = False, overwrite: bool = False, allow_changes: bool = False) -> None:
    """Train a GPT-2 on token shards made by `gpt2 prepare`.

    Example: gpt2 train --config configs/shakespeare_cpu.yaml --optim.lr 3e-4.
    Run under `torchrun --nproc_per_node=N -m gpt2 train ...` for data-parallel training.

    Args:
        resume: Continue the run in --train.out_dir from its latest/ checkpoint (give `--resume true`).
        overwrite: Start a new run in a --train.out_dir that holds one; the old run is kept aside until
            the new one's first checkpoint exists, then deleted.
        allow_changes: With --resume, accept settings that differ from the saved run's and change its
            result (a different learning rate, max_steps, batch, ...); they are listed either way.
    """
    # Imported here, not at the top, so that --help does not import torch (see commands/__init__.py).
    from gpt2.training.distributed import process_group
    from gpt2.training.engine import TrainingInterruptedError
    from gpt2.training.launch import build_trainer

    cfg = RunConfig(model, data, optim, train, eval, checkpoint, system)
    trainer = build_trainer(cfg, resume=resume, allow_changes=allow_changes, overwrite=overwrite)
    with process_group(trainer.info), trainer.checkpoints:  # the run folder is released at the end
        if resume and trainer.progress.step >= train.max_steps:
            print(f"gpt2: the run in {train.out_dir} already finished at step {trainer.progress.step}; "
                  "nothing to do (raise --train.max_steps to train further)", file=sys.stderr)
            return
        try:
            summary = trainer.fit()
        except TrainingInterruptedError as stop:
            if trainer.info.is_main:
                print(f"gpt2: {stop}", file=sys.stderr)
            sys.exit(130)
    if trainer.info.is_main:
        print_summary(summary)


def print_summary(summary: dict) -> None:
    """The end-of-run report: where things are and how good the model got."""
    print("\n== training summary ==")
    labels = [("steps", "steps"), ("tokens_seen", "tokens seen"), ("wall_seconds", "wall time (s)"),
              ("best_val_loss", "best val loss (subset)"), ("final_val_loss", "val loss (whole split)"),
              ("final_val_perplexity", "val perplexity"),
              ("final_val_bits_per_byte", "val bits per byte"), ("checkpoint", "checkpoint"),
              ("best_checkpoint", "best checkpoint"), ("metrics", "metrics"), ("plot", "loss plot")]
    for key, label in labels:
        if key in summary:
            value = summary[key]
            text = f"{value:,.4f}" if isinstance(value, float) else (f"{value:,}" if isinstance(value, int)
                                                                       else str(value))
            print(f"{label:>24}: {text}")
