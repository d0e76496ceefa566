"""Typed settings of a training run, one dataclass per section.

`gpt2 train` derives its command line and YAML/TOML config-file format from these
classes (through jsonargparse), so `--optim.lr 3e-4` and `optim: {lr: 3e-4}` in a config
file mean the same thing, and `gpt2 train --help` lists every field with its comment.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class ModelSection:
    """Which model to train.

    Args:
        init: 'scratch' for fresh weights, or a directory to start from: one of our
            checkpoints, or a local Hugging Face GPT-2 directory (fine-tuning).
        preset: Model shape when init is 'scratch': gpt2, gpt2-medium, gpt2-large, gpt2-xl,
            char-tiny, cpu-small, cpu-10m. The fields below override it.
        vocab_size: Vocabulary size; default: the data's tokenizer's.
        context_length: Positions the model knows (size of the position embedding).
        emb_dim: Width of the residual stream.
        n_heads: Attention heads.
        n_layers: Transformer blocks.
        drop_rate: Dropout probability (also applied when fine-tuning a loaded model).
        bias: Biases in Linear and LayerNorm layers.
        attention: 'sdpa' (fused kernel) or 'explicit' (readable reference).
    """

    init: str = "scratch"
    preset: str = "cpu-small"
    vocab_size: int | None = None
    context_length: int | None = None
    emb_dim: int | None = None
    n_heads: int | None = None
    n_layers: int | None = None
    drop_rate: float | None = None
    bias: bool | None = None
    attention: Literal["sdpa", "explicit"] | None = None


@dataclass
class DataSection:
    """Where the tokens come from.

    Args:
        dir: A folder written by `gpt2 prepare` (token shards, meta.json, tokenizer/).
    """

    dir: str = "data/shakespeare"


@dataclass
class OptimSection:
    """AdamW and the learning-rate schedule (linear warmup, then cosine decay).

    Args:
        lr: Peak learning rate, reached at the end of warmup.
        min_lr: Learning rate the cosine reaches at max_steps (just after the last step); default lr / 10.
        warmup_steps: Optimizer steps of linear warmup.
        weight_decay: Decoupled weight decay on Linear and embedding weights only.
        beta1: Adam's first-moment decay.
        beta2: Adam's second-moment decay.
        eps: Adam's denominator epsilon.
        grad_clip: Clip the global gradient norm to this value; 0 disables clipping.
        impl: AdamW kernel: auto (fused where supported, else foreach), fused, foreach, loop.
    """

    lr: float = 6e-4
    min_lr: float | None = None
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    impl: Literal["auto", "fused", "foreach", "loop"] = "auto"


@dataclass
class TrainSection:
    """Length and batch shape of the run.

    Args:
        max_steps: Optimizer steps in the whole run (the cosine schedule ends here).
        batch_size: Sequences per optimizer step, summed over all processes and
            accumulation micro-steps (the global batch).
        grad_accum_steps: Micro-steps whose gradients are summed before each optimizer
            step; each process sees batch_size / (processes * grad_accum_steps) sequences.
        context_length: Tokens per training sequence; default the model's context length.
        seed: Seed of weights, data order and dropout; a CPU run with the same seed repeats exactly.
        out_dir: Run folder: checkpoints (latest/, best/), metrics.jsonl, loss.png.
        max_seconds: Stop (and save) after this many seconds of training; 0 = no limit.
        stop_after_steps: Stop (and save) after this many steps of this invocation, keeping the
            schedule of max_steps, so a long run can be split across job slots with --resume; 0 = off.
        log_interval: Write train loss to metrics.jsonl every this many steps.
    """

    max_steps: int = 2000
    batch_size: int = 12
    grad_accum_steps: int = 1
    context_length: int | None = None
    seed: int = 1337
    out_dir: str = "runs/shakespeare"
    max_seconds: float = 0.0
    stop_after_steps: int = 0
    log_interval: int = 10


@dataclass
class EvalSection:
    """Evaluation during and after training.

    Args:
        interval: Evaluate every this many optimizer steps (and at the last step); 0 = only at the end.
        batches: Batches of the fixed validation subset used at each evaluation.
        batch_size: Sequences per validation batch (per process); default the training micro-batch.
        final_full: At the end, compute the loss over the whole validation split.
        prompt: Text the sample at each evaluation starts from.
        sample_tokens: Tokens to sample at each evaluation; 0 disables samples.
        temperature: Sampling temperature of the samples (0 = greedy).
        top_k: Sample only among the k most likely tokens; 0 = all.
    """

    interval: int = 250
    batches: int = 20
    batch_size: int | None = None
    final_full: bool = True
    prompt: str = "\n"
    sample_tokens: int = 100
    temperature: float = 0.8
    top_k: int = 200


@dataclass
class CheckpointSection:
    """Checkpoints in <out_dir>/latest and <out_dir>/best.

    Args:
        interval: Save <out_dir>/latest every this many steps; 0 = at each evaluation.
        keep_best: Also keep <out_dir>/best, the checkpoint with the lowest validation loss.
    """

    interval: int = 0
    keep_best: bool = True


@dataclass
class SystemSection:
    """Hardware and numerics.

    Args:
        device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps.
        dtype: float32, or autocast in bf16 (CPU and CUDA) or fp16 (CUDA, with a GradScaler).
        compile: Compile the model with torch.compile (slower start, faster steps).
        threads: CPU threads for torch; 0 = torch's default.
        progress: Show a progress bar (rank 0 only).
    """

    device: str = "auto"
    dtype: Literal["float32", "bf16", "fp16"] = "float32"
    compile: bool = False
    threads: int = 0
    progress: bool = True


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
