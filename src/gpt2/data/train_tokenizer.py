"""Tokenizers learned from a corpus: both are passes over the text before any encoding.

- `char_vocabulary`: the char tokenizer's vocabulary is the set of characters of the
  corpus, collected in parallel by the worker pool (workers.py).
- `train_sentencepiece` (`gpt2 tokenizer train`): a new SentencePiece model (BPE or
  unigram), trained for exact round trips: no text normalisation, whitespace kept as it
  is, and byte fallback, so a character the model has no piece for becomes its UTF-8
  bytes instead of <unk>: decode(encode(text)) == text for any text (one exception:
  U+2581 "▁", SentencePiece's own space marker, decodes as a space).
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import sentencepiece as spm
from tqdm import tqdm

from gpt2.data.sources import Chunk, CorpusOptions, Source, chunk_size_for, plan_chunks, read_chunk
from gpt2.data.workers import chunk_chars, group_chunks, ordered_map
from gpt2.errors import GPT2Error
from gpt2.tokenizers import CharTokenizer, SentencePieceTokenizer

MODEL_TYPES = ("bpe", "unigram")
MAX_SENTENCE_BYTES = 1 << 16


def char_vocabulary(chunks: list[Chunk], pool: ProcessPoolExecutor | None, workers: int,
                    progress: bool) -> CharTokenizer:
    """A char tokenizer over every character of the corpus (the pool's workers read it)."""
    chars: set[str] = set()
    bar = tqdm(total=len(chunks), desc="characters", unit="chunk", disable=not progress)
    groups = group_chunks(chunks, workers)
    for group, found in zip(groups, ordered_map(chunk_chars, groups, pool, workers), strict=True):
        chars |= found
        bar.update(len(group))
    bar.close()
    return CharTokenizer(chars)


@dataclass(frozen=True)
class SentencePieceOptions:
    """How to train a SentencePiece tokenizer.

    Args:
        vocab_size: Number of pieces (includes <unk>, <s>, </s> and, with byte fallback, 256 bytes);
            default: suggested from the corpus size (see suggested_vocab_size).
        model_type: bpe or unigram.
        character_coverage: Share of characters covered by pieces (0.9995 for large alphabets,
            1.0 for small ones); the rest fall back to bytes.
        byte_fallback: Encode unseen characters as UTF-8 bytes, so no text is ever lost.
        max_sentences: Lines sampled for training at most (bounds memory on huge corpora).
        threads: Training threads (default: all cores).
        verbose: Show SentencePiece's own training log.
    """

    vocab_size: int | None = None
    model_type: str = "bpe"
    character_coverage: float = 0.9995
    byte_fallback: bool = True
    max_sentences: int = 2_000_000
    threads: int | None = None
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise GPT2Error(f"--model_type {self.model_type!r} must be one of {MODEL_TYPES}")
        if not 0 < self.character_coverage <= 1:
            raise GPT2Error(f"--character_coverage {self.character_coverage} must be in (0, 1]")
        if self.vocab_size is not None and self.vocab_size < 4:
            raise GPT2Error(f"--vocab_size {self.vocab_size} is too small")


def suggested_vocab_size(corpus_bytes: int) -> int:
    """A vocabulary for a corpus of this size: about 2 x sqrt(bytes), in steps of 500, from
    1,000 to 32,000 (0.5 MB -> 1,500; 5 MB -> 4,500; 100 MB -> 20,000). Too many pieces for a
    small corpus leave few tokens to train on and many pieces seen only a few times."""
    return int(min(32_000, max(1_000, round(2 * corpus_bytes ** 0.5 / 500) * 500)))


def iter_sentences(sources: list[Source], corpus: CorpusOptions) -> Iterator[str]:
    """Every non-empty line of the corpus, streamed chunk by chunk."""
    for chunk in plan_chunks(sources, chunk_size_for(sum(s.size for s in sources))):
        for text in read_chunk(sources[chunk.source], chunk, corpus.errors, corpus.field):
            yield from (line for line in text.splitlines() if line.strip())


def train_sentencepiece(sources: list[Source], corpus: CorpusOptions = CorpusOptions(),
                        options: SentencePieceOptions = SentencePieceOptions()) -> SentencePieceTokenizer:
    """Train a SentencePiece model on `sources` (see `gpt2.data.sources.resolve_sources`)."""
    o = options
    if o.vocab_size is None:
        o = dataclasses.replace(o, vocab_size=suggested_vocab_size(sum(s.size for s in sources)))
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter_sentences(sources, corpus), model_writer=model,
            vocab_size=o.vocab_size, model_type=o.model_type, character_coverage=o.character_coverage,
            byte_fallback=o.byte_fallback, normalization_rule_name="identity", remove_extra_whitespaces=False,
            add_dummy_prefix=False, allow_whitespace_only_pieces=True, split_digits=True,
            max_sentence_length=MAX_SENTENCE_BYTES, input_sentence_size=o.max_sentences,
            shuffle_input_sentence=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            num_threads=o.threads or os.cpu_count() or 1, minloglevel=0 if o.verbose else 2)
    except RuntimeError as err:
        raise GPT2Error(_explain(str(err), o.vocab_size)) from None
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
