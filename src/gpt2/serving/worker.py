"""The one model worker: a thread that owns the model and the decoding engine.

One thread means one forward pass at a time, so requests never fight over the model or
the CPU's cores. Concurrent requests share the engine's batch instead (continuous
batching): before every step the worker admits waiting jobs into free rows (their prompts
are prefilled while the other rows keep their place), drops the rows of clients that left,
and then decodes one token for every row. A row leaves the batch as soon as it ends, so a
short request never waits for a long one. The HTTP side never touches the model.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass

import torch

from gpt2.generation.engine import Engine, RowSpec
from gpt2.generation.row_sampling import row_keys
from gpt2.generation.text import TextGenerator
from gpt2.serving.choices import Choice
from gpt2.serving.jobs import Failed, Finished, Job
from gpt2.serving.scheduler import Scheduler

log = logging.getLogger("gpt2.serving")


@dataclass
class Stats:
    """What the worker has done so far (shown by GET /health)."""

    running: int = 0  # rows being decoded now
    steps: int = 0  # decoding steps taken
    jobs: int = 0  # requests admitted
    largest_batch: int = 0  # most rows decoded together
    tokens: int = 0  # tokens generated (rows x steps)


class ModelWorker:
    """Owns `text` (the model and tokenizer) and an engine of `max_batch` rows."""

    def __init__(self, text: TextGenerator, scheduler: Scheduler, max_batch: int) -> None:
        self.text = text
        self.scheduler = scheduler
        self.max_batch = max_batch
        self.stats = Stats()
        self.threads = torch.get_num_threads()  # resolve_runtime's choice, made on the main thread
        self.generator = torch.Generator()
        self.generator.seed()
        self.choices: dict[int, Choice] = {}  # engine row id -> its choice
        self._thread = threading.Thread(target=self._run, name="gpt2-model-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def begin_shutdown(self) -> None:
        """Refuse new jobs and fail the waiting ones now; the worker fails the running ones at
        its next step (every client gets OpenAI's error shape, a stream its error event)."""
        for job in self.scheduler.close():
            job.send(Failed("the server is shutting down; retry on another server", 503))

    def stop(self, timeout: float = 10.0) -> None:
        self.begin_shutdown()
        self._thread.join(timeout)

    def snapshot(self) -> dict[str, int]:
        return {**asdict(self.stats), "queued": self.scheduler.waiting}

    def _run(self) -> None:
        torch.set_num_threads(self.threads)
        engine = self._new_engine()
        while not self.scheduler.closed:
            idle = not self.choices
            for job in self.scheduler.take(engine.free, timeout=1.0 if idle else 0.0):
                self._admit(engine, job)
            self._drop_cancelled(engine)
            self.stats.running = len(self.choices)
            if not self.choices:
                continue
            try:
                self._step(engine)
            except Exception as err:  # one failure must not kill the worker every request relies on
                log.exception("decoding failed for %d row(s)", len(self.choices))
                self._fail_running(f"generation failed: {type(err).__name__}: {err}", 500)
                engine = self._new_engine()
        self._fail_running("the server is shutting down; retry on another server", 503)

    def _new_engine(self) -> Engine:
        self.choices = {}
        return Engine(self.text.model, self.max_batch, decoder=self.text.decoder)

    def _admit(self, engine: Engine, job: Job) -> None:
        """Give every choice of `job` a row (prefilling its prompt). A seeded job draws its rows'
        random streams from its seed alone, so its text never depends on what else is served."""
        self.stats.jobs += 1
        generator = torch.Generator().manual_seed(job.seed) if job.seed is not None else self.generator
        keys = row_keys(generator, job.n)
        stop_ids = frozenset([self.text.tokenizer.eot_id])
        for index, key in enumerate(keys):
            if job.max_tokens == 0:
                job.send(Finished(index, "length", 0))
                continue
            try:
                row = engine.add(RowSpec(job.ids, job.max_tokens, job.sampling, key, stop_ids, job.logprobs))
            except Exception as err:
                log.exception("admitting a request failed")
                job.send(Failed(f"generation failed: {type(err).__name__}: {err}", 500))
                return
            self.choices[row] = Choice(job, index, self.text.tokenizer)

    def _step(self, engine: Engine) -> None:
        rows = len(self.choices)
        self.stats.running = rows
        self.stats.largest_batch = max(self.stats.largest_batch, rows)
        events = engine.step()
        self.stats.steps += 1
        self.stats.tokens += len(events)
        for event in events:
            choice = self.choices[event.row]
            if choice.advance(event):  # ended: by the engine (stop id, length) or a stop string
                engine.cancel(event.row)
                del self.choices[event.row]
        self.stats.running = len(self.choices)

    def _drop_cancelled(self, engine: Engine) -> None:
        """Rows whose client left free their slot before the next step."""
        for row, choice in list(self.choices.items()):
            if choice.job.cancelled.is_set():
                engine.cancel(row)
                del self.choices[row]

    def _fail_running(self, message: str, status: int) -> None:
        for job in {id(c.job): c.job for c in self.choices.values()}.values():
            job.send(Failed(message, status))
        self.choices = {}
