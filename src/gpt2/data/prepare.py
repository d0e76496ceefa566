"""`gpt2 prepare`: text -> token shards, streaming, in parallel, atomically.

    sources ──plan──> chunks ──worker processes (encode)──> ordered results ──> shards
                                                                           └─> meta.json

Memory stays bounded: the main process holds only chunk offsets, and at most
2 x workers + 2 tasks (a few MiB of text each at most) are in flight. The output is
deterministic: results are written in chunk order, whatever the number of workers.
Everything is first written under a hidden temporary folder inside the output folder
and swapped in at the end, meta.json last, so that a complete old or new set is on disk
at every moment (see _commit); an error leaves the output folder as it was.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from gpt2.data.shards import (
    ASIDE_PREFIX,
    FORMAT,
    META_FILE,
    SPLITS,
    TOKENIZER_DIR,
    ShardWriter,
    dtype_for_vocab,
    read_meta,
    write_meta,
)
from gpt2.data.sources import Chunk, Source, chunk_size_for, plan_chunks, read_chunk, resolve_sources
from gpt2.tokenizers import CharTokenizer, Tokenizer, get_tokenizer, load_identity, load_tokenizer
from gpt2.tokenizers.char import UnknownCharacterError

DEFAULT_SHARD_TOKENS = 100_000_000
TASK_BYTES = 1 << 20

# Per-process state of the worker pool (set by _init_worker).
_WORKER: dict[str, Any] = {}


def _init_worker(sources: list[Source], tokenizer_dir: str | None, errors: str, field: str,
                 dtype: str = "auto") -> None:
    inherited = _WORKER.get("tokenizer")  # forked workers inherit the parent's tokenizer
    if tokenizer_dir and (inherited is None or inherited.identity() != load_identity(tokenizer_dir)):
        inherited = load_tokenizer(tokenizer_dir)  # spawned workers load the saved copy
    _WORKER.update(sources=sources, errors=errors, field=field, dtype=dtype, tokenizer=inherited)


def _chunk_chars(chunks: list[Chunk]) -> set[str]:
    """Pass 1 of the char tokenizer: the characters of some chunks."""
    found: set[str] = set()
    for chunk in chunks:
        for text in read_chunk(_WORKER["sources"][chunk.source], chunk, _WORKER["errors"], _WORKER["field"]):
            found.update(text)
    return found


def _encode_text(tokenizer: Tokenizer, text: str, source: Source, chunk: Chunk,
                 dtype: np.dtype) -> np.ndarray:
    try:
        if isinstance(tokenizer, CharTokenizer):
            return tokenizer.encode_array(text)
        return np.asarray(tokenizer.encode(text, allow_special=False), dtype=dtype)
    except UnknownCharacterError as err:
        where = (f"byte {chunk.start + len(text[:err.position].encode('utf-8')):,}" if source.kind == "text"
                 else f"a record after byte {chunk.start:,}")
        raise ValueError(f"{source.path}, {where}: {err.reason}") from None


def _chunk_tokens(chunk: Chunk) -> tuple[np.ndarray, int]:
    """Pass 2: the tokens of one chunk, end-of-text after each document; (tokens, documents)."""
    tok: Tokenizer = _WORKER["tokenizer"]
    source = _WORKER["sources"][chunk.source]
    texts = read_chunk(source, chunk, _WORKER["errors"], _WORKER["field"])
    dtype = dtype_for_vocab(tok.vocab_size, _WORKER["dtype"])
    eot = np.array([tok.eot_id], dtype=dtype)
    parts: list[np.ndarray] = []
    for text in texts:
        parts.append(_encode_text(tok, text, source, chunk, dtype))
        if source.kind == "jsonl":
            parts.append(eot)
    if chunk.ends_document:
        parts.append(eot)
    docs = len(texts) if source.kind == "jsonl" else int(chunk.ends_document)
    return (np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)), docs


def _chunks_tokens(chunks: list[Chunk]) -> list[tuple[np.ndarray, int]]:
    """One worker task: several consecutive chunks (fewer round trips for small chunks)."""
    return [_chunk_tokens(chunk) for chunk in chunks]


def _tasks(chunks: list[Chunk], workers: int) -> list[list[Chunk]]:
    """Consecutive chunks grouped into tasks of about min(1 MiB, corpus / (4 * workers)) bytes."""
    total = sum(c.end - c.start for c in chunks)
    target = max(1, min(TASK_BYTES, total // (4 * workers)))
    tasks: list[list[Chunk]] = [[]]
    size = 0
    for chunk in chunks:
        if size >= target:
            tasks.append([])
            size = 0
        tasks[-1].append(chunk)
        size += chunk.end - chunk.start
    return tasks


def _ordered_map(fn: Callable, items: list, pool: Any, in_flight: int) -> Iterator:
    """fn over items in order, at most `in_flight` pending at once (bounded memory)."""
    if pool is None:
        yield from map(fn, items)
        return
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= in_flight:
            yield _result(pending.popleft())
    while pending:
        yield _result(pending.popleft())


def _result(future: Any) -> Any:
    try:
        return future.result()
    except BrokenProcessPool:
        raise ValueError("a worker process died (killed, or out of memory?); "
                         "nothing was written; try fewer --workers") from None


class _SplitWriter:
    """Writes one split's stream into shards of at most `shard_tokens` tokens."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype, shard_tokens: int) -> None:
        self.directory, self.split, self.dtype, self.shard_tokens = directory, split, dtype, shard_tokens
        self.shards: list[dict[str, Any]] = []
        self.writer: ShardWriter | None = None
        self.documents = 0

    def write(self, tokens: np.ndarray) -> None:
        while len(tokens):
            if self.writer is None:
                path = self.directory / f"{self.split}_{len(self.shards):06d}.bin"
                self.writer = ShardWriter(path, self.dtype)
            room = self.shard_tokens - self.writer.n_tokens
            self.writer.write(tokens[:room])
            tokens = tokens[room:]
            if self.writer.n_tokens == self.shard_tokens:
                self.shards.append(self.writer.close())
                self.writer = None

    def close(self) -> dict[str, Any]:
        if self.writer is not None:
            self.shards.append(self.writer.close())
            self.writer = None
        return {"shards": self.shards, "tokens": sum(s["tokens"] for s in self.shards),
                "documents": self.documents}


