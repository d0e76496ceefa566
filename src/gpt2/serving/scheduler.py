"""The waiting room between the HTTP side and the model worker.

Requests wait here in arrival order. The worker takes the oldest one and, with it, every
later waiting job that can share its batch (same sampling settings, see `Job.batch_key`),
up to `max_batch` sequences: first come, first served, but nobody who could ride along
waits for a batch of their own. A full room refuses new jobs (the caller answers 429).
"""

from __future__ import annotations

import threading

from gpt2.serving.jobs import Job


class QueueFullError(Exception):
    """The scheduler already holds `max_queue` waiting jobs."""


class Scheduler:
    """A thread-safe queue of jobs that hands them out in compatible groups."""

    def __init__(self, max_batch: int, max_queue: int) -> None:
        self.max_batch, self.max_queue = max_batch, max_queue
        self._waiting: list[Job] = []
        self._ready = threading.Condition()
        self._closed = False

    def submit(self, job: Job) -> None:
        """Queue `job`, or raise QueueFullError."""
        with self._ready:
            self._drop_cancelled()
            if len(self._waiting) >= self.max_queue:
                raise QueueFullError(f"{len(self._waiting)} requests are already waiting")
            self._waiting.append(job)
            self._ready.notify()

    def next_batch(self, timeout: float | None = None) -> list[Job]:
        """Block until a job waits (or `timeout`, or close); return it with its companions."""
        with self._ready:
            self._ready.wait_for(lambda: self._closed or self._has_work(), timeout)
            self._drop_cancelled()
            if not self._waiting:
                return []
            head = self._waiting.pop(0)
            batch, rows = [head], head.n
            for job in list(self._waiting):
                if job.batch_key() == head.batch_key() and rows + job.n <= self.max_batch:
                    self._waiting.remove(job)
                    batch.append(job)
                    rows += job.n
            return batch

    def close(self) -> None:
        """Wake the worker so it can stop."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def waiting(self) -> int:
        with self._ready:
            self._drop_cancelled()
            return len(self._waiting)

    def _has_work(self) -> bool:
        return any(not job.cancelled.is_set() for job in self._waiting)

    def _drop_cancelled(self) -> None:
        """Jobs whose client left before they started never reach the model."""
        self._waiting = [job for job in self._waiting if not job.cancelled.is_set()]
