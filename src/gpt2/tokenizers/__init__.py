"""Tokenizers: one interface (`Tokenizer`), three kinds, and a factory.

    get_tokenizer("gpt2")                 GPT-2's BPE (tiktoken, offline)
    get_tokenizer("char", text=corpus)    characters of a corpus
    get_tokenizer("path/to/x.model")      a SentencePiece model
    get_tokenizer("checkpoint_dir/")      whatever was saved there (load_tokenizer)
"""

from __future__ import annotations

from pathlib import Path

from gpt2.tokenizers.base import TOKENIZER_FILE, Tokenizer, read_json, sha256_bytes
from gpt2.tokenizers.char import CharTokenizer
from gpt2.tokenizers.gpt2_bpe import GPT2BPETokenizer
from gpt2.tokenizers.sentencepiece import MODEL_FILE, SentencePieceTokenizer

__all__ = ["CharTokenizer", "GPT2BPETokenizer", "SentencePieceTokenizer", "Tokenizer",
           "get_tokenizer", "has_tokenizer", "load_identity", "load_tokenizer"]

_KINDS = {"gpt2-bpe": GPT2BPETokenizer, "sentencepiece": SentencePieceTokenizer, "char": CharTokenizer}
_FIX = "save the tokenizer there again (Tokenizer.save) or copy it from where it came from"


def has_tokenizer(directory: str | Path) -> bool:
    """True when `directory` holds a tokenizer saved by `Tokenizer.save`."""
    return (Path(directory) / TOKENIZER_FILE).is_file()


def load_identity(directory: str | Path) -> dict:
    """The identity recorded in a saved tokenizer's gpt2_tokenizer.json (without loading it)."""
    meta = read_json(Path(directory) / TOKENIZER_FILE, _FIX)
    return {key: meta.get(key) for key in ("kind", "vocab_size", "eot_id", "sha256")}


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """The tokenizer saved in `directory`; its files are checked against the saved sha256s."""
    directory = Path(directory)
    meta_path = directory / TOKENIZER_FILE
    if not meta_path.is_file():
        if (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
            return GPT2BPETokenizer.from_directory(directory)  # a Hugging Face GPT-2 directory
        if (directory / MODEL_FILE).is_file():
            return SentencePieceTokenizer.from_directory(directory)
        if (directory / "tokenizer.json").is_file():  # recent transformers save only this
            return GPT2BPETokenizer.from_hf_tokenizer_json(directory / "tokenizer.json")
        raise FileNotFoundError(f"{directory} holds no tokenizer ({TOKENIZER_FILE} is missing)")
    meta = read_json(meta_path, _FIX)
    kind = meta.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"{meta_path}: unknown tokenizer kind {kind!r} (expected one of {sorted(_KINDS)})")
    for name, expected in meta.get("sha256", {}).items():
        path = directory / name
        if not path.is_file() or sha256_bytes(path.read_bytes()) != expected:
            raise ValueError(f"{path} is missing or does not match its sha256 in {TOKENIZER_FILE}")
    tokenizer = _KINDS[kind].from_directory(directory)
    if tokenizer.identity()["sha256"] != meta.get("sha256"):
        raise ValueError(f"{directory}: tokenizer files do not match the sha256 values in {TOKENIZER_FILE}")
    return tokenizer


def get_tokenizer(name_or_path: str | Path, *, text: str | None = None) -> Tokenizer:
    """Build a tokenizer by name ("gpt2", "char" with text=) or from a `.model` file or directory."""
    key = str(name_or_path)
    if key in ("gpt2", "gpt2-bpe"):
        return GPT2BPETokenizer()
    if key == "char":
        if text is None:
            raise ValueError("the char tokenizer builds its vocabulary from a corpus: pass text=")
        return CharTokenizer.from_text(text)
    path = Path(key)
    if path.is_dir():
        return load_tokenizer(path)
    if key.endswith(".model"):
        return SentencePieceTokenizer.from_file(path)
    raise ValueError(f"unknown tokenizer {key!r}: use gpt2, char, a SentencePiece .model file, "
                     "or a directory holding a saved tokenizer")
