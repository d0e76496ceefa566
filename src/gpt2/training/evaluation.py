"""`gpt2 eval`: the exact mean next-token loss of a checkpoint over a text or a shard split."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gpt2.checkpoint import load_model, read_config
from gpt2.device import autocast, pick_device
from gpt2.loss import mean_loss
from gpt2.training.metrics import perplexity


def text_windows(ids: Tensor, context_length: int, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Non-overlapping windows over a 1-D id tensor, every token predicted exactly once
    (except the first): batches of (x, y), the last window possibly shorter."""
    n = ids.numel() - 1  # number of predictions
    starts = list(range(0, n, context_length))
    full = [s for s in starts if s + context_length <= n]
    for i in range(0, len(full), batch_size):
        chunk = full[i:i + batch_size]
        x = torch.stack([ids[s:s + context_length] for s in chunk])  # (b, T)
        y = torch.stack([ids[s + 1:s + 1 + context_length] for s in chunk])
        yield x, y
    if starts and starts[-1] + context_length > n:  # the tail
        s = starts[-1]
        yield ids[s:n].unsqueeze(0), ids[s + 1:n + 1].unsqueeze(0)


def _batches(data: Path, split: str, tokenizer: Any, ctx: int, batch_size: int,
             device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    if data.is_dir():
        from gpt2.data.loaders import SequentialLoader
        from gpt2.training.launch import open_data, same_tokenizer

        _, data_tokenizer = open_data(str(data))
        if not same_tokenizer(data_tokenizer.identity(), tokenizer.identity()):
            raise ValueError(f"{data}: the shards were made with a different tokenizer than the checkpoint's")
        yield from SequentialLoader(data, split=split, batch_size=batch_size, context_length=ctx,
                                    device=str(device))
        return
    if not data.is_file():
        raise FileNotFoundError(f"--data {data}: no such file or folder")
    ids = torch.tensor(tokenizer.encode(read_text(data)), dtype=torch.long)
    if ids.numel() < 2:
        raise ValueError(f"--data {data}: fewer than two tokens; nothing to predict")
    for x, y in text_windows(ids, ctx, batch_size):
        yield x.to(device), y.to(device)


def read_text(path: Path) -> str:
    """A UTF-8 text file; a bad byte is a one-line ValueError naming the file and byte offset."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"--data {path}: byte {err.start:,} is not valid UTF-8 ({raw[err.start]:#04x}); "
                         "give a UTF-8 text file") from None


@torch.no_grad()
def evaluate_checkpoint(checkpoint: Path, data: Path, split: str = "val", batch_size: int = 8,
                        context_length: int | None = None, device: str = "auto",
                        dtype: str = "float32") -> dict[str, Any]:
    """{"loss", "perplexity", "tokens"}: mean loss per predicted token.

    The tokenizer is found as `gpt2 generate` finds it (gpt2.generate_cli.resolve_tokenizer),
    before the weights are read, so a checkpoint without one fails fast."""
    from gpt2.generate_cli import resolve_tokenizer

    dev = pick_device(device)
    amp = autocast(dev, dtype)  # also checks the dtype's name
    tokenizer = resolve_tokenizer(checkpoint, None, read_config(checkpoint).vocab_size)
    model = load_model(checkpoint, device=dev)
    ctx = context_length or model.cfg.context_length
    if ctx > model.cfg.context_length:
        raise ValueError(f"--context_length {ctx} exceeds the model's {model.cfg.context_length}")
    loss, count = mean_loss(model, _batches(data, split, tokenizer, ctx, batch_size, dev), amp)
    if count == 0:
        raise ValueError(f"--data {data}: shorter than one window of {ctx} tokens")
    return {"loss": loss, "perplexity": perplexity(loss), "tokens": count}
