"""`gpt2 eval`: the exact mean next-token loss of a checkpoint over a text file or a shard split,
or, with --task, its accuracy on a benchmark task file (gpt2.evaluation, docs/evaluation.md),
or, for a classifier made by `gpt2 finetune --task classify`, its accuracy, per-class precision
and recall and confusion matrix on a labelled CSV/JSONL file (docs/finetuning.md).

A text file is encoded exactly as `gpt2 prepare` encodes one (special tokens' spellings as
plain text, end-of-text after it) and windowed by the same `SequentialLoader`, so the loss
and token count on a file equal those on the shards prepared from it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpt2.commands.options import flat_command
from gpt2.data.options import SPLITS
from gpt2.data.sources import decode_utf8
from gpt2.errors import GPT2Error
from gpt2.evaluation.options import TaskOptions
from gpt2.runtime.options import DeviceOptions

if TYPE_CHECKING:
    import numpy as np

    from gpt2.tokenizers import Tokenizer


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate.

    Args:
        checkpoint: A checkpoint directory (ours, or a Hugging Face GPT-2 directory with a tokenizer).
        data: A text file (encoded with the checkpoint's tokenizer) or a folder of token shards;
            with --task, the task's JSON-lines file.
        split: Which split of a shard folder: val or train.
        batch_size: Sequences per forward pass: windows of the text, or a task's context + ending rows.
        context_length: Tokens per window; default the model's context length.
        json_output: Print one JSON object instead of text.
    """

    checkpoint: str
    data: str
    split: str = "val"
    batch_size: int = 8
    context_length: int | None = None
    json_output: bool = False

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise GPT2Error(f"--split {self.split!r} must be one of {', '.join(SPLITS)}")
        if self.batch_size < 1:
            raise GPT2Error(f"--batch_size must be at least 1, got {self.batch_size}")
        if self.context_length is not None and self.context_length < 1:
            raise GPT2Error(f"--context_length must be at least 1, got {self.context_length}")


def _text_ids(path: Path, tokenizer: Tokenizer) -> list[np.ndarray]:
    """A UTF-8 text file as `gpt2 prepare` encodes one document: ids, then end-of-text."""
    import numpy as np  # here, not at the top: see commands/__init__.py

    text = decode_utf8(path.read_bytes(), path, 0, "strict", "give a UTF-8 text file")
    return [np.append(tokenizer.encode_array(text), tokenizer.eot_id)]


def _tokens(data: Path, split: str, tokenizer: Tokenizer) -> Path | list[np.ndarray]:
    """What the windower reads: a shard folder (checked to share the checkpoint's tokenizer)
    or the ids of a text file."""
    from gpt2.data.shards import open_data  # here, not at the top: see commands/__init__.py
    from gpt2.tokenizers import same_ids

    if data.is_dir():
        _, data_tokenizer = open_data(data, (split,))
        if not same_ids(data_tokenizer.identity(), tokenizer.identity()):
            raise GPT2Error(f"{data}: the shards were made with a different tokenizer than the checkpoint's")
        return data
    if not data.is_file():
        raise GPT2Error(f"--data {data}: no such file or folder")
    return _text_ids(data, tokenizer)


def evaluate_checkpoint(options: EvalOptions, system: DeviceOptions = DeviceOptions()) -> dict[str, Any]:
    """{"loss", "perplexity", "bits_per_byte", "tokens"}: mean loss per predicted token, and
    per byte of the text those tokens stand for. The tokenizer is found before the weights
    are read, so a checkpoint without one fails fast."""
    # Imported here, not at the top, so that --help does not import torch (see commands/__init__.py).
    from gpt2.checkpoint import read_config, readable_path
    from gpt2.data.loaders import SequentialLoader
    from gpt2.gpt_model import GPT2
    from gpt2.loss import bits_per_byte, byte_table, counting_bytes, mean_loss
    from gpt2.runtime.device import autocast
    from gpt2.runtime.resolve import resolve_runtime
    from gpt2.tokenizers import tokenizer_for_checkpoint
    from gpt2.training.metrics import perplexity

    checkpoint, data = readable_path(options.checkpoint), Path(options.data)  # readers agree mid-save
    cfg = read_config(checkpoint)
    tokenizer = tokenizer_for_checkpoint(checkpoint, None, cfg.vocab_size)
    ctx = options.context_length or cfg.context_length
    if ctx > cfg.context_length:
        raise GPT2Error(f"--context_length {ctx} exceeds the model's {cfg.context_length}")
    tokens = _tokens(data, options.split, tokenizer)  # bad data fails before any probe or load
    runtime = resolve_runtime(system, cfg, "eval", options.batch_size, ctx)
    batches = SequentialLoader(tokens, split=options.split, batch_size=options.batch_size,
                               context_length=ctx, device=str(runtime.device))
    model = GPT2.from_pretrained(checkpoint, device=runtime.device)
    if runtime.attention is not None:  # the kernel auto measured faster here; the weights are the same
        model.set_runtime_options(dataclasses.replace(model.cfg, attention=runtime.attention))
    text_bytes, table = [0], byte_table(tokenizer.token_bytes(), cfg.vocab_size)
    amp = autocast(runtime.device, runtime.dtype)
    loss, count = mean_loss(model, counting_bytes(batches, table, text_bytes), amp)
    bpb = bits_per_byte(loss, count, text_bytes[0])
    return {"loss": loss, "perplexity": perplexity(loss), "bits_per_byte": bpb, "tokens": count,
            "bytes": text_bytes[0]}


