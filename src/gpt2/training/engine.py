"""The training engine: the loop of `gpt2 train`.

Same objective as `train_model` (gpt2.loss.cross_entropy_loss), plus what a real run
needs: a warmup-cosine learning rate, gradient accumulation and clipping, autocast,
DistributedDataParallel, periodic evaluation with samples, atomic checkpoints that
resume bit for bit, a progress bar and a metrics log.

The engine does not know where batches come from: `train_batches` is any object with
`next_batch() -> (x, y)`, `state_dict()` and `load_state_dict()`, and `val_batches(n)`
returns a sized iterable of the first n validation batches (all of them for None).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gpt2.data.loaders import BatchSource
from gpt2.device import autocast, resolve_dtype
from gpt2.errors import GPT2Error
from gpt2.loss import cross_entropy_loss
from gpt2.training.checkpointing import (
    BEST,
    LATEST,
    Progress,
    RunCheckpoints,
    StopFlag,
    restore_run_state,
    run_state,
)
from gpt2.training.config import RunConfig
from gpt2.training.distributed import (
    DistInfo,
    all_reduce_mean,
    broadcast_flag,
    sync_context,
    wrap_model,
)
from gpt2.training.metrics import MetricsLog, perplexity, progress_bar
from gpt2.training.optim import build_optimizer, lr_at, set_lr
from gpt2.training.validation import Validator


class TrainingDivergedError(GPT2Error):
    """The loss became NaN or infinite; the run stops without overwriting the last good checkpoint."""


class TrainingInterruptedError(Exception):
    """Ctrl-C: the run saved <out_dir>/latest and stopped."""


class Trainer:
    """Runs `cfg.train.max_steps` optimizer steps of `model` on `train_batches`."""

    def __init__(self, cfg: RunConfig, model: nn.Module, train_batches: BatchSource,
                 val_batches: Callable[[int | None], Collection[tuple[Tensor, Tensor]]],
                 tokenizer: Any = None, info: DistInfo | None = None, amp_dtype: torch.dtype | None = None,
                 window: int | None = None) -> None:
        """amp_dtype: the autocast precision (default: cfg.system.dtype, auto meaning float32);
        window: tokens per training sequence (default: cfg.train.context_length or the model's)."""
        self.cfg = cfg
        self.info = info or DistInfo(device=model.device)
        self.device = self.info.device
        self.raw_model = model  # unwrapped: what checkpoints and samples use
        o = cfg.optim
        self.optimizer = build_optimizer(model, o.lr, o.weight_decay, (o.beta1, o.beta2), o.eps, o.impl)
        self.fast_model = torch.compile(model) if cfg.system.compile else model  # forward for train/eval
        self.model = wrap_model(self.fast_model, self.info)  # what backward runs through (DDP or not)
        self.train_batches = train_batches
        self.progress = Progress()
        self.out_dir = Path(cfg.train.out_dir)
        explicit = "float32" if cfg.system.dtype == "auto" else cfg.system.dtype
        self.amp_dtype = amp_dtype or resolve_dtype(explicit)
        self.window = window or cfg.train.context_length or model.cfg.context_length
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype is torch.float16)
        self.validator = Validator(self.fast_model, model, val_batches, tokenizer, cfg.eval, cfg.train.seed,
                                   self.info, self.amp_dtype)
        self.checkpoints = RunCheckpoints(self.out_dir, tokenizer, cfg.to_dict(), self.info)
        self.metrics: MetricsLog | None = None


    def training_state(self) -> dict[str, Any]:
        """Everything besides the weights that a bit-identical resume needs."""
        return run_state(self.progress, self.optimizer, self.scaler, self.train_batches)

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from `training_state()` of an earlier run (the weights are loaded already)."""
        self.progress = restore_run_state(state, self.optimizer, self.scaler, self.train_batches)

    def save(self, which: str) -> Path:
        """Write <out_dir>/<which> (rank 0 only; the others wait)."""
        return self.checkpoints.save(which, self.progress.step, self.raw_model, self.training_state)

    def train_step(self, lr: float) -> tuple[float, float]:
        """One optimizer step over grad_accum_steps micro-batches -> (loss, gradient norm).

        The loss is the mean over the whole global batch (all micro-steps, all processes).
        Raises TrainingDivergedError before the update if it is not finite.
        """
        set_lr(self.optimizer, lr)
        self.optimizer.zero_grad(set_to_none=True)
        accum = self.cfg.train.grad_accum_steps
        total = torch.zeros((), device=self.device)
        for micro in range(accum):
            x, y = self.train_batches.next_batch()  # (B, T) each, already on the device
            with sync_context(self.model, sync=micro == accum - 1):
                with autocast(self.device, self.amp_dtype):
                    loss = cross_entropy_loss(self.model(x), y) / accum
                self.scaler.scale(loss).backward()
            total += loss.detach()
        loss_value = all_reduce_mean(total.item(), self.info)
        if not math.isfinite(loss_value):
            raise TrainingDivergedError(self._diverged_message(loss_value))
        grad_norm = self._clip_gradients()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss_value, grad_norm

    def _clip_gradients(self) -> float:
        clip = self.cfg.optim.grad_clip
        if clip <= 0:
            return math.nan
        self.scaler.unscale_(self.optimizer)
        return float(torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), clip))

    def _diverged_message(self, loss: float) -> str:
        latest = self.out_dir / LATEST
        kept = f"the last good checkpoint is {latest}" if latest.exists() else "no checkpoint was written"
        return (f"loss became {loss} at step {self.progress.step + 1}; {kept}. Try a lower --optim.lr "
                f"(now {self.cfg.optim.lr:g}), gradient clipping (--optim.grad_clip 1.0), "
                "more warmup (--optim.warmup_steps), or --system.dtype float32")


    def fit(self) -> dict[str, Any]:
        """Train to max_steps (or max_seconds, or Ctrl-C); returns the run summary."""
        t = self.cfg.train
        if self.info.is_main:
            self.metrics = MetricsLog(self.out_dir, resume_step=self.progress.step)
        start = time.perf_counter()
        bar = progress_bar(t.max_steps, self.progress.step, self.info.is_main and self.cfg.system.progress)
        try:  # the bar and the TensorBoard writer are closed also on an error or Ctrl-C
            self._loop(start, bar)
            bar.close()  # before the final evaluation, so the summary is not drawn over
            return self._finish(time.perf_counter() - start)
        finally:
            bar.close()
            if self.metrics is not None:
                self.metrics.close()

    def _loop(self, start: float, bar: Any) -> None:
        """Optimizer steps until max_steps, a stop budget, or a stop request (which saves and raises)."""
        t = self.cfg.train
        self.raw_model.train()
        first_step = self.progress.step
        tokens_per_step = t.batch_size * self.window
        window_t, window_tokens = time.perf_counter(), 0
        with StopFlag() as stop:
            while self.progress.step < t.max_steps:
                if broadcast_flag(stop.requested, self.info):
                    path = self.save(LATEST)
                    raise TrainingInterruptedError(f"interrupted at step {self.progress.step}; saved {path}; "
                                                   "continue with the same command plus --resume true")
                lr = self._lr()
                loss, grad_norm = self.train_step(lr)
                self.progress.step += 1
                self.progress.tokens_seen += tokens_per_step
                window_tokens += tokens_per_step
                elapsed = time.perf_counter() - window_t
                tok_s = window_tokens / elapsed if elapsed > 0 else 0.0
                # refresh=False: the bar redraws at most every 0.1 s, not at every step
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:,.0f}", refresh=False)
                bar.update(1)
                self._after_step(loss, lr, grad_norm, bar)
                if self._should_stop(start, first_step):
                    self.save(LATEST)
                    return

    def _should_stop(self, start: float, first_step: int) -> bool:
        """Time budget or step budget of this invocation used up (the same answer on every rank)."""
        t = self.cfg.train
        out_of_time = bool(t.max_seconds) and time.perf_counter() - start > t.max_seconds
        out_of_steps = bool(t.stop_after_steps) and self.progress.step - first_step >= t.stop_after_steps
        return broadcast_flag(out_of_time, self.info) or out_of_steps

    def _lr(self) -> float:
        o = self.cfg.optim
        min_lr = o.min_lr if o.min_lr is not None else o.lr / 10
        return lr_at(self.progress.step, o.lr, o.warmup_steps, self.cfg.train.max_steps, min_lr)

    def _after_step(self, loss: float, lr: float, grad_norm: float, bar: Any) -> None:
        step, t, e = self.progress.step, self.cfg.train, self.cfg.eval
        last = step == t.max_steps
        if self.metrics is not None and (step % t.log_interval == 0 or last):
            row = {"step": step, "tokens": self.progress.tokens_seen, "train_loss": loss, "lr": lr}
            if math.isfinite(grad_norm):
                row["grad_norm"] = grad_norm
            self.metrics.log(row)
        eval_due = (e.interval > 0 and step % e.interval == 0) or last
        if eval_due:
            self._evaluate_and_report(bar)
        interval = self.cfg.checkpoint.interval
        if (interval > 0 and step % interval == 0) or (interval == 0 and eval_due) or last:
            self.save(LATEST)

    def _evaluate_and_report(self, bar: Any) -> None:
        val = self.validator.loss(self.cfg.eval.batches, self.progress.step)
        p = self.progress
        p.history.append(val)
        improved = val < p.best_val_loss
        if improved:
            p.best_val_loss = val
        text = self.validator.sample() if self.info.is_main else ""
        if self.metrics is not None:
            self.metrics.log({"step": p.step, "tokens": p.tokens_seen, "val_loss": val,
                              "val_perplexity": perplexity(val), "sample": text})
            self.metrics.plot()
        self._write(bar, f"step {p.step}: val loss {val:.4f} (perplexity {perplexity(val):.2f})"
                         + (" best" if improved else ""))
        if text:
            self._write(bar, f"  sample: {text!r}")
        if improved and self.cfg.checkpoint.keep_best:
            self.save(BEST)

    def _write(self, bar: Any, message: str) -> None:
        if self.info.is_main:
            bar.write(message)

    def _finish(self, seconds: float) -> dict[str, Any]:
        p = self.progress
        summary: dict[str, Any] = {"steps": p.step, "tokens_seen": p.tokens_seen,
                                   "best_val_loss": p.best_val_loss, "wall_seconds": seconds,
                                   "checkpoint": str(self.out_dir / LATEST)}
        if self.cfg.checkpoint.keep_best and (self.out_dir / BEST).exists():
            summary["best_checkpoint"] = str(self.out_dir / BEST)
        if self.cfg.eval.final_full:
            full = self.validator.loss(None, p.step)
            summary["final_val_loss"] = full
            summary["final_val_perplexity"] = perplexity(full)
            if self.metrics is not None:
                self.metrics.log({"step": p.step, "tokens": p.tokens_seen, "full_val_loss": full})
        if self.metrics is not None:
            summary["metrics"] = str(self.metrics.path)
            summary["plot"] = str(self.metrics.plot())
        return summary
