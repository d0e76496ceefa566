"""Typed settings of a training run, one dataclass per section.

`gpt2 train` derives its command line and YAML/TOML config-file format from these
classes (through jsonargparse), so `--optim.lr 3e-4` and `optim: {lr: 3e-4}` in a config
file mean the same thing, and `gpt2 train --help` lists every field with its help.
Each section checks its own values when it is built, before any work starts. This module
imports no torch (nor anything that does), so `gpt2 train --help` is quick.

The defaults are a recipe for your own text on a CPU in a few minutes (the same as
configs/own_text_cpu.yaml, less its tuned minimum learning rate): a 4-layer, 128-wide model,
Muon, 1,100 steps of 12 x 128 tokens, at most 10 passes over the data. GPT-2's own recipe
(AdamW at 6e-4, beta2 0.95, the 124M model) is configs/gpt2_124m.yaml.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import docstring_parser

from gpt2.config import GPT2Config, PresetName
from gpt2.errors import GPT2Error
from gpt2.generation.options import SamplingOptions
from gpt2.limits import check_numbers, check_seed
from gpt2.runtime.options import DeviceOptions


def _positive(section: str, **values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise GPT2Error(f"--{section}.{name} must be positive, got {value}")


def _not_negative(section: str, **values: float) -> None:
    for name, value in values.items():
        if value < 0:
            raise GPT2Error(f"--{section}.{name} must be >= 0, got {value}")


def _model_section() -> type:
    """ModelSection: `init` and `preset`, then every GPT2Config field as an optional override
    (None = the preset's or the loaded model's value), so the model's fields exist once."""
    hints = typing.get_type_hints(GPT2Config)
    overrides = [(f.name, hints[f.name] | None, None) for f in dataclasses.fields(GPT2Config)]
    fields = docstring_parser.parse_from_object(GPT2Config).params  # the attribute docstrings
    help_lines = "".join(f"        {f.arg_name}: {' '.join((f.description or '').split())}\n" for f in fields)
    doc = f"""Which model to train.

    Args:
        init: 'scratch' for fresh weights, or a directory to start from: one of our
            checkpoints, or a local Hugging Face GPT-2 directory (fine-tuning).
        preset: Model shape when init is 'scratch' (see gpt2.config.PRESETS); the fields below
            override it. vocab_size defaults to the data's tokenizer's; a loaded model takes only
            drop_rate and attention (neither changes a weight).
{help_lines}"""
    section = dataclasses.make_dataclass(
        "ModelSection", [("init", str, "scratch"), ("preset", PresetName, "cpu-tiny"), *overrides])
    section.__doc__, section.__module__ = doc, __name__
    return section


ModelSection = _model_section()
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(GPT2Config))


@dataclass
class DataSection:
    """Where the tokens come from."""

    dir: str = "data/shakespeare"
    """A folder written by `gpt2 prepare` (token shards, meta.json, tokenizer/)."""


@dataclass
class OptimSection:
    """The optimizer and the learning-rate schedule (linear warmup, then cosine decay)."""

    name: Literal["adamw", "muon"] = "muon"
    """adamw (GPT-2's optimizer), or muon: Muon for the matrices inside the transformer blocks
    and AdamW for the rest; reaches a given loss in far fewer steps on small models."""
    lr: float = 4e-3
    """Peak learning rate (of AdamW's parameters), reached at the end of warmup."""
    muon_lr: float = 0.032
    """Peak learning rate of the Muon matrices (name muon); follows the same schedule."""
    momentum: float = 0.95
    """Muon's Nesterov momentum (name muon)."""
    min_lr: float | None = None
    """Learning rate the cosine reaches at max_steps (just after the last step); default lr / 10."""
    warmup_steps: int = 50
    """Optimizer steps of linear warmup."""
    weight_decay: float = 0.1
    """Decoupled weight decay on Linear and embedding weights only."""
    beta1: float = 0.9
    """Adam's first-moment decay."""
    beta2: float = 0.99
    """Adam's second-moment decay."""
    eps: float = 1e-8
    """Adam's denominator epsilon."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping."""
    impl: Literal["auto", "fused", "foreach", "loop"] = "auto"
    """AdamW kernel (name adamw): auto (fused where supported, else foreach), fused, foreach, loop."""

    def __post_init__(self) -> None:
        check_numbers(self, "--optim.")
        _positive("optim", lr=self.lr, eps=self.eps, muon_lr=self.muon_lr)
        if self.min_lr is not None and self.min_lr > self.lr:
            raise GPT2Error(f"--optim.min_lr {self.min_lr} is above --optim.lr {self.lr}, so the learning "
                            "rate would rise while it should decay; lower it (default lr / 10)")
        _not_negative("optim", warmup_steps=self.warmup_steps, weight_decay=self.weight_decay,
                      grad_clip=self.grad_clip, min_lr=self.min_lr or 0.0)
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and 0 <= self.momentum < 1):
            raise GPT2Error(f"--optim.beta1, --optim.beta2 and --optim.momentum must be in [0, 1), "
                            f"got {self.beta1}, {self.beta2}, {self.momentum}")


