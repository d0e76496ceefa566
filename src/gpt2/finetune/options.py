"""Settings of a fine-tuning run: `gpt2 finetune`'s option groups.

The optimizer, length, evaluation, checkpoint and system sections are `gpt2 train`'s (with
defaults for fine-tuning: AdamW at a lower learning rate, fewer steps); what is new is where
the examples come from (`--data.*`), what to train (`--task`, `--trainable`) and LoRA
(`--lora.*`). This module imports no torch, so `gpt2 finetune --help` is quick.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from gpt2.errors import GPT2Error
from gpt2.training.config import (
    CheckpointSection,
    EvalSection,
    ModelSection,
    OptimSection,
    SystemSection,
    TrainSection,
)

Task = Literal["chat", "classify"]
Trainable = Literal["all", "last"]
LORA_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")


@dataclass
class FinetuneDataSection:
    """The examples: a JSONL or CSV file (by its extension), one example per line / row.

    Args:
        train: The training examples. chat: JSONL of {"messages": [{"role", "content"}, ...]} or
            {"instruction", "input", "output"} (Alpaca). classify: CSV with a header, or JSONL, of
            text + label.
        val: Held-out examples in the same format; default: the last val_fraction of train.
        val_fraction: Share of train held out for validation when no val file is given.
        text_field: classify: the column / key holding the text.
        label_field: classify: the column / key holding the label.
    """

    train: str = "data/train.jsonl"
    val: str | None = None
    val_fraction: float = 0.1
    text_field: str = "text"
    label_field: str = "label"

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction < 1:
            raise GPT2Error(f"--data.val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass
class LoRASection:
    """Low-rank adapters (Hu et al., 2021): W x + (alpha / rank) B A x with W frozen.

    Args:
        rank: Rank of the adapters; 0 = no LoRA (train the weights --trainable names).
        alpha: Scale numerator: the update is multiplied by alpha / rank.
        dropout: Dropout on the adapters' input.
        targets: Which linear layers of every block get an adapter: attn.qkv, attn.proj, mlp.fc,
            mlp.proj.
    """

    rank: int = 0
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: ["attn.qkv", "attn.proj"])

    def __post_init__(self) -> None:
        if self.rank < 0 or not 0 <= self.dropout < 1:
            raise GPT2Error(f"--lora.rank must be >= 0 and --lora.dropout in [0, 1), got {self.rank}, "
                            f"{self.dropout}")
        unknown = [t for t in self.targets if t not in LORA_TARGETS]
        if unknown or not self.targets:
            raise GPT2Error(f"--lora.targets {unknown or '[]'}: choose among {', '.join(LORA_TARGETS)}")


@dataclass
class FinetuneOptimSection(OptimSection):
    __doc__ = OptimSection.__doc__
    name: Literal["adamw", "muon"] = "adamw"
    lr: float = 1e-3
    warmup_steps: int = 10
    weight_decay: float = 0.0


@dataclass
class FinetuneTrainSection(TrainSection):
    __doc__ = TrainSection.__doc__
    max_steps: int = 200
    batch_size: int = 8
    out_dir: str = "runs/finetune"


@dataclass
class FinetuneEvalSection(EvalSection):
    __doc__ = EvalSection.__doc__
    interval: int = 50
    sample_tokens: int = 0


@dataclass
class TaskSection:
    """What is fine-tuned (stored in train_config.json; resume compares it)."""

    name: Task = "chat"
    trainable: Trainable = "all"


@dataclass
class FinetuneConfig:
    """Everything that defines a fine-tuning run (train_config.json of its checkpoints)."""

    task: TaskSection = field(default_factory=TaskSection)
    model: Any = field(default_factory=ModelSection)
    data: FinetuneDataSection = field(default_factory=FinetuneDataSection)
    lora: LoRASection = field(default_factory=LoRASection)
    optim: OptimSection = field(default_factory=FinetuneOptimSection)
    train: TrainSection = field(default_factory=FinetuneTrainSection)
    eval: EvalSection = field(default_factory=FinetuneEvalSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    system: SystemSection = field(default_factory=SystemSection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
