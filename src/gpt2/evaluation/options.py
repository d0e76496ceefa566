"""`TaskOptions`: which benchmark task `gpt2 eval` scores, and where its result goes.

Without torch, so that `gpt2 eval --help` stays fast (see gpt2/commands/__init__.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from gpt2.errors import GPT2Error

# Task name -> the line shape its --data file holds (docs/evaluation.md explains each).
TASKS = {
    "hellaswag": '{"ctx": str, "endings": [str, ...], "label": int} (HellaSwag\'s own files)',
    "choice": '{"context": str, "choices": [str, ...], "answer": int}',
    "lambada": '{"text": str} (LAMBADA: the last word is the target)',
}


@dataclass(frozen=True)
class TaskOptions:
    """A likelihood-scored benchmark task instead of the loss (see docs/evaluation.md).

    Args:
        task: hellaswag, choice (multiple choice, {"context", "choices", "answer"}) or lambada
            (last-word cloze); leave it out to measure loss and perplexity on --data instead.
        limit: Score only the first N examples of the task file.
        results: Append the result as one JSON line to this file (made if missing); with --task,
            or on a classifier checkpoint.
        progress: Show a progress bar on stderr while scoring.
    """

    task: str | None = None
    limit: int | None = None
    results: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.task is not None and self.task not in TASKS:
            raise GPT2Error(f"--task {self.task!r}: choose one of {', '.join(TASKS)}")
        if self.limit is not None and (isinstance(self.limit, bool) or self.limit < 1):
            raise GPT2Error(f"--limit must be at least 1, got {self.limit}")
        if self.task is None and self.limit is not None:
            raise GPT2Error("--limit goes with --task (a benchmark task file)")
