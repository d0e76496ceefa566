"""The waiting room between the HTTP side and the model worker.

Requests wait here in arrival order. Between two decoding steps the worker takes as many
of the oldest jobs as its free engine rows hold (all choices of a job join together); a
job that does not fit waits for rows to free, and nobody behind it overtakes it: first come,
first served. Jobs of any sampling settings share the batch (each row samples with its
own). A full room refuses new jobs (the caller answers 429).
"""

from __future__ import annotations

import threading

from gpt2.serving.jobs import Job


class QueueFullError(Exception):
    """The scheduler already holds `max_queue` waiting jobs."""


class Scheduler:
    """A thread-safe first-in, first-out queue of jobs."""

    def __init__(self, max_queue: int) -> None:
        self.max_queue = max_queue
        self._waiting: list[Job] = []
        self._ready = threading.Condition()
        self._closed = False

    def submit(self, job: Job) -> None:
        """Queue `job`, or raise QueueFullError."""
        with self._ready:
            self._drop_cancelled()
            if self._closed:
                raise QueueFullError("the server is shutting down")
            if len(self._waiting) >= self.max_queue:
                raise QueueFullError(f"{len(self._waiting)} requests are already waiting")
            self._waiting.append(job)
            self._ready.notify()

    def take(self, rows: int, timeout: float = 0.0) -> list[Job]:
        """The oldest jobs whose choices fit in `rows`, waiting up to `timeout` seconds for one."""
        with self._ready:
            if timeout > 0:
                self._ready.wait_for(lambda: self._closed or self._has_work(), timeout)
            self._drop_cancelled()
            taken = []
            while self._waiting and self._waiting[0].n <= rows:
                job = self._waiting.pop(0)
                rows -= job.n
                taken.append(job)
            return taken

    def close(self) -> list[Job]:
        """Refuse new jobs, wake the worker, and hand back the jobs that were still waiting."""
        with self._ready:
            self._closed = True
            left, self._waiting = self._waiting, []
            self._ready.notify_all()
            return left

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
