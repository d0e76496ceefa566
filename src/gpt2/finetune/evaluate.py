"""A classifier on labelled examples: predictions, and the report of gpt2.finetune.metrics."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gpt2.checkpoint import readable_path
from gpt2.errors import GPT2Error
from gpt2.files import json_bytes, read_json, write_bytes_atomic
from gpt2.finetune.examples import IGNORE, class_row, pad_rows
from gpt2.finetune.metrics import classification_report
from gpt2.finetune.records import read_records, to_labelled
from gpt2.finetune.saved import load_finetuned
from gpt2.runtime.device import pick_device


@torch.no_grad()
def predict_rows(model: nn.Module, X: np.ndarray, Y: np.ndarray,
                 batch_size: int = 32) -> tuple[list[int], list[int]]:
    """(true, predicted) class indices of padded rows whose one target is the class (examples.py)."""
    model.eval()
    truth, predicted = [], []
    for s in range(0, len(X), batch_size):
        y = torch.from_numpy(Y[s:s + batch_size])
        last = (y != IGNORE).int().argmax(dim=1)  # (B,) position of the label: the last real token
        x = torch.from_numpy(X[s:s + batch_size]).to(model.device)
        truth += y[torch.arange(len(y)), last].tolist()
        predicted += model.predict(x, (last + 1).to(model.device)).tolist()
    return truth, predicted


def labelled_rows(file: str | Path, tokenizer: Any, classes: list[str], width: int, text_field: str = "text",
                  label_field: str = "label") -> tuple[np.ndarray, np.ndarray]:
    """The labelled examples of `file` as padded rows (their ends kept), labels as class indices."""
    index = {name: i for i, name in enumerate(classes)}
    rows = []
    for where, record in read_records(file):
        text, label = to_labelled(where, record, text_field, label_field)
        if label not in index:
            raise GPT2Error(f"{where}: label {label!r} is not one the classifier knows "
                            f"({', '.join(classes)})")
        rows.append(class_row(tokenizer, text, index[label], where))
    X, Y, _ = pad_rows(rows, min(width, max(len(x) for x, _ in rows)), tokenizer.eot_id, keep_end=True)
    return X, Y


def report_rows(model: nn.Module, X: np.ndarray, Y: np.ndarray, classes: list[str],
                out: Path | None = None, batch_size: int = 32) -> dict[str, Any]:
    """The classification report of `model` on the rows; written as JSON to `out` if given."""
    report = classification_report(*predict_rows(model, X, Y, batch_size), classes)
    if out is not None:
        write_bytes_atomic(out, json_bytes(report))
    return report


def evaluate_classifier(checkpoint: str | Path, data: str | Path, batch_size: int = 32,
                        width: int | None = None, device: str = "auto") -> dict[str, Any]:
    """`gpt2 eval` on a classifier: the record it prints and appends to a results file
    (gpt2.evaluation.results), with the whole report under "report". The file's text and
    label columns are the ones the classifier was trained with (its train_config.json)."""
    model, tokenizer, info = load_finetuned(checkpoint, pick_device(device))
    if info["task"] != "classify":
        raise GPT2Error(f"--checkpoint {checkpoint}: a {info['task']} model, not a classifier")
    config = readable_path(checkpoint) / "train_config.json"
    fields = read_json(config, "the checkpoint is damaged")["data"] if config.is_file() else {}
    X, Y = labelled_rows(data, tokenizer, model.classes, width or model.cfg.context_length,
                         fields.get("text_field", "text"), fields.get("label_field", "label"))
    report = report_rows(model, X, Y, model.classes, batch_size=batch_size)
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "checkpoint": str(Path(checkpoint).resolve()), "task": "classify",
            "data": str(Path(data).resolve()), "examples": report["n"],
            "metrics": {"accuracy": report["accuracy"]}, "chance": report["majority_baseline"],
            "report": report, "device": str(model.device)}
