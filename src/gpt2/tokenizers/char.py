"""Character-level tokenizer: one id per distinct character of the corpus.

The classic tiny-Shakespeare setup (65 characters). The vocabulary is the sorted set of
characters seen in the corpus, plus one special token, "<|endoftext|>", as the last id
so documents can be separated in shards. A character outside the vocabulary is an error
(a ValueError naming the character and its position) rather than a silent <unk>: a
char model cannot say anything useful about text it has never seen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from gpt2.errors import GPT2Error
from gpt2.tokenizers.base import Tokenizer, read_tokenizer_file

ENDOFTEXT = "<|endoftext|>"
VOCAB_FILE = "char_vocab.json"


class UnknownCharacterError(GPT2Error):
    """A character outside the vocabulary; `position` is its index in the encoded text."""

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(f"{reason} (at position {position})")
        self.reason, self.position = reason, position


class CharTokenizer(Tokenizer):
    """ids 0..n-1 are the corpus characters in code-point order; id n is <|endoftext|>."""

    name = "char"

    def __init__(self, chars: Iterable[str]) -> None:
        self.chars = sorted(set(chars))
        if not self.chars or any(len(c) != 1 for c in self.chars):
            raise GPT2Error("a char tokenizer needs a non-empty set of single characters")
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}
        self.eot_id = len(self.chars)
        self.vocab_size = len(self.chars) + 1
        self.special_tokens = {ENDOFTEXT: self.eot_id}
        # Fast path: a code point -> id lookup table (-1 = unknown), used by encode.
        self._table = np.full(max(map(ord, self.chars)) + 1, -1, dtype=np.int64)
        self._table[[ord(c) for c in self.chars]] = np.arange(len(self.chars))

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls(set(text))

    @classmethod
    def from_directory(cls, directory: str | Path) -> CharTokenizer:
        return cls(json.loads(read_tokenizer_file(directory, VOCAB_FILE).decode("utf-8"))["chars"])

    def encode_reference(self, text: str, *, allow_special: bool = True) -> list[int]:
        """Readable reference for `encode`: look each character up in turn."""
        ids = []
        pieces = text.split(ENDOFTEXT) if allow_special else [text]
        for n, piece in enumerate(pieces):
            if n:
                ids.append(self.eot_id)
            for ch in piece:
                if ch not in self.stoi:
                    self._unknown(text, text.index(ch))
                ids.append(self.stoi[ch])
        return ids

    def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
        if allow_special and ENDOFTEXT in text:
            return self.encode_reference(text, allow_special=True)
        return self.encode_array(text).tolist()

    def encode_array(self, text: str) -> np.ndarray:
        """Fast path: encode (no special tokens) into an int64 array via a lookup table."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)  # (n,)
        ids = np.where(codes < len(self._table), self._table[np.minimum(codes, len(self._table) - 1)], -1)
        if ids.size and ids.min() < 0:
            self._unknown(text, int(np.argmax(ids < 0)))
        return ids

    def _unknown(self, text: str, pos: int) -> None:
        ch = text[pos]
        raise UnknownCharacterError(f"character {ch!r} (U+{ord(ch):04X}) is not in the char tokenizer's "
                                    f"vocabulary of {len(self.chars)} characters; build the vocabulary from "
                                    "a corpus that contains it", pos)

    def token_bytes(self) -> np.ndarray:
        return np.array([len(ch.encode("utf-8")) for ch in self.chars] + [0], dtype=np.int64)

    def decode(self, ids: list[int]) -> str:
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise GPT2Error(f"token id {i} is outside the char vocabulary (0..{self.vocab_size - 1})")
            out.append(ENDOFTEXT if i == self.eot_id else self.chars[i])
        return "".join(out)

    def _files(self) -> dict[str, bytes]:
        data = json.dumps({"chars": self.chars, "endoftext": ENDOFTEXT}, ensure_ascii=True) + "\n"
        return {VOCAB_FILE: data.encode("utf-8")}
