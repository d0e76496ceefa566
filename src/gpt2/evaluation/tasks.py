"""Task files -> examples: one JSON object per line, in the shape each task names (options.TASKS).

Every example becomes a context and the continuations to score after it, written out in full
(`Example.continuations`), so the scorers need not know which task they score:

- hellaswag: HellaSwag's files as published (hellaswag_val.jsonl: "ctx", "endings", "label";
  its other fields are ignored). An ending follows the context after one space, as llm.c's
  and lm-evaluation-harness's scorers join them.
- choice: {"context", "choices", "answer"}; each choice is appended to the context exactly as
  written, so the file says where a space or a line break goes.
- lambada: {"text"}; the context is the text up to its last space, the target is the last word
  with that space (as lm-evaluation-harness's lambada task splits it).

Any mistake stops the read with one line naming the file, the line and what to fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt2.errors import GPT2Error
from gpt2.evaluation.options import TASKS


@dataclass(frozen=True)
class Example:
    """One scored item. `choices` are the answers as the file writes them (their UTF-8 length
    normalises acc_norm per byte); `continuations` are the texts actually scored after `context`
    (for hellaswag, each choice after a space). A cloze example has one choice, label 0."""

    context: str
    choices: tuple[str, ...]
    continuations: tuple[str, ...]
    label: int
    where: str  # "file:line" in the task file, for messages


class TaskFileError(GPT2Error):
    """A task file that cannot be read as the task's shape; the message names file and line."""


def read_task(task: str, path: str | Path, limit: int | None = None) -> list[Example]:
    """The examples of a task file (the first `limit` when given)."""
    if task not in TASKS:
        raise GPT2Error(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    path = Path(path)
    if not path.is_file():
        raise GPT2Error(f"--data {path}: no such file")
    examples = []
    for line_no, record in _records(path):
        examples.append(_PARSERS[task](record, _Where(path, line_no, task)))
        if limit is not None and len(examples) == limit:
            break
    if not examples:
        raise TaskFileError(f"{path}: holds no examples; expected one JSON object per line: {TASKS[task]}")
    return examples


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) for every non-blank line."""
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise TaskFileError(f"{path}:{line_no}: not UTF-8 ({err.reason} at byte {err.start})"
                                    ) from None
            if not text.strip():
                continue
            try:
                yield line_no, json.loads(text)
            except json.JSONDecodeError as err:
                raise TaskFileError(f"{path}:{line_no}: not a JSON object ({err.msg} at column {err.colno})"
                                    ) from None


@dataclass(frozen=True)
class _Where:
    """Where a record came from, to name it in errors."""

    path: Path
    line: int
    task: str

    @property
    def name(self) -> str:
        return f"{self.path}:{self.line}"

    def fail(self, what: str) -> TaskFileError:
        return TaskFileError(f"{self.name}: {what}; a {self.task} line is {TASKS[self.task]}")


_KIND_NAMES = {int: "an integer", str: "a string", list: "a list"}


def _field(record: Any, name: str, kind: type, where: _Where) -> Any:
    if not isinstance(record, dict):
        raise where.fail(f"expected a JSON object, got {type(record).__name__}")
    if name not in record:
        raise where.fail(f"missing field {name!r}")
    value = record[name]
    if kind is int and isinstance(value, str) and value.strip().isdigit():
        value = int(value)  # the Hugging Face copy of HellaSwag writes labels as strings
    if not isinstance(value, kind) or isinstance(value, bool):
        raise where.fail(f"field {name!r} must be {_KIND_NAMES[kind]}, got {json.dumps(value)[:40]}")
    return value


def _choices(record: Any, name: str, where: _Where) -> tuple[str, ...]:
    choices = _field(record, name, list, where)
    if len(choices) < 2:
        raise where.fail(f"field {name!r} needs at least 2 entries, got {len(choices)}")
    for i, choice in enumerate(choices):
        if not isinstance(choice, str) or not choice.strip():
            raise where.fail(f"{name}[{i}] must be a non-empty string, got {json.dumps(choice)[:40]}")
    return tuple(choices)


def _label(record: Any, name: str, n: int, where: _Where) -> int:
    label = _field(record, name, int, where)
    if not 0 <= label < n:
        raise where.fail(f"{name} {label} is out of range for {n} choices (0..{n - 1})")
    return label


def _context(record: Any, name: str, where: _Where) -> str:
    context = _field(record, name, str, where)
    if not context.strip():
        raise where.fail(f"field {name!r} is empty")
    return context


def _hellaswag(record: Any, where: _Where) -> Example:
    context, endings = _context(record, "ctx", where), _choices(record, "endings", where)
    label = _label(record, "label", len(endings), where)
    return Example(context, endings, tuple(" " + e for e in endings), label, where.name)


def _choice(record: Any, where: _Where) -> Example:
    context, choices = _context(record, "context", where), _choices(record, "choices", where)
    return Example(context, choices, choices, _label(record, "answer", len(choices), where), where.name)


def _lambada(record: Any, where: _Where) -> Example:
    text = _field(record, "text", str, where).rstrip()
    cut = text.rfind(" ")
    if cut <= 0 or not text[:cut].strip():
        raise where.fail("field 'text' needs a context and a last word separated by a space")
    target = text[cut:]
    return Example(text[:cut], (target.lstrip(),), (target,), 0, where.name)


_PARSERS = {"hellaswag": _hellaswag, "choice": _choice, "lambada": _lambada}