def _run(options: EvalOptions, task: TaskOptions, system: DeviceOptions) -> None:
    from gpt2.finetune.saved import read_info  # here, not at the top: see commands/__init__.py

    info = read_info(options.checkpoint) if Path(options.checkpoint).is_dir() else None
    if info is not None and info["task"] == "classify":
        _run_classifier(options, task, system)
        return
    if info is not None and info["lora"]:
        raise GPT2Error(f"--checkpoint {options.checkpoint}: holds LoRA adapters only; evaluate the full "
                        f"checkpoint `gpt2 merge --checkpoint {options.checkpoint} --out DIR` makes")
    if task.task is None and task.results is not None:
        raise GPT2Error("--results goes with --task (a benchmark task file) or a classifier checkpoint")
    if task.task is not None:
        _run_task(options, task, system)
        return
    result = evaluate_checkpoint(options, system)
    if options.json_output:
        print(json.dumps(result))
    else:
        print(f"loss {result['loss']:.4f}  perplexity {result['perplexity']:.3f}  bits/byte "
              f"{result['bits_per_byte']:.4f}  ({result['tokens']:,} tokens, {result['bytes']:,} bytes of "
              f"{options.data})")


def _run_classifier(options: EvalOptions, task: TaskOptions, system: DeviceOptions) -> None:
    """A classifier made by `gpt2 finetune --task classify`, on labelled examples (--data)."""
    import torch

    from gpt2.evaluation.results import append_result
    from gpt2.finetune.evaluate import evaluate_classifier
    from gpt2.finetune.metrics import format_report

    if task.task is not None:
        raise GPT2Error(f"--task {task.task}: --checkpoint {options.checkpoint} is a classifier; leave "
                        "--task out to measure its accuracy on the labelled examples in --data")
    if system.threads:
        torch.set_num_threads(system.threads)
    record = evaluate_classifier(options.checkpoint, options.data, options.batch_size, options.context_length,
                                 system.device)
    if task.results is not None:
        append_result(task.results, record)
    print(json.dumps(record) if options.json_output else format_report(record["report"]))


def _run_task(options: EvalOptions, task: TaskOptions, system: DeviceOptions) -> None:
    from gpt2.evaluation.run import evaluate_task  # here, not at the top: see commands/__init__.py

    result = evaluate_task(options.checkpoint, options.data, task, options.batch_size,
                           options.context_length, system)
    if options.json_output:
        print(json.dumps(result))
        return
    metrics = "  ".join(f"{name} {value:.4f}" for name, value in result["metrics"].items())
    guess = f", chance {result['chance']:.4f}" if result["chance"] is not None else ""
    print(f"{task.task}: {metrics}  ({result['examples']:,} examples of {options.data}{guess})")


evaluate = flat_command(_run, EvalOptions, TaskOptions, DeviceOptions, name="eval", doc="""\
Loss and perplexity of a checkpoint on text or shards, or its accuracy on a task (--task).

--data is a text file or a `gpt2 prepare` folder; with --task, a JSON-lines task file
(hellaswag, choice or lambada; see docs/evaluation.md); for a classifier checkpoint
(gpt2 finetune --task classify), a labelled CSV or JSONL file.

Example: gpt2 eval --checkpoint runs/shakespeare_cpu/best --data data/shakespeare_char
Example: gpt2 eval --checkpoint DIR --task hellaswag --data hellaswag_val.jsonl --results results.jsonl
Example: gpt2 eval --checkpoint runs/genre/latest --data test.csv --results results.jsonl""")
