"""SentencePiece tokenizers: load any `.model` file (e.g. nepalikit's Nepali model) or
one trained by `gpt2 tokenizer train` (see train.py).

The end-of-text id is the model's `</s>` (eos); a model without one cannot separate
documents and is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sentencepiece as spm

from gpt2.errors import GPT2Error
from gpt2.tokenizers.base import Tokenizer, read_tokenizer_file

MODEL_FILE = "tokenizer.model"  # the same name Hugging Face uses for SentencePiece models


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model held in memory (its serialized bytes are the identity)."""

    name = "sentencepiece"

    def __init__(self, model_proto: bytes, source: str = "<bytes>") -> None:
        self._proto = model_proto
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(model_proto)
        except Exception as err:
            raise GPT2Error(f"{source} is not a SentencePiece model ({err})") from None
        if self.sp.eos_id() < 0:
            raise GPT2Error(f"SentencePiece model {source} has no end-of-text (</s>) piece; "
                             "train it with eos_id >= 0")
        self.vocab_size = self.sp.get_piece_size()
        self.eot_id = self.sp.eos_id()
        self.special_tokens = {self.sp.id_to_piece(i): i for i in range(self.vocab_size)
                               if self.sp.is_control(i) or self.sp.is_unknown(i)}

    @classmethod
    def from_file(cls, path: str | Path) -> SentencePieceTokenizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"SentencePiece model {path} does not exist")
        return cls(path.read_bytes(), source=str(path))

    @classmethod
    def from_directory(cls, directory: str | Path) -> SentencePieceTokenizer:
        return cls(read_tokenizer_file(directory, MODEL_FILE), source=str(Path(directory) / MODEL_FILE))

    def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
        # SentencePiece never parses control pieces from text, so allow_special changes nothing.
        return self.sp.encode(text, out_type=int)

    def encode_batch(self, texts: list[str], *, allow_special: bool = True) -> list[list[int]]:
        return self.sp.encode(texts, out_type=int)

    def token_bytes(self) -> np.ndarray:
        """Byte pieces (<0xAB>) are one byte, control pieces none, the rest their text (the
        space marker U+2581 counts as the one-byte space it decodes to)."""
        sizes = []
        for i in range(self.vocab_size):
            if self.sp.is_control(i) or self.sp.is_unknown(i):
                sizes.append(0)
            elif self.sp.is_byte(i):
                sizes.append(1)
            else:
                sizes.append(len(self.sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8")))
        return np.array(sizes, dtype=np.int64)

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode([int(i) for i in ids])

    def _files(self) -> dict[str, bytes]:
        return {MODEL_FILE: self._proto}
