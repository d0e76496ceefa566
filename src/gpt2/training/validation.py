"""Validation during a run: the exact mean loss over validation batches, over every process,
and the short samples that show what the model has learned so far."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import torch
from torch import Tensor, nn

from gpt2.errors import GPT2Error
from gpt2.generation.text import sample_text
from gpt2.loss import bits_per_byte, byte_table, counting_bytes, mean_loss
from gpt2.runtime.device import autocast
from gpt2.training.checkpointing import Progress
from gpt2.training.config import EvalSection
from gpt2.training.distributed import DistInfo, all_reduce_sum
from gpt2.training.fsdp import even_batches, is_sharded
from gpt2.training.metrics import MetricsLog, perplexity


class Validator:
    """Computes validation losses with `model` (maybe compiled) and samples with `raw_model`."""

    def __init__(self, model: nn.Module, raw_model: nn.Module,
                 val_batches: Callable[[int | None], Collection[tuple[Tensor, Tensor]]], tokenizer: Any,
                 settings: EvalSection, seed: int, info: DistInfo, amp_dtype: torch.dtype) -> None:
        self.model, self.raw_model, self.val_batches = model, raw_model, val_batches
        self.tokenizer, self.settings, self.seed = tokenizer, settings, seed
        self.info, self.amp_dtype = info, amp_dtype
        vocab = raw_model.cfg.vocab_size
        self.bytes = None if tokenizer is None else byte_table(tokenizer.token_bytes(), vocab)
        self.bits_per_byte = float("nan")  # of the last loss measured (nan without a tokenizer)
        self._last: tuple[tuple[int, int], float, float] | None = None  # (step, batches), loss, bpb

    def loss(self, max_batches: int | None, step: int) -> float:
        """Mean per-token loss over the first `max_batches` validation batches (None: all),
        over all processes. At the same step, the same batches are not evaluated twice (e.g. a
        final whole-split pass right after an evaluation that covered the whole split) - on one
        process only: under DDP every rank must take part in the all-reduce."""
        batches = self.val_batches(max_batches)
        key = (step, len(batches))
        if self._last is not None and self._last[0] == key and not self.info.enabled:
            self.bits_per_byte = self._last[2]
            return self._last[1]
        text_bytes = [0]
        if self.bytes is not None:
            batches = counting_bytes(batches, self.bytes, text_bytes)
        if is_sharded(self.raw_model):  # every forward is a collective: the same number on every process
            batches = even_batches(self.model, batches, len(self.val_batches(max_batches)), self.info)
        self.model.eval()
        loss, count = mean_loss(self.model, batches, autocast(self.info.device, self.amp_dtype))
        self.model.train()
        total, count, n_bytes = all_reduce_sum([loss * count if count else 0.0, float(count),
                                                float(text_bytes[0])], self.info)
        if count == 0:
            raise GPT2Error("the validation split yielded no batches; it is shorter than one context window")
        self.bits_per_byte = bits_per_byte(total / count, int(count), int(n_bytes))
        self._last = (key, total / count, self.bits_per_byte)
        return total / count

    def sample(self) -> str:
        """eval.prompt and a short sampled continuation (fixed seed, so samples are comparable).
        No prompt (a Trainer built without `gpt2 train`'s data-derived one) starts from end-of-text."""
        e = self.settings
        if self.tokenizer is None or e.sample_tokens <= 0:
            return ""
        prompt = e.prompt or ""
        return prompt + sample_text(self.raw_model, self.tokenizer, prompt, e.sampling, e.sample_tokens,
                                    seed=self.seed)

    def evaluate(self, progress: Progress, metrics: MetricsLog | None, write: Callable[[str], None]) -> bool:
        """The evaluation during a run: the loss on eval.batches batches, recorded in `progress`
        and `metrics` (with a sample), reported through `write`; True if it is the best so far."""
        p = progress
        val = self.loss(self.settings.batches, p.step)
        p.history.append(val)
        improved = val < p.best_val_loss
        if improved:
            p.best_val_loss = val
        text = self.sample() if self.info.is_main or is_sharded(self.raw_model) else ""  # FSDP: all join
        if metrics is not None:
            metrics.log({"step": p.step, "tokens": p.tokens_seen, "val_loss": val,
                         "val_perplexity": perplexity(val), "val_bits_per_byte": self.bits_per_byte,
                         "sample": text})
            metrics.plot()
        best = " best" if improved else ""
        write(f"step {p.step}: val loss {val:.4f} (perplexity {perplexity(val):.2f}, "
              f"{self.bits_per_byte:.3f} bits/byte){best}")
        if text:  # as text, indented, so a newline in it reads as one
            write("  sample: " + text.replace("\n", "\n          "))
        return improved
