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
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from gpt2.data.shards import dtype_for_vocab
from gpt2.data.sources import Chunk, Source, read_chunk
from gpt2.errors import GPT2Error
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
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= 2 * workers + 2:
            yield _result(pending.popleft())
    while pending:
        yield _result(pending.popleft())


def _result(future: Any) -> Any:
    try:
        return future.result()
    except BrokenProcessPool:
        raise GPT2Error("a worker process died (killed, or out of memory?); "
                        "nothing was written; try fewer --workers") from None


def default_workers() -> int:
    """The number of cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def make_pool(workers: int, initargs: tuple) -> ProcessPoolExecutor | None:
    """Worker processes (None for one worker: run in this process). A worker that dies makes
    every pending result raise BrokenProcessPool instead of waiting forever."""
    if workers == 1:
        init_worker(*initargs)
        return None
    context = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker, initargs=initargs)


def stop_pool(pool: ProcessPoolExecutor | None, *, wait: bool) -> None:
    """Shut the pool down; wait=False (an error, a full disk, Ctrl-C) drops queued work and
    returns at once. The workers are not killed: one ended while writing its result leaves
    half a message in the result pipe, and the executor's thread that reads it (which the
    interpreter joins at exit) would wait for the rest forever. Each worker finishes the one
    chunk it holds and exits; a worker that died is the executor's own broken-pool case."""
    if pool is not None:
        pool.shutdown(wait=wait, cancel_futures=not wait)
