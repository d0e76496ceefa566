"""Sources read front to back: compressed .jsonl (.gz, .zst) and Parquet.

A plain file is read by the worker processes themselves, each seeking to its chunk's
offsets (sources.py). A compressed stream cannot be seeked, and a Parquet file is read a
row group at a time, so these sources are read once, in order, by the main process, and
each chunk's content travels to a worker with its task (`with_payloads`). Memory stays
bounded as for text: the chunks of the tasks in flight, plus, for Parquet, the text column
of one row group (pyarrow's unit of reading).

- `.jsonl.gz` / `.jsonl.zst` (also `.ndjson.*`): chunk offsets count bytes of the
  decompressed stream and are cut exactly as in the same `.jsonl` uncompressed, so both
  give the same shards. The decompressed size is found by decompressing the file once when
  the corpus is resolved, which also finds a corrupt file before any work.
- Parquet: one document per row, the text in the column named by --field. A chunk is a
  range of rows, planned from the file's metadata alone (rows and uncompressed bytes of the
  column); its offsets are the same share of the file's bytes, for task sizes and progress.

pyarrow and zstandard are imported only when such a file is read; without them the error
says what to install.
"""

from __future__ import annotations

import gzip
import importlib
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

from gpt2.errors import GPT2Error

COMPRESSIONS = {".gz": "gzip", ".zst": "zstandard"}
PARQUET_SUFFIX = ".parquet"
_BLOCK = 1 << 20  # bytes decompressed at a time when sizing a stream
_BATCH_ROWS = 1024  # Parquet rows decoded into Python strings at a time


def _require(module: str, path: Path) -> ModuleType:
    """Import an optional dependency, or a one-line error naming the file and the install."""
    package = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise GPT2Error(f"{path}: reading this file needs the {package} package; install it with "
                        f"`pip install 'gpt2-from-scratch[data]'` (or `pip install {package}`)") from None


def _decompress_errors(compression: str) -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error)
    if compression == ".zst":
        errors += (importlib.import_module("zstandard").ZstdError,)
    return errors


@contextmanager
def _corrupt_is_an_error(path: Path, compression: str) -> Iterator[None]:
    """A truncated or corrupt compressed file becomes a one-line GPT2Error naming it."""
    try:
        yield
    except _decompress_errors(compression) as err:
        raise GPT2Error(f"{path}: not a valid {COMPRESSIONS[compression]} file ({err}); "
                        "re-download or re-compress it") from None


def open_decompressed(path: Path, compression: str) -> BinaryIO:
    """The decompressed bytes of a .gz or .zst file, as a file that seeks forward only."""
    if compression == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    zstandard = _require("zstandard", path)
    # read_across_frames: files written by parallel compressors hold many frames.
    return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), read_across_frames=True,
                                                      closefd=True)


def read_exactly(f: BinaryIO, n: int, path: Path, compression: str) -> bytes:
    """The next n decompressed bytes (a stream reader may return fewer per call)."""
    parts, left = [], n
    with _corrupt_is_an_error(path, compression):
        while left > 0:
            part = f.read(min(left, _BLOCK))
            if not part:
                raise EOFError(f"the stream ended {left:,} bytes early")
            parts.append(part)
            left -= len(part)
    return b"".join(parts)


def decompressed_size(path: Path, compression: str) -> int:
    """Bytes of the decompressed stream (decompresses it all once, and so checks it)."""
    with _corrupt_is_an_error(path, compression):
        if compression == ".zst":
            return _zstd_size(path)
        size = 0
        with open_decompressed(path, compression) as f:
            while block := f.read(_BLOCK):
                size += len(block)
        return size


def _zstd_size(path: Path) -> int:
    """Frame by frame, because zstandard's stream reader ends quietly at a cut-off last frame."""
    zstandard = _require("zstandard", path)
    size, frame, open_frame = 0, zstandard.ZstdDecompressor().decompressobj(), False
    with open(path, "rb") as raw:
        while block := raw.read(1 << 16):
            while block:
                size += len(frame.decompress(block))
                open_frame = not frame.eof
                block = b"" if open_frame else frame.unused_data
                if not open_frame:
                    frame = zstandard.ZstdDecompressor().decompressobj()
    if open_frame:
        raise EOFError("the file ends inside a frame (truncated?)")
    return size


