"""`gpt2 tokenizer train`: a new SentencePiece model (BPE or unigram) from your text.

Trained for exact round trips: no text normalisation, whitespace kept as it is, and
byte fallback, so a character the model has no piece for becomes its UTF-8 bytes
instead of <unk>: decode(encode(text)) == text for any text (one exception: U+2581
"▁", SentencePiece's own space marker, decodes as a space). The original project
trained such a model on Nepali; any language works the same way.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import sentencepiece as spm

from gpt2.data.sources import Source, chunk_size_for, plan_chunks, read_chunk, resolve_sources
from gpt2.tokenizers.base import TOKENIZER_FILE
from gpt2.tokenizers.sentencepiece import SentencePieceTokenizer

MODEL_TYPES = ("bpe", "unigram")
MAX_SENTENCE_BYTES = 1 << 16


def iter_sentences(sources: list[Source], errors: str = "strict", field: str = "text") -> Iterator[str]:
    """Every non-empty line of the corpus, streamed chunk by chunk."""
    for chunk in plan_chunks(sources, chunk_size_for(sum(s.size for s in sources))):
        for text in read_chunk(sources[chunk.source], chunk, errors, field):
            yield from (line for line in text.splitlines() if line.strip())


def train_sentencepiece(inputs: list[str], vocab_size: int = 8000, model_type: str = "bpe",
                        character_coverage: float = 0.9995, byte_fallback: bool = True,
                        glob: str = "**/*.txt", field: str = "text", errors: str = "strict",
                        max_sentences: int = 2_000_000, threads: int | None = None,
                        verbose: bool = False) -> SentencePieceTokenizer:
    """Train a SentencePiece model on `inputs` (files, folders, globs, .jsonl, 'shakespeare')."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"--model_type {model_type!r} must be one of {MODEL_TYPES}")
    if not 0 < character_coverage <= 1:
        raise ValueError(f"--character_coverage {character_coverage} must be in (0, 1]")
    if vocab_size < 4:
        raise ValueError(f"--vocab_size {vocab_size} is too small")
    sources = resolve_sources(inputs, glob)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter_sentences(sources, errors, field), model_writer=model,
            vocab_size=vocab_size, model_type=model_type, character_coverage=character_coverage,
            byte_fallback=byte_fallback, normalization_rule_name="identity", remove_extra_whitespaces=False,
            add_dummy_prefix=False, allow_whitespace_only_pieces=True, split_digits=True,
            max_sentence_length=MAX_SENTENCE_BYTES, input_sentence_size=max_sentences,
            shuffle_input_sentence=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            num_threads=threads or os.cpu_count() or 1, minloglevel=0 if verbose else 2)
    except RuntimeError as err:
        raise ValueError(_explain(str(err), vocab_size)) from None
    return SentencePieceTokenizer(model.getvalue(), source="trained model")


def _explain(message: str, vocab_size: int) -> str:
    """One actionable line from SentencePiece's error text."""
    limit = re.search(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", message)
    if limit:
        return (f"--vocab_size {vocab_size:,} is larger than this corpus allows; use --vocab_size "
                f"{int(limit.group(2)):,} or less, or train on more text")
    small = re.search(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)", message)
    if small:
        needed = int(small.group(2))
        return (f"--vocab_size {vocab_size:,} is too small: this corpus needs at least {needed:,} pieces "
                "(its characters, the byte pieces and <unk> <s> </s>); raise --vocab_size or "
                "lower --character_coverage")
    last = message.strip().splitlines()[-1] if message.strip() else "unknown error"
    return f"SentencePiece training failed: {last}"


def _check_out(out_dir: Path, overwrite: bool) -> None:
    """Refuse an --out that is a file, or that holds a tokenizer or anything else, unless overwrite
    (which replaces only the tokenizer's own files; other files are left alone)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} exists and is not a folder")
    if overwrite or not out_dir.is_dir():
        return
    if (out_dir / TOKENIZER_FILE).exists():
        raise ValueError(f"{out_dir} already holds a tokenizer; choose another --out or pass "
                         "--overwrite true")
    if any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} is not empty; choose another --out or pass --overwrite true "
                         "(which writes the tokenizer's files there and leaves the others alone)")


def tokenizer_train(input: str | list[str], out: str, vocab_size: int = 8000, model_type: str = "bpe",
                    character_coverage: float = 0.9995, byte_fallback: bool = True, glob: str = "**/*.txt",
                    field: str = "text", errors: str = "strict", max_sentences: int = 2_000_000,
                    overwrite: bool = False, verbose: bool = False) -> None:
    """Train a SentencePiece tokenizer and save it to a folder (use it with `gpt2 prepare --tokenizer`).

    Args:
        input: Text file(s), folder(s), glob(s), .jsonl file(s) or `shakespeare`; several as '[a, b]'.
        out: Folder to write tokenizer.model + gpt2_tokenizer.json into.
        vocab_size: Number of pieces (includes <unk>, <s>, </s> and, with byte fallback, 256 bytes).
        model_type: bpe or unigram.
        character_coverage: Share of characters covered by pieces (0.9995 for large alphabets,
            1.0 for small ones); the rest fall back to bytes.
        byte_fallback: Encode unseen characters as UTF-8 bytes, so no text is ever lost.
        glob: Which files of a folder to read.
        field: The text field of .jsonl records.
        errors: strict or replace (for bytes that are not UTF-8).
        max_sentences: Lines sampled for training at most (bounds memory on huge corpora).
        overwrite: Write into an --out that already holds a tokenizer or other files (only the
            tokenizer's files are replaced; nothing else is deleted).
        verbose: Show SentencePiece's own training log.
    """
    out_dir = Path(out)
    _check_out(out_dir, overwrite)
    inputs = [input] if isinstance(input, str) else list(input)
    tok = train_sentencepiece(inputs, vocab_size, model_type, character_coverage, byte_fallback, glob, field,
                              errors, max_sentences, verbose=verbose)
    tok.save(out_dir)  # each file atomically, gpt2_tokenizer.json last; nothing else is touched
    print(f"{out_dir}: SentencePiece {model_type}, {tok.vocab_size:,} pieces, end-of-text id {tok.eot_id}")
