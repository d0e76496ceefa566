"""The one model worker: a thread that owns the model and decodes batch after batch.

One thread means one forward pass at a time, so requests never fight over the model or
the CPU's cores; concurrent requests are served together by batching them (scheduler.py),
not by running them side by side. The HTTP side never touches the model.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass

import torch

from gpt2.generation.text import TextGenerator
from gpt2.serving.batch import decode_batch
from gpt2.serving.jobs import Failed, Job
from gpt2.serving.scheduler import Scheduler

log = logging.getLogger("gpt2.serving")


@dataclass
class Stats:
    """What the worker has done so far (shown by GET /health)."""

    running: int = 0  # jobs in the batch being decoded now
    batches: int = 0
    jobs: int = 0
    largest_batch: int = 0  # most rows decoded together
    tokens: int = 0  # decoding steps x live rows


class ModelWorker:
    """Owns `text` (the model and tokenizer); decodes what `scheduler` hands out."""

    def __init__(self, text: TextGenerator, scheduler: Scheduler) -> None:
        self.text, self.scheduler = text, scheduler
        self.stats = Stats()
        self.threads = torch.get_num_threads()  # resolve_runtime's choice, made on the main thread
        self.generator = torch.Generator(device=text.model.device)
        self.generator.seed()
        self._thread = threading.Thread(target=self._run, name="gpt2-model-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.scheduler.close()
        self._thread.join(timeout)

    def snapshot(self) -> dict[str, int]:
        return {**asdict(self.stats), "queued": self.scheduler.waiting}

    def _run(self) -> None:
        torch.set_num_threads(self.threads)
        while not self.scheduler.closed:
            jobs = self.scheduler.next_batch(timeout=1.0)
            if jobs:
                self._decode(jobs)

    def _decode(self, jobs: list[Job]) -> None:
        rows = sum(job.n for job in jobs)
        self.stats.running = len(jobs)
        self.stats.batches += 1
        self.stats.jobs += len(jobs)
        self.stats.largest_batch = max(self.stats.largest_batch, rows)
        try:
            decode_batch(self.text, jobs, self.generator, self._count)
        except Exception as err:  # one bad batch must not kill the worker every request relies on
            log.exception("decoding a batch of %d request(s) failed", len(jobs))
            for job in jobs:
                job.send(Failed(f"generation failed: {type(err).__name__}: {err}"))
        finally:
            self.stats.running = 0

    def _count(self, live_rows: int) -> None:
        self.stats.tokens += live_rows
