"""The token shard format: a small binary header followed by the raw token ids.

    offset  size  field
         0     8  magic  b"GPT2TOKS"
         8     4  format version (uint32, little-endian), currently 1
        12     4  bytes per token: 2 (uint16) or 4 (uint32)
        16     8  number of tokens (uint64)
        24    40  zero padding (the header is 64 bytes, so tokens start aligned)
        64     -  the tokens, little-endian

A folder of shards also holds `meta.json` (meta.py: tokenizer identity, sources, split,
counts, the list of shards with their sha256) and the tokenizer itself in `tokenizer/`.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from gpt2.data.meta import META_FILE, ShardInfo, ShardsMeta, SplitInfo
from gpt2.data.options import SPLITS, check_token_dtype
from gpt2.data.shard_view import ShardView
from gpt2.errors import GPT2Error
from gpt2.files import member, readable_dir
from gpt2.tokenizers import Tokenizer, load_tokenizer, same_ids

MAGIC = b"GPT2TOKS"
VERSION = 1
HEADER_SIZE = 64
_HEADER = struct.Struct("<8sIIQ")
TOKENIZER_DIR = "tokenizer"


def dtype_for_vocab(vocab_size: int, requested: str = "auto") -> np.dtype:
    """uint16 when every id fits in 16 bits, else uint32 (half the disk and page cache).
    requested: "auto", or "uint16"/"uint32" to insist (refused if the vocabulary does not fit)."""
    check_token_dtype(requested)
    if requested == "auto":
        requested = "uint16" if vocab_size <= 2**16 else "uint32"
    dtype = np.dtype("<u2" if requested == "uint16" else "<u4")
    if vocab_size > 2 ** (8 * dtype.itemsize):
        hint = "use --token_dtype uint32 or auto" if requested == "uint16" else "at most 2**32 ids fit"
        raise GPT2Error(f"a vocabulary of {vocab_size:,} ids is too large for {requested} shards; {hint}")
    return dtype


class ShardWriter:
    """Appends token arrays to one shard file; the header's count is filled in on close."""

    def __init__(self, path: str | Path, dtype: np.dtype) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.n_tokens = 0
        self._sha = hashlib.sha256()
        self._file = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        self._file.write(bytes(HEADER_SIZE))

    def write(self, tokens: np.ndarray) -> None:
        data = np.ascontiguousarray(tokens, dtype=self.dtype).tobytes()
        self._file.write(data)
        self._sha.update(data)
        self.n_tokens += len(tokens)

    def close(self) -> ShardInfo:
        """Write the header, fsync; returns the shard's entry of meta.json."""
        self._file.seek(0)
        self._file.write(_HEADER.pack(MAGIC, VERSION, self.dtype.itemsize, self.n_tokens))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return ShardInfo(self.path.name, self.n_tokens, self._sha.hexdigest())

    def abort(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


class SplitWriter:
    """Writes one split's stream of tokens into shards of at most `shard_tokens` tokens each."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype, shard_tokens: int) -> None:
        self.directory, self.split, self.dtype, self.shard_tokens = directory, split, dtype, shard_tokens
        self.shards: list[ShardInfo] = []
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

    def close(self) -> SplitInfo:
        """Close the last shard; returns the split's entry of meta.json."""
        if self.writer is not None:
            self.shards.append(self.writer.close())
            self.writer = None
        return SplitInfo(tuple(self.shards), sum(s.tokens for s in self.shards), self.documents)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


def read_header(path: str | Path) -> tuple[np.dtype, int]:
    """(dtype, number of tokens) of a shard, after checking magic, version and file size."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read(HEADER_SIZE)
    if len(raw) < HEADER_SIZE:
        raise GPT2Error(f"{path} is not a token shard (shorter than its {HEADER_SIZE}-byte header)")
    magic, version, itemsize, n_tokens = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise GPT2Error(f"{path} is not a token shard (bad magic {magic!r})")
    if version != VERSION:
        raise GPT2Error(f"{path}: shard format version {version} is not supported (expected {VERSION})")
    if itemsize not in (2, 4):
        raise GPT2Error(f"{path}: unsupported token size {itemsize} bytes")
    expected = HEADER_SIZE + itemsize * n_tokens
    if path.stat().st_size != expected:
        raise GPT2Error(f"{path} is truncated or corrupt: {path.stat().st_size} bytes, expected {expected}")
    return np.dtype(f"<u{itemsize}"), n_tokens


def open_shard(path: str | Path) -> ShardView:
    """The tokens of a shard (n_tokens,), read when sliced (see shard_view.py: never a Bus error)."""
    dtype, n_tokens = read_header(path)
    return ShardView(Path(path), dtype, n_tokens, HEADER_SIZE)


def write_shard(path: str | Path, tokens: np.ndarray, dtype: np.dtype) -> ShardInfo:
    """Write a whole shard at once (tests, small corpora)."""
    writer = ShardWriter(path, dtype)
    writer.write(tokens)
    return writer.close()


def write_prepared(data_dir: str | Path, tokenizer: Any, splits: dict[str, np.ndarray],
                   split: dict[str, Any] | None = None) -> Path:
    """A prepared folder from ids already split, one shard per split: shards, tokenizer/ and
    meta.json (with `split`, e.g. {"val_ratio": 0.1}). For fixed splits such as nanoGPT's first
    90% / last 10% of one text; `gpt2 prepare` is the general path."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    dtype = dtype_for_vocab(tokenizer.vocab_size)
    shards = {name: write_shard(data_dir / f"{name}_000.bin", ids, dtype) for name, ids in splits.items()}
    tokenizer.save(data_dir / TOKENIZER_DIR)
    ShardsMeta({name: SplitInfo((info,), info.tokens) for name, info in shards.items()},
               tokenizer.identity(), split=split).write(data_dir)
    return data_dir


def split_shards(data_dir: str | Path, split: str) -> list[Path]:
    """Paths of the shards of `split` ("train" or "val"), in order."""
    if split not in SPLITS:
        raise GPT2Error(f"unknown split {split!r}: expected one of {SPLITS}")
    shards = ShardsMeta.read(data_dir).splits[split].shards
    folder = readable_dir(Path(data_dir), META_FILE)
    return [member(folder, shard.file, folder / META_FILE) for shard in shards]


def split_sha256(data_dir: str | Path, split: str) -> str:
    """One hash of a split's content: of the sha256 of each of its shards, in order (from
    meta.json, so nothing is read). Equal hashes <=> the same token stream."""
    shards = ShardsMeta.read(data_dir).splits[split].shards
    return hashlib.sha256("".join(str(s.sha256) for s in shards).encode()).hexdigest()


def verify_shards(data_dir: str | Path) -> int:
    """Check every shard of a prepared folder against the size and sha256 of its tokens in
    meta.json (a byte changed in place is caught, not only a truncated file); returns the
    number of shards checked."""
    folder = readable_dir(Path(data_dir), META_FILE)
    count = 0
    for split in SPLITS:
        for shard, path in zip(ShardsMeta.read(data_dir).splits[split].shards, split_shards(data_dir, split),
                               strict=True):
            read_header(path)  # magic, version, size
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                f.seek(HEADER_SIZE)
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            if digest.hexdigest() != shard.sha256:
                raise GPT2Error(f"{path}: its tokens do not match their sha256 in {folder / META_FILE}; the "
                                "shard changed since `gpt2 prepare` wrote it: prepare the data again")
            count += 1
    return count


def open_data(data_dir: str | Path, splits: tuple[str, ...] = SPLITS) -> tuple[Path, Tokenizer]:
    """A prepared folder and its tokenizer, checked to belong together, with `splits` not empty
    and every listed shard present (so a run fails at step 0, not at its first validation)."""
    path = Path(data_dir)
    if not path.is_dir() and not readable_dir(path, META_FILE).is_dir():
        raise GPT2Error(f"{data_dir}: no such folder; create it with `gpt2 prepare`")
    meta = ShardsMeta.read(path)
    folder = readable_dir(path, META_FILE)
    for split in splits:
        shards = meta.splits[split].shards
        if not shards:
            raise GPT2Error(f"{data_dir}: meta.json lists no {split} shards (--val_ratio 0?); run `gpt2 "
                            "prepare` again with --val_ratio above 0 and at least two lines of text")
        for shard in shards:
            if not member(folder, shard.file, folder / META_FILE).is_file():
                raise GPT2Error(f"{data_dir}: shard {shard.file} listed in meta.json is missing; "
                                "re-run `gpt2 prepare`")
    tokenizer = load_tokenizer(folder / TOKENIZER_DIR)
    if not same_ids(tokenizer.identity(), meta.tokenizer):
        raise GPT2Error(f"{data_dir}: the shards were made with a different tokenizer than "
                        f"{folder / TOKENIZER_DIR}; re-run `gpt2 prepare`")
    return path, tokenizer
