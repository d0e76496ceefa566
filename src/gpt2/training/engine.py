"""The training engine: the loop of `gpt2 train`.

Same objective as `train_model` (gpt2.loss.cross_entropy_loss), plus what a real run
needs: a warmup-cosine learning rate, gradient accumulation and clipping, autocast,
DistributedDataParallel, periodic evaluation with samples, atomic checkpoints that
resume bit for bit, a progress bar and a metrics log with tokens/s and MFU.

The hot loop never waits for the device between reads (see step_stats.py): losses stay on the
device until a log, evaluation or save step; the processes exchange one tensor per step
(distributed.StepSignals); the next batch is fetched before the current one runs (prefetch.py).

The engine does not know where batches come from: `train_batches` is any BatchSource, and
`val_batches(n)` returns a sized iterable of the first n validation batches (None: all).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gpt2.data.loaders import BatchSource
from gpt2.errors import GPT2Error
from gpt2.loss import NextTokenLoss
from gpt2.runtime.device import autocast, resolve_dtype
from gpt2.training.checkpointing import BEST, LATEST, Progress, StopFlag, restore_run_state, run_state
from gpt2.training.config import RunConfig
from gpt2.training.distributed import DistInfo, StepSignals, sync_context, wrap_model
from gpt2.training.fsdp import local, parallelize
from gpt2.training.metrics import MetricsLog, perplexity, progress_bar
from gpt2.training.mfu import flops_per_token, peak_flops
from gpt2.training.optim import build_optimizer, lr_at, set_lr
from gpt2.training.prefetch import Prefetcher
from gpt2.training.sharded_checkpoint import restore_sharded, run_checkpoints
from gpt2.training.step_stats import LossReader, Reading, Throughput, bar_speed, diverged_message, speed_text
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
                 window: int | None = None, *, header: dict[str, Any] | None = None,
                 record: dict[str, Any] | None = None, folder: Any = None,
                 state: dict[str, Any] | None = None, writer: Callable[..., None] | None = None,
                 text: bool = True) -> None:
        """amp_dtype: the autocast precision (default: cfg.system.dtype, which must then be
        concrete: `auto` is resolved by gpt2.runtime, as launch.build_trainer does);
        window: tokens per training sequence (default: cfg.train.context_length or the model's);
        header: the run's facts, first row of metrics.jsonl (launch.run_header); record: saved
        beside the settings in train_config.json (how the run runs: `runtime`); folder: the
        locked run folder (see RunCheckpoints); state: a saved `training_state()` to continue from;
        writer: what writes one checkpoint (default save_checkpoint; fine-tuning writes its own
        kind); text: whether the model writes text (a classifier does not: its evaluation then
        samples nothing and reports no bits per byte, though its checkpoints keep the tokenizer)."""
        self.cfg = cfg
        self.info = info or DistInfo(device=model.device)
        self.device = self.info.device
        self.raw_model = model  # unwrapped: what checkpoints and samples use
        o = cfg.optim
        self.amp_dtype = amp_dtype or resolve_dtype(cfg.system.dtype)  # refuses auto
        ns_dtype = torch.bfloat16 if self.amp_dtype is torch.bfloat16 else torch.float32  # Muon: as autocast
        sharded = parallelize(model, cfg.system, o.name, self.info, self.amp_dtype)  # before the optimizer
        self.optimizer = build_optimizer(model, o.lr, o.weight_decay, (o.beta1, o.beta2), o.eps, o.impl,
                                         o.name, o.muon_lr, o.momentum, ns_dtype)
        self.fast_model = torch.compile(model) if cfg.system.compile else model  # forward for evaluation
        objective = NextTokenLoss(model)  # (x, y) -> loss: compiled as one graph with the model
        objective = torch.compile(objective) if cfg.system.compile else objective
        self.model = objective if sharded else wrap_model(objective, self.info)
        self.train_batches = Prefetcher(train_batches)
        self.progress = Progress()
        self.out_dir = Path(cfg.train.out_dir)
        self.window = window or cfg.train.context_length or model.cfg.context_length
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype is torch.float16)
        self.validator = Validator(self.fast_model, model, val_batches, tokenizer if text else None, cfg.eval,
                                   cfg.train.seed, self.info, self.amp_dtype)
        sharded_optimizer = self.optimizer if cfg.system.parallel == "fsdp" else None
        self.checkpoints = run_checkpoints(self.out_dir, tokenizer, {**cfg.to_dict(), **(record or {})},
                                           self.info, sharded_optimizer)
        self.checkpoints.folder = folder  # held by this process; an old run set aside goes at the first save
        if writer is not None:
            self.checkpoints.write = writer
        self.header = header or {}
        self.metrics: MetricsLog | None = None
        self.signals = StepSignals(self.info)
        self.reader = LossReader()
        if state is not None:
            self.restore(state)

    def training_state(self) -> dict[str, Any]:
        """Everything besides the weights that a bit-identical resume needs."""
        return run_state(self.progress, self.optimizer, self.scaler, self.train_batches)

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from `training_state()` of an earlier run (the weights are loaded already;
        an FSDP run's optimizer, and weights, come from latest/sharded, re-cut for this world size)."""
        restore_sharded(state, self.out_dir / LATEST, self.raw_model, self.optimizer)
        self.progress = restore_run_state(state, self.optimizer, self.scaler, self.train_batches)

    def save(self, which: str) -> Path:
        """Write <out_dir>/<which> (rank 0 only; the others wait)."""
        return self.checkpoints.save(which, self.progress.step, self.raw_model, self.training_state)

    def train_step(self, lr: float) -> tuple[Tensor, Tensor | None]:
        """One optimizer step over grad_accum_steps micro-batches -> (this process's mean loss,
        the gradient norm before clipping or None), both () tensors on the device, not read."""
        set_lr(self.optimizer, lr, lr * self.cfg.optim.muon_lr / self.cfg.optim.lr)  # one schedule, 2 peaks
        self.optimizer.zero_grad(set_to_none=True)
        accum = self.cfg.train.grad_accum_steps
        total = torch.zeros((), device=self.device)
        for micro in range(accum):
            x, y = self.train_batches.next_batch()  # (B, T) each, already on the device
            if micro < accum - 1:
                self.train_batches.prefetch()  # the next micro-batch, before this one's forward
            with sync_context(self.model, sync=micro == accum - 1):
                with autocast(self.device, self.amp_dtype):
                    loss = self.model(x, y) / accum
                self.scaler.scale(loss).backward()
            total += loss.detach()
        grad_norm = self._clip_gradients()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return total, grad_norm

    def _clip_gradients(self) -> Tensor | None:
        clip = self.cfg.optim.grad_clip
        if clip <= 0:
            return None
        self.scaler.unscale_(self.optimizer)
        return local(torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), clip))  # FSDP: reduced

    def fit(self) -> dict[str, Any]:
        """Train to max_steps (or max_seconds, or Ctrl-C); returns the run summary. A new run
        that fails before its first checkpoint leaves nothing behind (see RunCheckpoints)."""
        t = self.cfg.train
        if self.info.is_main:
            self.metrics = MetricsLog(self.out_dir, resume_step=self.progress.step)
            self.metrics.log({"step": self.progress.step, **self.header})  # what the run is about to do
        peak = peak_flops(self.device, self.amp_dtype)  # before the clock starts (a CPU measures it)
        self.speed = Throughput(t.batch_size * self.window, flops_per_token(self.raw_model.cfg, self.window),
                                self.info.world_size, peak, self.progress.step)
        start = time.perf_counter()
        bar = progress_bar(t.max_steps, self.progress.step, self.info.is_main and self.cfg.system.progress)
        finished = False
        try:  # the bar and the metrics (TensorBoard) are closed also on an error or Ctrl-C
            self._loop(start, bar)
            bar.close()  # before the final evaluation, so the summary is not drawn over
            summary = self._finish(time.perf_counter() - start, bar)
            finished = True
            return summary
        finally:
            bar.close()
            if self.metrics is not None:
                self.metrics.close()
            if not finished:  # after the metrics are closed: nothing writes into out_dir any more
                self.checkpoints.undo_unsaved_run()  # Ctrl-C saved first, so its run stays

    def _loop(self, start: float, bar: Any) -> None:
        """Optimizer steps until max_steps, a stop budget, or a stop request (which saves and raises).
        Nothing here waits for the device except `_after_step`'s reads."""
        t = self.cfg.train
        self.raw_model.train()
        first_step = self.progress.step
        with StopFlag() as stop:
            while self.progress.step < t.max_steps:
                lr = self._lr()
                local_loss, grad_norm = self.train_step(lr)
                self.progress.step += 1
                self.progress.tokens_seen += t.batch_size * self.window
                if self.progress.step < t.max_steps:
                    self.train_batches.prefetch()  # batch k+1 is on its way before anything waits
                late = bool(t.max_seconds) and time.perf_counter() - start > t.max_seconds
                loss, interrupted, late = self.signals.exchange(local_loss, stop.requested, late)
                self.reader.record(self.progress.step, loss, grad_norm)
                bar.update(1)
                done = bool(t.stop_after_steps) and self.progress.step - first_step >= t.stop_after_steps
                self._after_step(lr, bar, stopping=interrupted or late or done)
                if interrupted:
                    raise TrainingInterruptedError(f"interrupted at step {self.progress.step}; saved "
                                                   f"{self.out_dir / LATEST}; continue with the same "
                                                   "command plus --resume true")
                if late or done:
                    return

    def _lr(self) -> float:
        o = self.cfg.optim
        min_lr = o.min_lr if o.min_lr is not None else o.lr / 10
        return lr_at(self.progress.step, o.lr, o.warmup_steps, self.cfg.train.max_steps, min_lr)

    def _after_step(self, lr: float, bar: Any, stopping: bool) -> None:
        """Read, log, evaluate and save as due at this step; a read precedes every save, so a
        diverged run raises before it could overwrite the last good checkpoint."""
        step = self.progress.step
        t = self.cfg.train
        e = self.cfg.eval
        last = step == t.max_steps
        log_due = step % t.log_interval == 0 or last
        eval_due = (e.interval > 0 and step % e.interval == 0) or last
        interval = self.cfg.checkpoint.interval
        save_due = (interval > 0 and step % interval == 0) or (interval == 0 and eval_due) or last or stopping
        if not (log_due or eval_due or save_due or self.speed.due(step)):
            return
        reading, speed = self._read()
        bar.set_postfix(loss=f"{reading.loss:.4f}", lr=f"{lr:.2e}", **bar_speed(speed), refresh=False)
        if self.metrics is not None and log_due:
            row = {"step": step, "tokens": self.progress.tokens_seen, "train_loss": reading.loss, "lr": lr}
            if reading.grad_norm == reading.grad_norm:  # not nan: clipping is on
                row["grad_norm"] = reading.grad_norm
            self.metrics.log({**row, **(speed or {})})
        if eval_due:
            self._evaluate_and_report(bar)
        if save_due:
            self.save(LATEST)
        if eval_due or save_due:
            self.speed.restart(step)  # evaluating and saving are not training time

    def _read(self) -> tuple[Reading, dict[str, float] | None]:
        """Wait for the device and read every step since the last read (raising if one diverged),
        and the speed since then."""
        reading = self.reader.read(self.device)
        speed = self.speed.window(reading.step)
        if reading.first_bad is not None:
            raise TrainingDivergedError(diverged_message(reading, self.out_dir / LATEST, self.cfg.optim.lr))
        return reading, speed

    def _evaluate_and_report(self, bar: Any) -> None:
        improved = self.validator.evaluate(self.progress, self.metrics, lambda text: self._write(bar, text))
        if improved and self.cfg.checkpoint.keep_best:
            self.save(BEST)

    def _write(self, bar: Any, message: str) -> None:
        if self.info.is_main:
            bar.write(message)

    def _finish(self, seconds: float, bar: Any) -> dict[str, Any]:
        p = self.progress
        summary: dict[str, Any] = {"steps": p.step, "tokens_seen": p.tokens_seen,
                                   "best_val_loss": p.best_val_loss, "wall_seconds": seconds,
                                   "checkpoint": str(self.out_dir / LATEST)}
        speed = self.speed.summary()  # steady state: ms_per_step, tokens_per_s, mfu
        summary.update(speed)
        if speed and self.metrics is not None:  # rank 0
            steady = {f"steady_{key}": value for key, value in speed.items()}
            self.metrics.log({"step": p.step, "tokens": p.tokens_seen, **steady})
            self._write(bar, f"steady state: {speed_text(speed)}")
        if self.cfg.checkpoint.keep_best and (self.out_dir / BEST).exists():
            summary["best_checkpoint"] = str(self.out_dir / BEST)
        if self.cfg.eval.final_full:
            full = self.validator.loss(None, p.step)
            summary["final_val_loss"] = full
            summary["final_val_perplexity"] = perplexity(full)
            summary["final_val_bits_per_byte"] = self.validator.bits_per_byte
            if self.metrics is not None:
                self.metrics.log({"step": p.step, "tokens": p.tokens_seen, "full_val_loss": full,
                                  "full_val_bits_per_byte": self.validator.bits_per_byte})
        if self.metrics is not None:
            summary["metrics"] = str(self.metrics.path)
            summary["plot"] = str(self.metrics.plot())
        return summary
