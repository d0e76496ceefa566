"""Tokenizers: one interface (`Tokenizer`), three kinds, and how to find one.

    get_tokenizer("gpt2")                 GPT-2's BPE (tiktoken, offline)
    get_tokenizer("char", text=corpus)    characters of a corpus
    get_tokenizer("path/to/x.model")      a SentencePiece model
    get_tokenizer("checkpoint_dir/")      whatever was saved there (load_tokenizer)
    tokenizer_for_checkpoint(dir, ...)    a checkpoint's tokenizer, with GPT-2's BPE as the
                                          fallback for a bare Hugging Face GPT-2 directory
"""

from __future__ import annotations

import sys
from pathlib import Path

from gpt2.errors import GPT2Error
from gpt2.files import member, read_json, sha256_bytes
from gpt2.tokenizers.base import MAX_FILE_BYTES, TOKENIZER_FILE, Tokenizer, same_ids
from gpt2.tokenizers.char import CharTokenizer
from gpt2.tokenizers.gpt2_bpe import GPT2_VOCAB_SIZE, GPT2BPETokenizer
from gpt2.tokenizers.sentencepiece import MODEL_FILE, SentencePieceTokenizer

__all__ = ["CharTokenizer", "GPT2BPETokenizer", "SentencePieceTokenizer", "Tokenizer", "find_tokenizer",
           "get_tokenizer", "load_identity", "load_tokenizer", "same_ids", "tokenizer_for_checkpoint"]

_KINDS = {"gpt2-bpe": GPT2BPETokenizer, "sentencepiece": SentencePieceTokenizer, "char": CharTokenizer}
_FIX = "save the tokenizer there again (Tokenizer.save) or copy it from where it came from"


def load_identity(directory: str | Path) -> dict:
    """The identity recorded in a saved tokenizer's gpt2_tokenizer.json (without loading it)."""
    meta = read_json(Path(directory) / TOKENIZER_FILE, _FIX)
    return {key: meta.get(key) for key in ("kind", "vocab_size", "eot_id", "sha256")}


def find_tokenizer(directory: str | Path) -> Tokenizer | None:
    """The tokenizer in `directory`, or None when it holds none: ours (gpt2_tokenizer.json,
    its files checked against the saved sha256s) or a Hugging Face directory's vocab.json +
    merges.txt, tokenizer.model or tokenizer.json."""
    directory = Path(directory)
    meta_path = directory / TOKENIZER_FILE
    if not meta_path.is_file():
        if (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
            return GPT2BPETokenizer.from_directory(directory)
        if (directory / MODEL_FILE).is_file():
            return SentencePieceTokenizer.from_directory(directory)
        if (directory / "tokenizer.json").is_file():  # recent transformers save only this
            return GPT2BPETokenizer.from_hf_tokenizer_json(directory / "tokenizer.json")
        return None
    meta = read_json(meta_path, _FIX)
    kind = meta.get("kind")
    if kind not in _KINDS:
        raise GPT2Error(f"{meta_path}: unknown tokenizer kind {kind!r} (expected one of {sorted(_KINDS)})")
    hashes = meta.get("sha256", {})
    if not isinstance(hashes, dict):
        raise GPT2Error(f"{meta_path}: 'sha256' is not a map of file names to hashes; {_FIX}")
    for name, expected in hashes.items():
        path = member(directory, name, meta_path, MAX_FILE_BYTES)
        if not path.is_file() or sha256_bytes(path.read_bytes()) != expected:
            raise GPT2Error(f"{path} is missing or does not match its sha256 in {TOKENIZER_FILE}")
    tokenizer = _KINDS[kind].from_directory(directory)
    if tokenizer.identity()["sha256"] != meta.get("sha256"):
        raise GPT2Error(f"{directory}: tokenizer files do not match the sha256 values in {TOKENIZER_FILE}")
    return tokenizer


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """The tokenizer saved in `directory` (see `find_tokenizer`); FileNotFoundError if none."""
    tokenizer = find_tokenizer(directory)
    if tokenizer is None:
        raise FileNotFoundError(f"{directory} holds no tokenizer ({TOKENIZER_FILE} is missing)")
    return tokenizer


def tokenizer_for_checkpoint(checkpoint: str | Path, override: str | None, vocab_size: int) -> Tokenizer:
    """The tokenizer to read and write a checkpoint's text with: `override` when given, else the
    one saved in it. A directory with no tokenizer whose vocab_size is GPT-2's 50,257 (e.g. made
    by `model.save_pretrained`) falls back to GPT-2's BPE with a note on stderr; otherwise a
    missing tokenizer is an error. Refuses a tokenizer with more ids than the model has."""
    tokenizer = get_tokenizer(override) if override is not None else find_tokenizer(checkpoint)
    if tokenizer is None:
        if vocab_size != GPT2_VOCAB_SIZE:
            raise GPT2Error(
                f"{checkpoint} holds no tokenizer (no gpt2_tokenizer.json, vocab.json + merges.txt, "
                f"tokenizer.json or tokenizer.model) and its vocab_size {vocab_size} is not GPT-2's "
                f"{GPT2_VOCAB_SIZE}; save the tokenizer into the checkpoint "
                "(gpt2 generate also takes --tokenizer)"
            )
        print(f"gpt2: note: {checkpoint} holds no tokenizer; its vocab_size is GPT-2's, "
              "so GPT-2's BPE is used", file=sys.stderr)
        tokenizer = GPT2BPETokenizer()
    if tokenizer.vocab_size > vocab_size:
        raise GPT2Error(f"the tokenizer has {tokenizer.vocab_size} ids but the model in {checkpoint} "
                        f"only {vocab_size}; they do not belong together")
    return tokenizer


def get_tokenizer(name_or_path: str | Path, *, text: str | None = None) -> Tokenizer:
    """Build a tokenizer by name ("gpt2", "char" with text=) or from a `.model` file or directory."""
    key = str(name_or_path)
    if key in ("gpt2", "gpt2-bpe"):
        return GPT2BPETokenizer()
    if key == "char":
        if text is None:
            raise GPT2Error("the char tokenizer builds its vocabulary from a corpus: pass text=")
        return CharTokenizer.from_text(text)
    path = Path(key)
    if path.is_dir():
        return load_tokenizer(path)
    if key.endswith(".model"):
        return SentencePieceTokenizer.from_file(path)
    raise GPT2Error(f"unknown tokenizer {key!r}: use gpt2, char, a SentencePiece .model file, "
                    "or a directory holding a saved tokenizer")
