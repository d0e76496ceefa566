"""Where the text comes from, and how it is cut into chunks for parallel tokenisation.

Inputs: text files, folders (searched recursively with a glob), glob patterns, `.jsonl`
files (one JSON record per line, text in a named field; also compressed, .jsonl.gz and
.jsonl.zst), Parquet files (text in a named column) and the built-in corpus `shakespeare`.
A text file is one document; a .jsonl record or a Parquet row is one document.

A *chunk* is a byte range of one file, cut at a paragraph break (or a line break) so it
holds whole lines; a .jsonl chunk holds whole records. Chunks are the unit of work for
the worker processes and the unit of the train/val split, and only their offsets are
kept in memory: a corpus far larger than RAM is read one chunk at a time. Compressed
.jsonl and Parquet are read front to back instead (streams.py).
"""

from __future__ import annotations

import dataclasses
import glob as globlib
import json
from dataclasses import dataclass
from pathlib import Path

from gpt2.data import streams
from gpt2.data.corpus import BUILTIN_CORPORA, shakespeare_files
from gpt2.errors import GPT2Error

JSONL_SUFFIXES = (".jsonl", ".ndjson")
MIN_CHUNK, MAX_CHUNK = 4 << 10, 4 << 20  # bytes
_SCAN = 1 << 16  # bytes read at a time when looking for a cut point


@dataclass(frozen=True)
class CorpusOptions:
    """How to read a corpus (shared by `gpt2 prepare` and `gpt2 tokenizer train`).

    Args:
        glob: Which files of a folder to read (recursive with **).
        field: The text field of .jsonl records, or the text column of Parquet files.
        errors: strict (bytes that are not UTF-8 are an error naming file and offset) or replace (U+FFFD).
    """

    glob: str = "**/*.txt"
    field: str = "text"
    errors: str = "strict"

    def __post_init__(self) -> None:
        parts = self.glob.replace("\\", "/").split("/")
        if not self.glob or self.glob.startswith(("/", "~")) or ".." in parts or ":" in parts[0]:
            raise GPT2Error(f"--glob {self.glob!r} must be a pattern inside the input folder (relative, "
                            "without '..'), e.g. '**/*.txt'")
        if self.errors not in ("strict", "replace"):
            raise GPT2Error(f"--errors {self.errors!r} must be 'strict' or 'replace'")


@dataclass(frozen=True)
class Source:
    path: Path
    kind: str  # "text" | "jsonl" | "parquet"
    size: int  # bytes the chunk offsets count: the file's, or the decompressed stream's
    compression: str = ""  # "" | ".gz" | ".zst" (a compressed .jsonl)


@dataclass(frozen=True)
class Chunk:
    source: int  # index into the list of sources
    start: int  # byte offsets [start, end)
    end: int
    ends_document: bool  # a text file's last chunk: append end-of-text after it
    rows: tuple[int, int] | None = None  # Parquet: the rows [first, last) it holds


