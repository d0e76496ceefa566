"""`gpt2 train` and `gpt2 eval`: typed functions that jsonargparse turns into commands.

The sections of `train` are the dataclasses of gpt2.training.config, so every field is
an option (`--optim.lr 3e-4`) and a key of the YAML/TOML file given with `--config`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonargparse
import yaml

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

CONFIG_MODE = "yaml_or_toml"  # the parser mode of the `gpt2` command: config files in YAML or TOML


def yaml_or_toml_load(text: str) -> Any:
    """Read a config file (or a command-line value) written in TOML or YAML.

    jsonargparse reads both config files and option values through this one function.
    A TOML document ([section] tables, key = value lines) is tried only for multi-line
    text, so a single value such as `--eval.prompt "a = b"` stays a string; everything
    else is YAML, parsed by jsonargparse's own YAML loader.
    """
    if "\n" in text:
        try:
            import tomllib  # Python >= 3.11
        except ImportError:  # pragma: no cover - Python 3.10 reads YAML only
            tomllib = None
        if tomllib is not None:
            try:
                return tomllib.loads(text)
            except tomllib.TOMLDecodeError:
                pass  # not TOML: YAML
    return jsonargparse.get_loader("yaml")(text)


jsonargparse.set_loader(CONFIG_MODE, yaml_or_toml_load, exceptions=(yaml.YAMLError,))


def train(model: ModelSection, data: DataSection, optim: OptimSection, train: TrainSection,
          eval: EvalSection, checkpoint: CheckpointSection, system: SystemSection,
          resume: bool = False) -> None:
    """Train a GPT-2 on token shards made by `gpt2 prepare`.

    Example: gpt2 train --config configs/shakespeare_cpu.yaml --optim.lr 3e-4.
    Run under `torchrun --nproc_per_node=N -m gpt2 train ...` for data-parallel training.

    Args:
        resume: Continue the run in --train.out_dir from its latest/ checkpoint (give `--resume true`).
    """
    from gpt2.training.engine import TrainingInterruptedError
    from gpt2.training.launch import build_trainer

    cfg = RunConfig(model, data, optim, train, eval, checkpoint, system)
    from gpt2.training.distributed import process_group

    trainer = build_trainer(cfg, resume=resume)
    with process_group(trainer.info):
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
              ("final_val_perplexity", "val perplexity"), ("checkpoint", "checkpoint"),
              ("best_checkpoint", "best checkpoint"), ("metrics", "metrics"), ("plot", "loss plot")]
    for key, label in labels:
        if key in summary:
            value = summary[key]
            text = f"{value:,.4f}" if isinstance(value, float) else (f"{value:,}" if isinstance(value, int)
                                                                       else str(value))
            print(f"{label:>24}: {text}")


def evaluate(checkpoint: str, data: str, split: str = "val", batch_size: int = 8,
             context_length: int | None = None, device: str = "auto", dtype: str = "float32",
             json_output: bool = False) -> None:
    """Loss and perplexity of a checkpoint on a text file or a `gpt2 prepare` folder.

    Args:
        checkpoint: A checkpoint directory (ours, or a Hugging Face GPT-2 directory with a tokenizer).
        data: A text file (encoded with the checkpoint's tokenizer) or a folder of token shards.
        split: Which split of a shard folder: val or train.
        batch_size: Windows per forward pass.
        context_length: Tokens per window; default the model's context length.
        device: auto, cpu, cuda, cuda:N, mps.
        dtype: float32, bf16 or fp16 (autocast).
        json_output: Print one JSON object instead of text.
    """
    from gpt2.training.evaluation import evaluate_checkpoint

    result = evaluate_checkpoint(Path(checkpoint), Path(data), split, batch_size, context_length,
                                 device, dtype)
    if json_output:
        print(json.dumps(result))
    else:
        print(f"loss {result['loss']:.4f}  perplexity {result['perplexity']:.3f}  "
              f"({result['tokens']:,} tokens of {data})")
