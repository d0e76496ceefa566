"""`gpt2 prepare`: text -> token shards, streaming, in parallel, atomically.

    sources ──plan──> chunks ──worker processes (encode)──> ordered results ──> shards
                                                                           └─> meta.json

Memory stays bounded: the main process holds only chunk offsets, and a few MiB of text
per worker are in flight (workers.py). The output is deterministic: results are written
in chunk order, whatever the number of workers. Everything is written into a staging
folder beside the output folder and swapped in at the end (gpt2.files.replace_dir), so a
complete old or new data set is on disk at every moment; an error leaves it as it was.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from gpt2.data import workers
from gpt2.data.meta import META_FILE, ShardsMeta, SplitInfo
from gpt2.data.options import SPLITS, PrepareOptions
from gpt2.data.shards import TOKENIZER_DIR, SplitWriter, dtype_for_vocab
from gpt2.data.sources import Chunk, CorpusOptions, Source, chunk_size_for, plan_chunks, resolve_sources
from gpt2.data.streams import with_payloads
from gpt2.data.train_tokenizer import char_vocabulary
from gpt2.errors import GPT2Error
from gpt2.files import recover_dir, replace_dir, staging_dir
from gpt2.tokenizers import Tokenizer, get_tokenizer


def _fingerprint(sources: list[Source], settings: dict[str, Any], identity: dict[str, Any] | str) -> str:
    """Changes when an input file, a setting or the tokenizer changes (for idempotent re-runs)."""
    files = [[str(s.path), s.size, s.path.stat().st_mtime_ns] for s in sources]
    blob = json.dumps({"files": files, "options": settings, "tokenizer": identity}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _up_to_date(out: Path, old: ShardsMeta | None, fingerprint: str) -> bool:
    """True (and says so) when `out` was prepared from these very inputs, options and tokenizer."""
    if old is None or old.fingerprint != fingerprint:
        return False
    if old.splits["val"].tokens == 0 and (old.val_ratio or 0) > 0:
        return False  # made by a version that left a tiny corpus without validation: make it again
    print(f"{out}: already up to date ({old.splits['train'].tokens:,} train tokens)", file=sys.stderr)
    return True


def _val_chunks(n_chunks: int, val_ratio: float, seed: int) -> set[int]:
    """Seeded choice of round(n * val_ratio) chunks for val (at least 1, at most n - 1)."""
    if val_ratio <= 0 or n_chunks < 2:
        return set()
    n_val = min(n_chunks - 1, max(1, round(n_chunks * val_ratio)))
    return set(np.random.default_rng(seed).permutation(n_chunks)[:n_val].tolist())


def _refuse_output_inside_inputs(out: Path, inputs: list[str]) -> None:
    """A prepared folder inside an input folder would be read back as text by the next run
    (its own shards and meta.json tokenized as a corpus): refuse it from the first run on."""
    root = out.resolve()
    for folder in (Path(i).resolve() for i in inputs if Path(i).is_dir()):
        if root == folder or folder in root.parents:
            raise GPT2Error(f"--out {out} is inside the input folder {folder}, so a later run would read its "
                            "shards as text; choose an --out outside the inputs")


def _existing(out: Path) -> ShardsMeta | None:
    """The meta.json of the data set in `out`, None if there is none; refuses an `out` that
    holds anything else (swapping it out would delete those files)."""
    recover_dir(out, META_FILE)  # a prepare killed between its two renames
    if out.exists() and not out.is_dir():
        raise GPT2Error(f"--out {out} exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return None
    if not (out / META_FILE).is_file():
        raise GPT2Error(f"--out {out} is not empty and holds no prepared shards; choose another --out")
    return ShardsMeta.read(out)


def _check_tokenizer(out: Path, old: ShardsMeta | None, identity: dict[str, Any], overwrite: bool) -> None:
    if old is not None and old.tokenizer != identity and not overwrite:
        kind, vocab = old.tokenizer.get("kind", "?"), old.tokenizer.get("vocab_size", "?")
        raise GPT2Error(f"{out} already holds shards made with a different tokenizer ({kind}, vocab "
                        f"{vocab}); choose another --out "
                        "or pass --overwrite true to replace them")


def _tokenize_into(tmp: Path, sources: list[Source], chunks: list[Chunk], field: str, val: set[int],
                   dtype: np.dtype, pool: ProcessPoolExecutor | None, n_workers: int, shard_tokens: int,
                   progress: bool) -> dict[str, SplitInfo]:
    """Encode every chunk (in the pool) and write it to its split's shards in `tmp`."""
    writers = {split: SplitWriter(tmp, split, dtype, shard_tokens) for split in SPLITS}
    bar = tqdm(total=sum(s.size for s in sources), desc="tokenizing", unit="B", unit_scale=True,
               disable=not progress)
    groups = workers.group_chunks(chunks, n_workers)
    tasks = with_payloads(groups, sources, field)  # compressed .jsonl and Parquet are read here
    encoded = workers.ordered_map(workers.encode_chunks, tasks, pool, n_workers)
    results = (r for group in encoded for r in group)
    try:
        for index, (tokens, docs) in enumerate(results):
            writer = writers["val" if index in val else "train"]
            writer.write(tokens)
            writer.documents += docs
            bar.update(chunks[index].end - chunks[index].start)
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    finally:
        bar.close()
    with ThreadPoolExecutor(len(writers)) as threads:  # the closing fsyncs overlap
        return dict(zip(writers, threads.map(SplitWriter.close, writers.values()), strict=True))