def _source(path: Path) -> Source:
    """The kind of a file from its name, and the size its chunk offsets count."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes[-1:] == [streams.PARQUET_SUFFIX]:
        return Source(path, "parquet", path.stat().st_size)
    if len(suffixes) == 2 and suffixes[1] in streams.COMPRESSIONS:
        if suffixes[0] not in JSONL_SUFFIXES:
            raise GPT2Error(f"{path}: compressed inputs must be .jsonl.gz or .jsonl.zst (one JSON record "
                            "per line); decompress other files first")
        return Source(path, "jsonl", streams.decompressed_size(path, suffixes[1]), suffixes[1])
    return Source(path, "jsonl" if suffixes[-1:] and suffixes[-1] in JSONL_SUFFIXES else "text",
                  path.stat().st_size)


def _expand(item: str, glob: str) -> list[Path]:
    path = Path(item)
    if item in BUILTIN_CORPORA and not path.exists():  # a real file or folder of that name wins
        return shakespeare_files()
    if path.is_dir():
        files = sorted(p for p in path.glob(glob) if p.is_file())
        if not files:
            raise GPT2Error(f"folder {path} has no files matching --glob {glob!r}")
        return files
    if path.is_file():
        return [path]
    if any(ch in item for ch in "*?["):
        files = sorted(Path(p) for p in globlib.glob(item, recursive=True) if Path(p).is_file())
        if not files:
            raise GPT2Error(f"the glob {item!r} matches no files")
        return files
    if path.exists():  # a device, a fifo, a socket: nothing to read text from
        raise GPT2Error(f"input {item} is not a regular file or a folder")
    raise FileNotFoundError(f"input {item} does not exist (expected a file, a folder, a glob, "
                            f"or the built-in corpus {', '.join(BUILTIN_CORPORA)})")


def resolve_sources(inputs: list[str], glob: str = "**/*.txt") -> list[Source]:
    """Expand inputs into a de-duplicated, ordered list of files; refuses an empty corpus."""
    if not inputs:
        raise GPT2Error("no inputs: give text files, folders, .jsonl files or 'shakespeare'")
    seen, sources = set(), []
    for item in inputs:
        for path in _expand(str(item), glob):
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                sources.append(dataclasses.replace(_source(path), path=key))
    if sum(s.size for s in sources) == 0:
        names = ", ".join(str(s.path) for s in sources[:3])
        raise GPT2Error(f"the corpus is empty: {names}{' ...' if len(sources) > 3 else ''} hold 0 bytes")
    return sources


def chunk_size_for(total_bytes: int) -> int:
    """About 256 chunks per corpus (enough for a meaningful split and even load), 4 KiB-4 MiB."""
    return max(MIN_CHUNK, min(MAX_CHUNK, total_bytes // 256))


def _next_cut(f, pos: int, size: int, target: int, records: bool) -> int:
    """First good cut at or after `pos`, reading 64 KiB at a time (planning never reads the
    corpus): text is cut after a blank line if the first block has one, else after the next
    line break; records (.jsonl) only after a line break, however far; text with no line
    break within `target` bytes at a UTF-8 character boundary."""
    f.seek(pos)
    block = f.read(min(_SCAN, target))
    if not records and b"\n\n" in block:
        return pos + block.index(b"\n\n") + 2
    start, scanned = pos, 0
    while block:
        if b"\n" in block:
            return pos + block.index(b"\n") + 1
        pos, scanned = pos + len(block), scanned + len(block)
        if not records and scanned >= target:
            break
        block = f.read(_SCAN)
    if records:
        return size
    f.seek(start)
    head = f.read(4)
    offset = next(i for i, byte in enumerate(head + b"\0") if byte & 0xC0 != 0x80)  # skip continuation bytes
    return start + offset


def plan_chunks(sources: list[Source], target: int, field: str = "text") -> list[Chunk]:
    """Cut every source into chunks of about `target` bytes (reads only near the cut points;
    a compressed .jsonl is decompressed up to each cut, Parquet planned from its metadata)."""
    chunks = []
    for index, source in enumerate(sources):
        if source.kind == "parquet":
            rows = streams.parquet_plan(source.path, field, target)
            n_rows = rows[-1][1] if rows else 1  # offsets: the rows' share of the file's bytes
            chunks += [Chunk(index, first * source.size // n_rows, last * source.size // n_rows, False,
                             (first, last)) for first, last in rows]
            continue
        start = 0
        with (streams.open_decompressed(source.path, source.compression) if source.compression
              else open(source.path, "rb")) as f:
            while start < source.size:
                end = source.size
                if source.size - start > target * 3 // 2:
                    end = _next_cut(f, start + target, source.size, target, source.kind == "jsonl")
                chunks.append(Chunk(index, start, end, source.kind == "text" and end == source.size))
                start = end
    return chunks


REPLACE_HINT = "fix the file or pass --errors replace to substitute U+FFFD"


def decode_utf8(data: bytes, path: Path, offset: int, errors: str, fix: str = REPLACE_HINT) -> str:
    """UTF-8 text of a chunk; a bad byte is a GPT2Error naming the file and byte offset, and `fix`."""
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as err:
        raise GPT2Error(f"{path}: byte {offset + err.start:,} is not valid UTF-8 ({data[err.start]:#04x}); "
                        f"{fix}") from None


def read_chunk(source: Source, chunk: Chunk, errors: str = "strict", field: str = "text",
               data: bytes | list[str] | None = None) -> list[str]:
    """The documents (or document pieces) in a chunk: one string for text, one per .jsonl
    record or Parquet row. `data`: the chunk's content when the main process read it
    (compressed .jsonl, Parquet: see streams.with_payloads); else it is read from the file."""
    if source.kind == "parquet":
        assert isinstance(data, list), "Parquet rows are read by streams.with_payloads"
        return data
    if data is None:
        with open(source.path, "rb") as f:
            f.seek(chunk.start)
            data = f.read(chunk.end - chunk.start)
    assert isinstance(data, bytes)
    if source.kind == "text":
        return [decode_utf8(data, source.path, chunk.start, errors)]
    texts, offset = [], chunk.start
    for line in data.split(b"\n"):
        if line.strip():
            texts.append(_record_text(line, source.path, offset, errors, field))
        offset += len(line) + 1
    return texts


def _record_text(line: bytes, path: Path, offset: int, errors: str, field: str) -> str:
    try:
        record = json.loads(decode_utf8(line, path, offset, errors))
    except json.JSONDecodeError as err:
        raise GPT2Error(f"{path}: the line at byte {offset:,} is not valid JSON ({err.msg})") from None
    if not isinstance(record, dict) or field not in record:
        keys = sorted(record)[:8] if isinstance(record, dict) else type(record).__name__
        raise GPT2Error(f"{path}: the record at byte {offset:,} has no {field!r} field (it has {keys}); "
                         "choose the text field with --field")
    if not isinstance(record[field], str):
        raise GPT2Error(f"{path}: the record at byte {offset:,} has a non-string {field!r} field")
    return record[field]
