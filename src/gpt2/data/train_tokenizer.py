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

import sentencepiece as spm
from tqdm import tqdm

from gpt2.data.options import SentencePieceOptions
from gpt2.data.sources import Chunk, CorpusOptions, Source, chunk_size_for, plan_chunks, read_chunk
from gpt2.data.streams import with_payloads
from gpt2.data.workers import chunk_chars, group_chunks, ordered_map
from gpt2.errors import GPT2Error
from gpt2.tokenizers import CharTokenizer, SentencePieceTokenizer

MAX_SENTENCE_BYTES = 1 << 16


def char_vocabulary(sources: list[Source], chunks: list[Chunk], field: str, pool: ProcessPoolExecutor | None,
                    workers: int, progress: bool) -> CharTokenizer:
    """A char tokenizer over every character of the corpus (the pool's workers read it)."""
    chars: set[str] = set()
    bar = tqdm(total=len(chunks), desc="characters", unit="chunk", disable=not progress)
    groups = group_chunks(chunks, workers)
    tasks = with_payloads(groups, sources, field)
    for group, found in zip(groups, ordered_map(chunk_chars, tasks, pool, workers), strict=True):
        chars |= found
        bar.update(len(group))
    bar.close()
    return CharTokenizer(chars)


def suggested_vocab_size(corpus_bytes: int) -> int:
    """A vocabulary for a corpus of this size: about 2 x sqrt(bytes), in steps of 500, from
    1,000 to 32,000 (0.5 MB -> 1,500; 5 MB -> 4,500; 100 MB -> 20,000). Too many pieces for a
    small corpus leave few tokens to train on and many pieces seen only a few times."""
    return int(min(32_000, max(1_000, round(2 * corpus_bytes ** 0.5 / 500) * 500)))


def iter_sentences(sources: list[Source], corpus: CorpusOptions) -> Iterator[str]:
    """Every non-empty line of the corpus, streamed chunk by chunk."""
    chunks = plan_chunks(sources, chunk_size_for(sum(s.size for s in sources)), corpus.field)
    for task in with_payloads([[chunk] for chunk in chunks], sources, corpus.field):
        for chunk, data in task:
            for text in read_chunk(sources[chunk.source], chunk, corpus.errors, corpus.field, data):
                yield from (line for line in text.splitlines() if line.strip())


def train_sentencepiece(sources: list[Source], corpus: CorpusOptions = CorpusOptions(),
                        options: SentencePieceOptions = SentencePieceOptions()) -> SentencePieceTokenizer:
    """Train a SentencePiece model on `sources` (see `gpt2.data.sources.resolve_sources`).
    Without options.vocab_size, the `suggested_vocab_size`, lowered to the most this corpus
    allows when it has fewer distinct pieces (a size the user asked for is never changed)."""
    o = options
    if o.vocab_size is None:
        o = dataclasses.replace(o, vocab_size=suggested_vocab_size(sum(s.size for s in sources)))
    try:
        return _train(sources, corpus, o)
    except RuntimeError as err:
        limit = _vocab_limit(str(err))
        if options.vocab_size is not None or limit is None:
            raise GPT2Error(_explain(str(err), o.vocab_size)) from None
    return train_sentencepiece(sources, corpus, dataclasses.replace(options, vocab_size=limit))


def _train(sources: list[Source], corpus: CorpusOptions, o: SentencePieceOptions) -> SentencePieceTokenizer:
    """One SentencePiece training run; RuntimeError with SentencePiece's message if it refuses."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter_sentences(sources, corpus), model_writer=model,
        vocab_size=o.vocab_size, model_type=o.model_type, character_coverage=o.character_coverage,
        byte_fallback=o.byte_fallback, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=False, allow_whitespace_only_pieces=True, split_digits=True,
        max_sentence_length=MAX_SENTENCE_BYTES, input_sentence_size=o.max_sentences,
        shuffle_input_sentence=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=o.threads or os.cpu_count() or 1, minloglevel=0 if o.verbose else 2)
    return SentencePieceTokenizer(model.getvalue(), source="trained model")


def _vocab_limit(message: str) -> int | None:
    """The largest vocabulary SentencePiece says this corpus allows, if that is its complaint."""
    limit = re.search(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", message)
    return int(limit.group(2)) if limit else None


def _explain(message: str, vocab_size: int) -> str:
    """One actionable line from SentencePiece's error text."""
    limit = _vocab_limit(message)
    if limit:
        return (f"--vocab_size {vocab_size:,} is larger than this corpus allows; use --vocab_size "
                f"{limit:,} or less, or train on more text")
    small = re.search(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)", message)
    if small:
        needed = int(small.group(2))
        return (f"--vocab_size {vocab_size:,} is too small: this corpus needs at least {needed:,} pieces "
                "(its characters, the byte pieces and <unk> <s> </s>); raise --vocab_size or "
                "lower --character_coverage")
    last = message.strip().splitlines()[-1] if message.strip() else "unknown error"
    return f"SentencePiece training failed: {last}"