def prepare(inputs: Iterable[str], out: str | Path, tokenizer: str = "gpt2",
            corpus: CorpusOptions = CorpusOptions(),
            options: PrepareOptions = PrepareOptions()) -> ShardsMeta:
    """Tokenize `inputs` into shards + meta.json + tokenizer/ in `out`; returns its meta.json.

    tokenizer: gpt2, char (the corpus's characters), a SentencePiece .model file or a folder
    holding a saved tokenizer. Re-running with unchanged inputs and options does nothing.
    See the module docstring and docs/data.md for the format and the guarantees."""
    o, out, inputs = options, Path(out), list(inputs)
    sources = resolve_sources(inputs, corpus.glob)
    _refuse_output_inside_inputs(out, inputs)
    chunks = plan_chunks(sources, chunk_size_for(sum(s.size for s in sources)), corpus.field)
    if len(chunks) < 2 and o.val_ratio > 0:  # a tiny corpus: cut finer, so validation gets some of it
        chunks = plan_chunks(sources, max(1, sum(s.size for s in sources) // 16), corpus.field)
    if len(chunks) < 2 and o.val_ratio > 0:  # one line or one record: it cannot be split
        one = "record" if sources[0].kind != "text" else "line"
        raise GPT2Error(f"the corpus is a single {one} ({sources[0].size:,} bytes): too little to hold out a "
                        "validation split, which `gpt2 train` needs; add more text (two lines at the very "
                        "least, far more for a useful model)")
    val = _val_chunks(len(chunks), o.val_ratio, o.seed)
    n_workers = min(o.workers or workers.default_workers(), len(chunks))  # no idle workers on a small corpus
    old = _existing(out)
    settings = {**asdict(corpus), "val_ratio": o.val_ratio, "seed": o.seed, "shard_tokens": o.shard_tokens}
    pool, tmp = None, None
    try:
        if tokenizer == "char":  # its vocabulary is the corpus's characters: a first parallel pass
            # That vocabulary is a function of the inputs and options, so a re-run is recognised
            # before the corpus is read (the requested token_dtype stands in for the resolved one).
            fingerprint = _fingerprint(sources, {**settings, "dtype": o.token_dtype}, "char")
            if _up_to_date(out, old, fingerprint):
                return old
            pool = workers.make_pool(n_workers, (sources, None, corpus.errors, corpus.field))
            tok: Tokenizer = char_vocabulary(sources, chunks, corpus.field, pool, n_workers, o.progress)
            workers.stop_pool(pool, wait=True)
            pool = None
        else:
            tok = get_tokenizer(tokenizer)
        shard_dtype = dtype_for_vocab(tok.vocab_size, o.token_dtype)  # refuses a vocabulary that does not fit
        settings["dtype"] = shard_dtype.name
        if tokenizer != "char":
            fingerprint = _fingerprint(sources, settings, tok.identity())
        _check_tokenizer(out, old, tok.identity(), o.overwrite)
        if _up_to_date(out, old, fingerprint):
            return old
        tmp = staging_dir(out)
        tok.save(tmp / TOKENIZER_DIR)
        workers.share_tokenizer(tok)  # forked workers inherit it; spawned ones load the saved copy
        pool = workers.make_pool(n_workers, (sources, str(tmp / TOKENIZER_DIR), corpus.errors, corpus.field,
                                         shard_dtype.name))
        splits = _tokenize_into(tmp, sources, chunks, corpus.field, val, shard_dtype, pool, n_workers,
                                o.shard_tokens, o.progress)
        _check_lengths(splits, o.context_length)
        inputs_json = [{"path": str(s.path), "kind": s.kind + s.compression, "bytes": s.size}
                       for s in sources]
        how = {"by": "chunk", "val_ratio": o.val_ratio, "seed": o.seed, "chunks": len(chunks),
               "val_chunks": len(val)}
        meta = ShardsMeta(splits, tok.identity(), vocab_size=tok.vocab_size, eot_id=tok.eot_id,
                          dtype=shard_dtype.name, sources=inputs_json, split=how, options=settings,
                          fingerprint=fingerprint)
        meta.write(tmp)
        replace_dir(tmp, out)  # the new set takes the place of the old one in one rename
        return meta
    except BaseException:
        workers.stop_pool(pool, wait=False)
        pool = None
        raise
    finally:
        workers.stop_pool(pool, wait=True)
        workers.share_tokenizer(None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _check_lengths(splits: dict[str, SplitInfo], context_length: int | None) -> None:
    if splits["train"].tokens == 0:
        raise GPT2Error("the corpus produced no training tokens")
    if context_length is not None and splits["train"].tokens <= context_length:
        raise GPT2Error(f"the train split has {splits['train'].tokens:,} tokens, fewer than one window "
                        f"of --context_length + 1 = {context_length + 1:,}; use more text or a smaller "
                        "--context_length")
