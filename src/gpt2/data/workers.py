"""The worker processes of `gpt2 prepare`: one pass over the corpus, chunk by chunk, in parallel.

The main process hands out groups of consecutive chunks (see sources.py) and collects the
results in order, with at most 2 x workers + 2 groups in flight, so memory stays bounded
however large the corpus. Two passes use this pool: collecting the characters of the
corpus (the char tokenizer's vocabulary, train_tokenizer.py) and encoding it (prepare.py).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from gpt2.data.shards import dtype_for_vocab
from gpt2.data.sources import Chunk, Source, read_chunk
from gpt2.errors import GPT2Error
from gpt2.signals import become_worker, held_signals
from gpt2.tokenizers import Tokenizer, load_identity, load_tokenizer
from gpt2.tokenizers.char import UnknownCharacterError

GROUP_BYTES = 1 << 20

# Per-process state of the worker pool (set by init_worker).
_WORKER: dict[str, Any] = {}


def init_worker(sources: list[Source], tokenizer_dir: str | None, errors: str, field: str,
                token_dtype: str = "auto") -> None:
    """Give this process what its tasks need. Forked workers inherit the parent's tokenizer
    (set with `share_tokenizer`); spawned ones load the copy saved in `tokenizer_dir`."""
    inherited = _WORKER.get("tokenizer")
    if tokenizer_dir and (inherited is None or inherited.identity() != load_identity(tokenizer_dir)):
        inherited = load_tokenizer(tokenizer_dir)
    _WORKER.update(sources=sources, errors=errors, field=field, token_dtype=token_dtype, tokenizer=inherited)


def _start_worker(parent: int, initargs: tuple) -> None:
    """A pool process: signals of a worker (ignores Ctrl-C, dies with `parent`), then init_worker.
    A worker that cannot start ends quietly: the main process reports the broken pool, or is
    already stopping (its staging folder, which holds the tokenizer, may be gone)."""
    become_worker(parent)
    try:
        init_worker(*initargs)
    except Exception:
        os._exit(1)


def share_tokenizer(tokenizer: Tokenizer | None) -> None:
    """Make `tokenizer` the one forked workers inherit (None forgets it)."""
    if tokenizer is None:
        _WORKER.clear()
    else:
        tokenizer.encode("")  # build any lazy state once, here, so that forked workers share it
        _WORKER["tokenizer"] = tokenizer


def _read(chunk: Chunk, data: Any) -> list[str]:
    return read_chunk(_WORKER["sources"][chunk.source], chunk, _WORKER["errors"], _WORKER["field"], data)


def chunk_chars(task: list[tuple[Chunk, Any]]) -> set[str]:
    """The characters of some chunks (the char tokenizer's vocabulary pass); a task pairs each
    chunk with its content when the main process read it (streams.with_payloads), else None."""
    found: set[str] = set()
    for chunk, data in task:
        for text in _read(chunk, data):
            found.update(text)
    return found


def _encode_text(tokenizer: Tokenizer, text: str, source: Source, chunk: Chunk) -> np.ndarray:
    try:
        return tokenizer.encode_array(text)
    except UnknownCharacterError as err:
        where = (f"byte {chunk.start + len(text[:err.position].encode('utf-8')):,}" if source.kind == "text"
                 else f"a record after byte {chunk.start:,}")
        raise GPT2Error(f"{source.path}, {where}: {err.reason}") from None


def _chunk_tokens(chunk: Chunk, data: Any) -> tuple[np.ndarray, int]:
    """The tokens of one chunk, end-of-text after each document; (tokens, documents)."""
    tok: Tokenizer = _WORKER["tokenizer"]
    source = _WORKER["sources"][chunk.source]
    texts = _read(chunk, data)
    dtype = dtype_for_vocab(tok.vocab_size, _WORKER["token_dtype"])
    eot = np.array([tok.eot_id], dtype=dtype)
    parts: list[np.ndarray] = []
    for text in texts:
        parts.append(_encode_text(tok, text, source, chunk))
        if source.kind != "text":  # a record or a row is a whole document
            parts.append(eot)
    if chunk.ends_document:
        parts.append(eot)
    docs = len(texts) if source.kind != "text" else int(chunk.ends_document)
    return (np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)), docs


def encode_chunks(task: list[tuple[Chunk, Any]]) -> list[tuple[np.ndarray, int]]:
    """One worker task: the (tokens, documents) of several consecutive chunks (each with its
    content or None, as in chunk_chars)."""
    return [_chunk_tokens(chunk, data) for chunk, data in task]


def group_chunks(chunks: list[Chunk], workers: int) -> list[list[Chunk]]:
    """Consecutive chunks grouped into tasks of about min(1 MiB, corpus / (4 * workers)) bytes
    (fewer round trips for small chunks, still enough tasks to keep every worker busy)."""
    total = sum(c.end - c.start for c in chunks)
    target = max(1, min(GROUP_BYTES, total // (4 * workers)))
    groups: list[list[Chunk]] = [[]]
    size = 0
    for chunk in chunks:
        if size >= target:
            groups.append([])
            size = 0
        groups[-1].append(chunk)
        size += chunk.end - chunk.start
    return groups


def ordered_map(fn: Callable, items: Iterable, pool: ProcessPoolExecutor | None, workers: int) -> Iterator:
    """fn over items in order, at most 2 * workers + 2 pending at once (bounded memory)."""
    if pool is None:
        yield from map(fn, items)
        return
    pending: deque = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers + 2:
                yield _result(pending.popleft(), pool)
        while pending:
            yield _result(pending.popleft(), pool)
    except BrokenProcessPool:  # from a result, or from submit once the pool knows
        raise GPT2Error("a worker process died (killed, out of memory, or could not start); "
                        "nothing was written; try fewer --workers") from None


def _result(future: Future, pool: ProcessPoolExecutor) -> Any:
    """The future's result, or BrokenProcessPool once a worker has died. The executor notices a
    dead worker by itself, except when it was killed while writing its result: the executor's
    reader thread then waits for the rest of that message for ever, and so would we."""
    while True:
        try:
            return future.result(timeout=0.5)
        except FuturesTimeout:
            try:
                processes = list(getattr(pool, "_processes", {}).values())  # CPython keeps them here
            except RuntimeError:  # changed while we read it: look again at the next timeout
                continue
            if any(process.exitcode is not None for process in processes):
                raise BrokenProcessPool("a worker process died") from None


def default_workers() -> int:
    """The number of cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def make_pool(workers: int, initargs: tuple) -> ProcessPoolExecutor | None:
    """Worker processes (None for one worker: run in this process). A worker that dies makes
    every pending result raise BrokenProcessPool instead of waiting forever; the workers ignore
    Ctrl-C (the main process stops them) and die with the main process (gpt2/signals.py)."""
    if workers == 1:
        init_worker(*initargs)
        return None
    context = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                               initargs=(os.getpid(), initargs))
    with held_signals():  # a Ctrl-C now must not reach a worker before it ignores Ctrl-C
        pool.submit(int)  # (the first task forks the workers)
    return pool


def stop_pool(pool: ProcessPoolExecutor | None, *, wait: bool) -> None:
    """Shut the pool down.

    wait=False (an error, a full disk, Ctrl-C) drops queued work and returns at once. The
    workers are not killed: one ended while writing its result leaves half a message in the
    result pipe, and the executor's thread that reads it would wait for the rest forever. Each
    worker finishes the one chunk it holds and exits (and dies with this process, which the
    `gpt2` command ends at once after an error: see gpt2/__main__.py).

    wait=True (every result is in, so no worker is writing one) waits up to a few seconds for
    the workers to exit, then kills any that has not: a worker killed from outside while it
    held the task queue's lock leaves the others waiting for that lock forever, and the
    executor would wait for them."""
    if pool is None:
        return
    processes = list(getattr(pool, "_processes", {}).values())  # CPython's executor keeps them here
    pool.shutdown(wait=False, cancel_futures=not wait)
    if not wait:
        return
    deadline = time.monotonic() + STOP_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
    pool.shutdown(wait=True)


STOP_SECONDS = 5.0  # how long idle workers get to exit after the last result
