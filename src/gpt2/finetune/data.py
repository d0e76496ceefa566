"""From the user's files to padded training and validation rows (see examples.py).

The held-out examples are the `--data.val` file, or the last `--data.val_fraction` of the
training file (its order kept, so the split does not change between runs). One width fits
all rows: `--train.context_length`, else the longest example, never past the model's context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpt2.errors import GPT2Error
from gpt2.finetune.examples import chat_row, class_row, pad_rows
from gpt2.finetune.options import FinetuneDataSection
from gpt2.finetune.records import Record, read_records, to_labelled, to_messages


@dataclass
class Examples:
    """Padded rows of both splits, and what a person wants to know about them."""

    train: tuple[np.ndarray, np.ndarray]  # X, Y: (N, width) each
    val: tuple[np.ndarray, np.ndarray]
    width: int
    classes: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    first_val: Any = None  # chat: the first held-out conversation (for samples)


def split_records(data: FinetuneDataSection) -> tuple[list[Record], list[Record]]:
    """(train, val) records from --data.train and --data.val (or a held-out tail of train)."""
    train = read_records(data.train)
    if data.val:
        return train, read_records(data.val)
    n_val = math.ceil(len(train) * data.val_fraction)
    if n_val == 0 or n_val >= len(train):
        raise GPT2Error(f"--data.train {data.train}: {len(train)} examples cannot be split into train and "
                        f"--data.val_fraction {data.val_fraction}; give a --data.val file or more examples")
    return train[:-n_val], train[-n_val:]


def class_names(records: list[Record], data: FinetuneDataSection) -> list[str]:
    """The classes of the training examples, sorted (class i is the i-th name)."""
    labels = {to_labelled(where, r, data.text_field, data.label_field)[1] for where, r in records}
    if len(labels) < 2:
        raise GPT2Error(f"--data.train {data.train}: only one label ({', '.join(labels)}); a classifier "
                        "needs at least two")
    return sorted(labels)


def load_examples(task: str, data: FinetuneDataSection, tokenizer: Any, max_width: int,
                  width: int | None = None, classes: list[str] | None = None) -> Examples:
    """Read, check, encode and pad both splits. max_width: the model's context; width: the
    rows' width (default: the longest example); classes: fixed class order (default: sorted)."""
    train_records, val_records = split_records(data)
    if task == "classify":
        classes = classes or class_names(train_records, data)
        index = {name: i for i, name in enumerate(classes)}

        def row(where: str, record: dict) -> tuple[list[int], list[int]]:
            text, label = to_labelled(where, record, data.text_field, data.label_field)
            if label not in index:
                raise GPT2Error(f"{where}: label {label!r} is not one of the training labels {classes}")
            return class_row(tokenizer, text, index[label], where)
    else:
        def row(where: str, record: dict) -> tuple[list[int], list[int]]:
            return chat_row(tokenizer, to_messages(where, record), where)
    train_rows = [row(w, r) for w, r in train_records]
    val_rows = [row(w, r) for w, r in val_records]
    longest = max(len(x) for x, _ in train_rows + val_rows)
    width = min(width or longest, max_width)
    keep_end = task == "classify"
    pad_id = tokenizer.eot_id
    X, Y, cut_train = pad_rows(train_rows, width, pad_id, keep_end)
    Xv, Yv, cut_val = pad_rows(val_rows, width, pad_id, keep_end)
    notes = []
    if cut_train + cut_val:
        kept = "ends" if keep_end else "starts"
        notes.append(f"{cut_train + cut_val} examples are longer than {width} tokens and were cut (their "
                     f"{kept} kept); raise --train.context_length up to the model's {max_width}")
    if task == "chat" and not (Y != -100).any(axis=1).all():
        notes.append("some conversations have no assistant token left after cutting; they teach nothing")
    first = to_messages(*val_records[0]) if task == "chat" else None
    return Examples((X, Y), (Xv, Yv), width, classes, notes, first)
