"""Training: the original `train_model` API and the `Trainer` engine behind `gpt2 train`."""

from gpt2.training.config import RunConfig
from gpt2.training.engine import Trainer, TrainingDivergedError
from gpt2.training.trainer import evaluate_model, train_model

__all__ = ["RunConfig", "Trainer", "TrainingDivergedError", "evaluate_model", "train_model"]
