"""The one tokenizer interface every part of the package codes against.

A tokenizer turns text into integer ids and back, knows its vocabulary size and its
end-of-text id, and can write itself into a directory (a checkpoint or a shard folder)
so that whoever reads that directory later gets exactly the same tokenizer back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from gpt2.errors import GPT2Error
from gpt2.files import json_bytes, member, sha256_bytes, write_bytes_atomic

TOKENIZER_FILE = "gpt2_tokenizer.json"  # names the kind; never config.json (that is the model's)
FORMAT_VERSION = 1
MAX_FILE_BYTES = 256 << 20  # GPT-2's BPE files are 1.5 MB; a large SentencePiece model ~10 MB


def read_tokenizer_file(directory: str | Path, name: str,
                        listed_in: Path | str = "the tokenizer folder") -> bytes:
    """The bytes of a tokenizer's file `name` in `directory`, checked by `gpt2.files.member`
    (inside the folder, a regular file, at most MAX_FILE_BYTES)."""
    path = member(Path(directory), name, listed_in, MAX_FILE_BYTES)
    if not path.is_file():
        raise GPT2Error(f"{path}: missing from the tokenizer folder")
    return path.read_bytes()


def same_ids(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two tokenizer identities (see `Tokenizer.identity`) give the same ids for every
    text: equal kind and file hashes (vocab_size and eot_id follow from the files)."""
    return a.get("kind") == b.get("kind") and a.get("sha256") == b.get("sha256")


class Tokenizer(ABC):
    """Text <-> token ids. Subclasses set `name`, `vocab_size`, `eot_id` and `special_tokens`."""

    name: str  # "gpt2-bpe" | "sentencepiece" | "char"
    vocab_size: int
    eot_id: int  # end-of-text: separates documents in shards, stops generation
    special_tokens: dict[str, int]

    @abstractmethod
    def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
        """Token ids of `text`. With allow_special=False a special token's spelling
        (e.g. "<|endoftext|>") inside the text is encoded as ordinary text."""

    @abstractmethod
    def token_bytes(self) -> np.ndarray:
        """(vocab_size,) int64: how many UTF-8 bytes of text each id stands for (0 for special
        tokens). Summed over predicted tokens it turns a loss per token into bits per byte,
        which compares models across tokenizers."""

    def encode_array(self, text: str) -> np.ndarray:
        """Ids of `text` as an int64 array, special tokens' spellings encoded as plain text:
        how `gpt2 prepare` encodes a corpus (the char tokenizer has a vectorised override)."""
        return np.asarray(self.encode(text, allow_special=False), dtype=np.int64)

    @abstractmethod
    def decode(self, ids: list[int]) -> str:
        """The text of `ids`; decode(encode(s)) == s for the tokenizers built here."""

    @abstractmethod
    def _files(self) -> dict[str, bytes]:
        """The files that define this tokenizer: {file name: contents}."""

    def identity(self) -> dict[str, Any]:
        """Kind + sha256 of every defining file. Equal identities <=> same token ids,
        so a trainer can refuse shards and checkpoints made with different tokenizers."""
        if getattr(self, "_sha256", None) is None:  # the files never change: hash them once
            self._sha256 = {name: sha256_bytes(data) for name, data in sorted(self._files().items())}
        files = dict(self._sha256)
        return {"kind": self.name, "vocab_size": self.vocab_size, "eot_id": self.eot_id, "sha256": files}

    def save(self, directory: str | Path) -> Path:
        """Write this tokenizer's files plus gpt2_tokenizer.json into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in self._files().items():
            write_bytes_atomic(directory / name, data)
        meta = {"format": "gpt2-from-scratch-tokenizer", "version": FORMAT_VERSION, **self.identity(),
                "special_tokens": self.special_tokens}
        write_bytes_atomic(directory / TOKENIZER_FILE, json_bytes(meta))
        return directory

    def __repr__(self) -> str:
        kind = type(self).__name__
        return f"{kind}(name={self.name!r}, vocab_size={self.vocab_size}, eot_id={self.eot_id})"