def parquet_file(path: Path) -> Any:
    """A pyarrow ParquetFile (reads only the footer), or a one-line error for a bad file."""
    pq = _require("pyarrow.parquet", path)
    try:
        return pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises ArrowInvalid / OSError for files that are not Parquet
        raise GPT2Error(f"{path}: not a readable Parquet file ({err})") from None


def parquet_column(pf: Any, path: Path, field: str) -> int:
    """Index of the text column `field` among the file's leaf columns; refuses a missing or
    non-text column, naming the columns there are."""
    names = [pf.metadata.schema.column(i).path for i in range(pf.metadata.num_columns)]
    if field not in names:
        raise GPT2Error(f"{path}: no column {field!r} (it has {names[:8]}); choose the text column "
                        "with --field")
    kind = str(pf.schema_arrow.field(field).type)
    if kind not in ("string", "large_string", "string_view"):
        raise GPT2Error(f"{path}: column {field!r} holds {kind}, not text; choose the text column "
                        "with --field")
    return names.index(field)


def parquet_plan(path: Path, field: str, target: int) -> list[tuple[int, int]]:
    """Row ranges [first, last) of about `target` bytes of text each, from the metadata."""
    pf = parquet_file(path)
    column, meta = parquet_column(pf, path, field), pf.metadata
    groups = range(meta.num_row_groups)
    text_bytes = sum(meta.row_group(g).column(column).total_uncompressed_size for g in groups)
    rows_per_chunk = max(1, meta.num_rows * target // max(1, text_bytes))
    return [(first, min(first + rows_per_chunk, meta.num_rows))
            for first in range(0, meta.num_rows, rows_per_chunk)]


class _ParquetRows:
    """The texts of a Parquet file's rows, in order, a batch of rows decoded at a time."""

    def __init__(self, path: Path, field: str) -> None:
        self.path, self.field, self.row = path, field, 0
        self._batches = parquet_file(path).iter_batches(batch_size=_BATCH_ROWS, columns=[field])
        self._pending: list[str | None] = []

    def take(self, n: int) -> list[str]:
        while len(self._pending) < n:
            batch = next(self._batches, None)
            if batch is None:
                raise GPT2Error(f"{self.path}: the file has fewer rows than its metadata says")
            self._pending.extend(batch.column(0).to_pylist())
        texts, self._pending[:n] = self._pending[:n], []
        if None in texts:
            raise GPT2Error(f"{self.path}: row {self.row + texts.index(None):,} has no {self.field!r} (null)")
        self.row += n
        return texts  # type: ignore[return-value]


def with_payloads(groups: list[list[Any]], sources: list[Any], field: str) -> Iterator[list[tuple[Any, Any]]]:
    """Tasks for the workers: each group's chunks paired with their content when it must be
    read here (bytes of a compressed .jsonl, texts of Parquet rows), else None."""
    current: tuple[int, Any] | None = None
    try:
        for group in groups:
            task = []
            for chunk in group:
                source = sources[chunk.source]
                if source.kind != "parquet" and not source.compression:
                    task.append((chunk, None))
                    continue
                if current is None or current[0] != chunk.source:
                    _close(current)
                    current = (chunk.source, _ParquetRows(source.path, field) if source.kind == "parquet"
                               else open_decompressed(source.path, source.compression))
                reader = current[1]
                data = (reader.take(chunk.rows[1] - chunk.rows[0]) if source.kind == "parquet"
                        else read_exactly(reader, chunk.end - chunk.start, source.path, source.compression))
                task.append((chunk, data))
            yield task
    finally:
        _close(current)


def _close(current: tuple[int, Any] | None) -> None:
    if current is not None and hasattr(current[1], "close"):
        current[1].close()
