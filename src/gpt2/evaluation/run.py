"""A checkpoint and a task file -> the task's metrics: what `gpt2 eval --task` runs."""

from __future__ import annotations

import dataclasses
import datetime
import time
from pathlib import Path
from typing import Any

from gpt2.errors import GPT2Error
from gpt2.evaluation.encoding import example_rows
from gpt2.evaluation.metrics import chance, definitions, task_metrics
from gpt2.evaluation.options import TaskOptions
from gpt2.evaluation.results import append_result
from gpt2.evaluation.scoring import score_encoded
from gpt2.evaluation.tasks import read_task
from gpt2.runtime.device import autocast
from gpt2.runtime.options import DeviceOptions


def evaluate_task(checkpoint: str | Path, data: str | Path, options: TaskOptions, batch_size: int = 32,
                  context_length: int | None = None,
                  system: DeviceOptions = DeviceOptions()) -> dict[str, Any]:
    """Score `options.task` on the task file `data` with the checkpoint's model and tokenizer;
    returns (and with options.results, appends) the result record. The file is read and
    encoded before the weights are loaded, so a bad file fails fast."""
    from gpt2.checkpoint import read_config, readable_path
    from gpt2.gpt_model import GPT2
    from gpt2.runtime.resolve import resolve_runtime
    from gpt2.tokenizers import tokenizer_for_checkpoint

    assert options.task is not None
    checkpoint = readable_path(checkpoint)
    cfg = read_config(checkpoint)
    length = context_length or cfg.context_length
    if length > cfg.context_length:
        raise GPT2Error(f"--context_length {length} exceeds the model's {cfg.context_length}")
    tokenizer = tokenizer_for_checkpoint(checkpoint, None, cfg.vocab_size)
    examples = read_task(options.task, data, options.limit)
    rows = [example_rows(tokenizer, example, length) for example in examples]  # fails before the load
    runtime = resolve_runtime(system, cfg, "eval", batch_size, length)
    model = GPT2.from_pretrained(checkpoint, device=runtime.device)
    if runtime.attention is not None:  # the kernel auto measured faster here; the weights are the same
        model.set_runtime_options(dataclasses.replace(model.cfg, attention=runtime.attention))
    start = time.perf_counter()
    scores = score_encoded(model, rows, batch_size, autocast(runtime.device, runtime.dtype), options.progress)
    seconds = time.perf_counter() - start
    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": str(Path(checkpoint).resolve()), "task": options.task,
        "data": str(Path(data).resolve()),
        "examples": len(examples), "metrics": task_metrics(options.task, examples, scores),
        "chance": chance(options.task, examples), "definitions": definitions(options.task),
        "context_length": length, "device": str(runtime.device),
        "dtype": str(runtime.dtype).removeprefix("torch."),
        "seconds": round(seconds, 3),
    }
    if options.results is not None:
        append_result(options.results, record)
    return record