@dataclass
class TrainSection:
    """Length and batch shape of the run."""

    max_steps: int = 1100
    """Optimizer steps in the whole run (the cosine schedule ends here)."""
    max_passes: float = 10.0
    """Passes over the train split the run may make at most: a longer max_steps is lowered to fit
    (and the run header says so), so a small corpus is not repeated hundreds of times by
    accident; 0 = no cap."""
    batch_size: int = 12
    """Sequences per optimizer step, summed over all processes and accumulation micro-steps (the
    global batch)."""
    grad_accum_steps: int = 1
    """Micro-steps whose gradients are summed before each optimizer step; each process sees
    batch_size / (processes * grad_accum_steps) sequences."""
    context_length: int | None = None
    """Tokens per training sequence; default the model's context length."""
    seed: int = 1337
    """Seed of weights, data order and dropout; a CPU run with the same seed repeats exactly."""
    out_dir: str = "runs/run"
    """Run folder: checkpoints (latest/, best/), metrics.jsonl, loss.png."""
    max_seconds: float = 0.0
    """Stop (and save) after this many seconds of training; 0 = no limit."""
    stop_after_steps: int = 0
    """Stop (and save) after this many steps of this invocation, keeping the schedule of
    max_steps, so a long run can be split across job slots with --resume; 0 = off."""
    log_interval: int = 10
    """Write train loss to metrics.jsonl every this many steps."""

    def __post_init__(self) -> None:
        check_seed("--train.seed", self.seed)
        check_numbers(self, "--train.")
        if not str(self.out_dir).strip():
            raise GPT2Error("--train.out_dir is empty; name the run folder, e.g. runs/run")
        _positive("train", max_steps=self.max_steps, batch_size=self.batch_size,
                  grad_accum_steps=self.grad_accum_steps, log_interval=self.log_interval,
                  context_length=1 if self.context_length is None else self.context_length)
        _not_negative("train", max_seconds=self.max_seconds, stop_after_steps=self.stop_after_steps,
                      max_passes=self.max_passes)


@dataclass
class EvalSection:
    """Evaluation during and after training."""

    interval: int = 250
    """Evaluate every this many optimizer steps (and at the last step); 0 = only at the end."""
    batches: int = 20
    """Batches of the fixed validation subset used at each evaluation."""
    batch_size: int | None = None
    """Sequences per validation batch (per process); default the training micro-batch."""
    final_full: bool = True
    """At the end, compute the loss over the whole validation split."""
    prompt: str | None = None
    """Text the sample at each evaluation starts from; default (null) the start of a line of the
    validation split, so it is always text the data's tokenizer knows."""
    sample_tokens: int = 100
    """Tokens to sample at each evaluation; 0 disables samples."""
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    """How the samples are drawn (temperature, top_k, top_p, repetition_penalty)."""

    def __post_init__(self) -> None:
        check_numbers(self, "--eval.")
        _positive("eval", batches=self.batches, batch_size=1 if self.batch_size is None else self.batch_size)
        _not_negative("eval", interval=self.interval, sample_tokens=self.sample_tokens)


@dataclass
class CheckpointSection:
    """Checkpoints in <out_dir>/latest and <out_dir>/best."""

    interval: int = 0
    """Save <out_dir>/latest every this many steps; 0 = at each evaluation."""
    keep_best: bool = True
    """Also keep <out_dir>/best, the checkpoint with the lowest validation loss."""

    def __post_init__(self) -> None:
        check_numbers(self, "--checkpoint.")
        _not_negative("checkpoint", interval=self.interval)


@dataclass(frozen=True)
class SystemSection(DeviceOptions):
    """Hardware and numerics (`device`, `dtype` and `threads` as every command has them)."""

    compile: bool = False
    """Compile the model with torch.compile (slower start, faster steps)."""
    progress: bool = True
    """Show a progress bar (rank 0 only)."""
    parallel: Literal["ddp", "fsdp"] = "ddp"
    """Several processes (torchrun): ddp (each holds the whole model) or fsdp (each holds 1/N of
    weights, gradients and optimizer state; checkpoints add sharded files)."""
    activation_checkpointing: bool = False
    """Recompute each block's activations in backward instead of keeping them (less memory, about
    a third more compute)."""


@dataclass
class RunConfig:
    """Everything that defines a training run; stored in each checkpoint as train_config.json."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    system: SystemSection = field(default_factory=SystemSection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