def _fingerprint(sources: list[Source], options: dict[str, Any], identity: dict[str, Any] | str) -> str:
    """Changes when an input file, an option or the tokenizer changes (for idempotent re-runs)."""
    files = [[str(s.path), s.size, s.path.stat().st_mtime_ns] for s in sources]
    blob = json.dumps({"files": files, "options": options, "tokenizer": identity}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _up_to_date(out: Path, old: dict[str, Any] | None, fingerprint: str) -> bool:
    """True (and says so) when `out` was prepared from these very inputs, options and tokenizer."""
    if old is None or old.get("fingerprint") != fingerprint:
        return False
    print(f"{out}: already up to date ({old['splits']['train']['tokens']:,} train tokens)", file=sys.stderr)
    return True


def _val_chunks(n_chunks: int, val_ratio: float, seed: int) -> set[int]:
    """Seeded choice of round(n * val_ratio) chunks for val (at least 1, at most n - 1)."""
    if val_ratio <= 0 or n_chunks < 2:
        return set()
    n_val = min(n_chunks - 1, max(1, round(n_chunks * val_ratio)))
    return set(np.random.default_rng(seed).permutation(n_chunks)[:n_val].tolist())


def _check_options(val_ratio: float, errors: str, workers: int, shard_tokens: int) -> None:
    if not 0 <= val_ratio < 1:
        raise ValueError(f"--val_ratio {val_ratio} must be in [0, 1)")
    if errors not in ("strict", "replace"):
        raise ValueError(f"--errors {errors!r} must be 'strict' or 'replace'")
    if workers < 1 or shard_tokens < 1:
        raise ValueError(f"--workers ({workers}) and --shard_tokens ({shard_tokens}) must be >= 1")


def _check_existing(out: Path, identity: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """The folder's current meta.json; refuses shards of another tokenizer unless overwrite."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if not (out / META_FILE).is_file():
        return None
    old = read_meta(out)
    if old.get("tokenizer") != identity and not overwrite:
        kind = old.get("tokenizer", {}).get("kind", "?")
        raise ValueError(f"{out} already holds shards made with a different tokenizer ({kind}, vocab "
                         f"{old.get('tokenizer', {}).get('vocab_size', '?')}); choose another --out "
                         "or pass --overwrite true to replace them")
    return old


def _build_tokenizer(name: str, sources: list[Source], chunks: list[Chunk], pool: Any, workers: int,
                     progress: bool) -> Tokenizer:
    if name != "char":
        return get_tokenizer(name)
    chars: set[str] = set()
    bar = tqdm(total=len(chunks), desc="characters", unit="chunk", disable=not progress)
    tasks = _tasks(chunks, workers)
    for task, found in zip(tasks, _ordered_map(_chunk_chars, tasks, pool, 2 * workers + 2), strict=True):
        chars |= found
        bar.update(len(task))
    bar.close()
    return CharTokenizer(chars)


def _owner_gone(folder: Path) -> bool:
    """True when the prepare process named by `folder`'s -<pid> suffix has exited."""
    try:
        os.kill(int(folder.name.rsplit("-", 1)[1]), 0)
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError):
        pass
    return False


def _recover(out: Path) -> None:
    """Clean up after a prepare that was killed: remove its temporary folder and, if it died
    while swapping shard sets, finish the swap or put the previous set back."""
    for tmp in (p for p in out.glob(".prepare-tmp-*") if _owner_gone(p)) if out.is_dir() else ():
        shutil.rmtree(tmp, ignore_errors=True)
    for aside in (p for p in out.glob(f"{ASIDE_PREFIX}*") if _owner_gone(p)) if out.is_dir() else ():
        if (out / META_FILE).is_file() and (aside / META_FILE).is_file():
            shutil.rmtree(aside)  # the new set was complete; only deleting the old one was left
        else:
            _restore(aside, out)


def _entries(meta: dict[str, Any]) -> list[str]:
    """What a meta.json describes besides itself: tokenizer/ and the shard files."""
    return [TOKENIZER_DIR, *(s["file"] for split in meta.get("splits", {}).values()
                             for s in split.get("shards", []))]


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _move(src: Path, dst: Path) -> None:
    """Rename `src` to `dst`, replacing what is there (a folder too)."""
    if dst.is_dir():
        shutil.rmtree(dst)
    os.replace(src, dst)


def _restore(aside: Path, out: Path) -> None:
    """Move a set put aside back into `out`, meta.json last."""
    for entry in sorted(aside.iterdir(), key=lambda e: e.name == META_FILE):
        _move(entry, out / entry.name)
    aside.rmdir()


def _commit(tmp: Path, out: Path, old: dict[str, Any] | None, meta: dict[str, Any]) -> None:
    """Swap the old set (meta.json, tokenizer/, shards) for the new one in `tmp` so that a
    complete set exists at every moment: the old set is moved aside into .prepare-old-<pid>/
    (meta.json last), the new one moved in (meta.json last, the commit mark), then the old one
    is deleted. On an error the old set is put back; if the process is killed, the next
    prepare does it (_recover)."""
    aside = out / f"{ASIDE_PREFIX}{os.getpid()}"
    moved: list[str] = []
    try:
        if old is not None:
            aside.mkdir()
            for name in [*_entries(old), META_FILE]:
                if (out / name).exists():
                    os.replace(out / name, aside / name)
        for name in _entries(meta):
            _move(tmp / name, out / name)
            moved.append(name)
        write_meta(out, meta)
    except BaseException:
        for name in moved:
            _remove(out / name)
        if aside.is_dir():
            _restore(aside, out)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def default_workers() -> int:
    """The number of cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _make_pool(workers: int, initargs: tuple) -> ProcessPoolExecutor | None:
    """Worker processes (None for one worker: run in this process). A worker that dies makes
    every pending result raise BrokenProcessPool instead of waiting forever."""
    if workers == 1:
        _init_worker(*initargs)
        return None
    context = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=initargs)


def _stop(pool: ProcessPoolExecutor | None, *, wait: bool) -> None:
    if pool is None:
        return
    if not wait:  # an error or Ctrl-C: drop queued work and stop the workers now
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=not wait)


def _tokenize_into(tmp: Path, sources: list[Source], chunks: list[Chunk], val: set[int], dtype: np.dtype,
                   pool: Any, workers: int, shard_tokens: int, progress: bool) -> dict[str, Any]:
    writers = {split: _SplitWriter(tmp, split, dtype, shard_tokens) for split in SPLITS}
    bar = tqdm(total=sum(s.size for s in sources), desc="tokenizing", unit="B", unit_scale=True,
               disable=not progress)
    tasks = _tasks(chunks, workers)
    results = (r for task in _ordered_map(_chunks_tokens, tasks, pool, 2 * workers + 2) for r in task)
    try:
        for index, (tokens, docs) in enumerate(results):
            writer = writers["val" if index in val else "train"]
            writer.write(tokens)
            writer.documents += docs
            bar.update(chunks[index].end - chunks[index].start)
    finally:
        bar.close()
        for w in writers.values():
            if w.writer is not None and sys.exc_info()[0] is not None:
                w.writer.abort()
    with ThreadPoolExecutor(len(writers)) as threads:  # the closing fsyncs overlap
        return dict(zip(writers, threads.map(_SplitWriter.close, writers.values()), strict=True))


def prepare(inputs: Iterable[str], out: str | Path, tokenizer: str = "gpt2", field: str = "text",
            glob: str = "**/*.txt", val_ratio: float = 0.1, seed: int = 0, workers: int | None = None,
            errors: str = "strict", shard_tokens: int = DEFAULT_SHARD_TOKENS,
            context_length: int | None = None, overwrite: bool = False, progress: bool = True,
            dtype: str = "auto") -> dict:
    """Tokenize `inputs` into shards + meta.json + tokenizer/ in `out`; returns the meta dict.

    Re-running with unchanged inputs and options does nothing. See the module docstring
    and docs/data.md for the format and the guarantees."""
    workers = workers or default_workers()
    _check_options(val_ratio, errors, workers, shard_tokens)
    sources = resolve_sources(list(inputs), glob)
    out = Path(out)
    chunks = plan_chunks(sources, chunk_size_for(sum(s.size for s in sources)))
    val = _val_chunks(len(chunks), val_ratio, seed)
    workers = min(workers, len(chunks))  # no idle processes for a small corpus
    created = not out.exists()
    tmp = out / f".prepare-tmp-{os.getpid()}"
    pool = None
    _recover(out)
    options = {"field": field, "glob": glob, "val_ratio": val_ratio, "seed": seed, "errors": errors,
               "shard_tokens": shard_tokens}
    try:
        if tokenizer == "char":  # its vocabulary is the corpus's characters: a first parallel pass
            # That vocabulary is a function of the inputs and options, so a re-run is recognised
            # before the corpus is read (the requested dtype stands in for the resolved one).
            fingerprint = _fingerprint(sources, {**options, "dtype": dtype}, "char")
            old = read_meta(out) if (out / META_FILE).is_file() else None
            if _up_to_date(out, old, fingerprint):
                return old
            pool = _make_pool(workers, (sources, None, errors, field))
        tok = _build_tokenizer(tokenizer, sources, chunks, pool, workers, progress)
        shard_dtype = dtype_for_vocab(tok.vocab_size, dtype)  # refuses a vocabulary that does not fit
        options["dtype"] = shard_dtype.name
        if tokenizer != "char":
            fingerprint = _fingerprint(sources, options, tok.identity())
        old = _check_existing(out, tok.identity(), overwrite)
        if _up_to_date(out, old, fingerprint):
            return old
        tmp.mkdir(parents=True)
        tok.save(tmp / TOKENIZER_DIR)
        _stop(pool, wait=True)  # the character pass is done
        tok.encode("")  # build any lazy state once, here, so that forked workers share it
        _WORKER["tokenizer"] = tok  # forked workers inherit it; spawned ones load the saved copy
        pool = _make_pool(workers, (sources, str(tmp / TOKENIZER_DIR), errors, field, shard_dtype.name))
        splits = _tokenize_into(tmp, sources, chunks, val, shard_dtype, pool, workers, shard_tokens,
                                progress)
        _check_lengths(splits, context_length)
        meta = {"format": FORMAT, "version": 1, "tokenizer": tok.identity(), "vocab_size": tok.vocab_size,
                "eot_id": tok.eot_id, "dtype": shard_dtype.name,
                "sources": [{"path": str(s.path), "kind": s.kind, "bytes": s.size} for s in sources],
                "split": {"by": "chunk", "val_ratio": val_ratio, "seed": seed, "chunks": len(chunks),
                          "val_chunks": len(val)},
                "options": options, "splits": splits, "fingerprint": fingerprint}
        _commit(tmp, out, old, meta)  # meta.json last: the folder is complete from here
        return meta
    except BaseException:
        _stop(pool, wait=False)
        pool = None
        shutil.rmtree(tmp, ignore_errors=True)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    finally:
        _stop(pool, wait=True)
        _WORKER.clear()
        shutil.rmtree(tmp, ignore_errors=True)


def _check_lengths(splits: dict[str, Any], context_length: int | None) -> None:
    if splits["train"]["tokens"] == 0:
        raise ValueError("the corpus produced no training tokens")
    if context_length is not None and splits["train"]["tokens"] <= context_length:
        raise ValueError(f"the train split has {splits['train']['tokens']:,} tokens, fewer than one window "
                         f"of --context_length + 1 = {context_length + 1:,}; use more text or a smaller "
                         "--context_length")


def prepare_command(input: str | list[str], out: str, tokenizer: str = "gpt2", field: str = "text",
                    glob: str = "**/*.txt", val_ratio: float = 0.1, seed: int = 0, workers: int | None = None,
                    errors: str = "strict", shard_tokens: int = DEFAULT_SHARD_TOKENS,
                    context_length: int | None = None, overwrite: bool = False,
                    progress: bool = True, dtype: str = "auto") -> None:
    """Tokenize text into shards for training (streaming, on all cores, re-runs are free).

    Args:
        input: Text file(s), folder(s), glob(s), .jsonl file(s), or the built-in corpus `shakespeare`;
            several as a list: --input '[a.txt, b/]'.
        out: Output folder: shards, meta.json and the tokenizer in tokenizer/.
        tokenizer: gpt2 (GPT-2 BPE), char (characters of this corpus), a SentencePiece .model file,
            or a folder holding a saved tokenizer (a checkpoint, another prepared folder's tokenizer/).
        field: The text field of .jsonl records.
        glob: Which files of a folder to read (recursive with **).
        val_ratio: Fraction of the corpus (in chunks of whole lines/records, seeded) held out for validation.
        seed: Seed of the train/val split.
        workers: Worker processes (default: all cores).
        errors: strict (bytes that are not UTF-8 are an error naming file and offset) or replace (U+FFFD).
        shard_tokens: Tokens per shard file at most.
        context_length: If given, fail unless the train split holds at least one window of this length.
        dtype: Token type in the shards: auto (uint16 if the vocabulary fits, else uint32), uint16, uint32.
        overwrite: Replace shards in --out made with a different tokenizer.
        progress: Show progress bars.
    """
    inputs = [input] if isinstance(input, str) else list(input)
    meta = prepare(inputs, out, tokenizer=tokenizer, field=field, glob=glob, val_ratio=val_ratio, seed=seed,
                   workers=workers, errors=errors, shard_tokens=shard_tokens, context_length=context_length,
                   overwrite=overwrite, progress=progress, dtype=dtype)
    counts = ", ".join(f"{split} {meta['splits'][split]['tokens']:,} tokens" for split in SPLITS)
    print(f"{out}: {meta['tokenizer']['kind']} (vocab {meta['vocab_size']:,}, {meta['dtype']}): {counts}")
