"""Training: the original `train_model` API and the `Trainer` engine behind `gpt2 train`.

`from gpt2.training import Trainer` works as always, but the names are imported on first use
(`gpt2.lazy`): importing `gpt2.training.config`, which the `gpt2` command
reads to build `gpt2 train --help`, runs this file and must not import torch.
"""

from __future__ import annotations

from gpt2.lazy import lazy_exports

_HOMES = {"RunConfig": "gpt2.training.config", "Trainer": "gpt2.training.engine",
          "TrainingDivergedError": "gpt2.training.engine", "evaluate_model": "gpt2.training.trainer",
          "train_model": "gpt2.training.trainer"}
__all__ = list(_HOMES)
__getattr__ = lazy_exports(__name__, _HOMES)
