"""Training: the original `train_model` API and the `Trainer` engine behind `gpt2 train`.

`from gpt2.training import Trainer` works as always, but the names are imported on first use
(the module `__getattr__` below): importing `gpt2.training.config`, which the `gpt2` command
reads to build `gpt2 train --help`, runs this file and must not import torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RunConfig", "Trainer", "TrainingDivergedError", "evaluate_model", "train_model"]


def __getattr__(name: str) -> Any:
    if name == "RunConfig":
        from gpt2.training import config as module
    elif name in ("Trainer", "TrainingDivergedError"):
        from gpt2.training import engine as module
    elif name in ("evaluate_model", "train_model"):
        from gpt2.training import trainer as module
    else:
        raise AttributeError(f"module 'gpt2.training' has no attribute {name!r}")
    return getattr(module, name)
