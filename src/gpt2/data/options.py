"""The options of `gpt2 prepare` and `gpt2 tokenizer train`, and the names they are checked against.

They live here, apart from the code that uses them (prepare.py, train_tokenizer.py), because
this module imports nothing heavy: the `gpt2` command reads these dataclasses to build its
options and `--help`, and must do so without importing numpy, SentencePiece or a tokenizer.
(`CorpusOptions`, the third, is in sources.py, which is as light.)
"""

from __future__ import annotations

from dataclasses import dataclass

from gpt2.errors import GPT2Error
from gpt2.limits import check_numbers, check_seed

SPLITS = ("train", "val")  # the splits of a prepared folder (shards.py)
TOKEN_DTYPES = ("auto", "uint16", "uint32")  # integer types of the ids in the shards
DEFAULT_SHARD_TOKENS = 100_000_000
MODEL_TYPES = ("bpe", "unigram")  # SentencePiece models `gpt2 tokenizer train` can learn


def check_token_dtype(name: str) -> None:
    """Refuse a --token_dtype that is not one of TOKEN_DTYPES."""
    if name not in TOKEN_DTYPES:
        raise GPT2Error(f"--token_dtype {name!r} must be auto, uint16 or uint32")


@dataclass(frozen=True)
class PrepareOptions:
    """How `gpt2 prepare` splits, shards and stores the tokens.

    Args:
        val_ratio: Fraction of the corpus (in chunks of whole lines/records, seeded) held out for validation.
        seed: Seed of the train/val split.
        workers: Worker processes (default: all cores).
        shard_tokens: Tokens per shard file at most.
        context_length: If given, fail unless the train split holds at least one window of this length.
        token_dtype: Integer type of the ids in the shards: auto (uint16 if the vocabulary fits, else
            uint32), uint16, uint32.
        overwrite: Replace shards in --out made with a different tokenizer.
        progress: Show progress bars.
    """

    val_ratio: float = 0.1
    seed: int = 0
    workers: int | None = None
    shard_tokens: int = DEFAULT_SHARD_TOKENS
    context_length: int | None = None
    token_dtype: str = "auto"
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        check_seed("--seed", self.seed)
        check_numbers(self)
        if not 0 <= self.val_ratio < 1:
            raise GPT2Error(f"--val_ratio {self.val_ratio} must be in [0, 1)")
        if self.context_length is not None and self.context_length < 1:
            raise GPT2Error(f"--context_length must be at least 1, got {self.context_length}")
        if (self.workers is not None and self.workers < 1) or self.shard_tokens < 1:
            raise GPT2Error(f"--workers ({self.workers}) and --shard_tokens ({self.shard_tokens}) "
                            "must be >= 1")
        check_token_dtype(self.token_dtype)  # refuses an unknown name now, before any work


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
        check_numbers(self)
        if self.model_type not in MODEL_TYPES:
            raise GPT2Error(f"--model_type {self.model_type!r} must be one of {MODEL_TYPES}")
        if not 0 < self.character_coverage <= 1:
            raise GPT2Error(f"--character_coverage {self.character_coverage} must be in (0, 1]")
        if self.vocab_size is not None and self.vocab_size < 4:
            raise GPT2Error(f"--vocab_size {self.vocab_size} is too small")
        if self.max_sentences < 1 or (self.threads is not None and self.threads < 1):
            raise GPT2Error(f"--max_sentences ({self.max_sentences}) and --threads ({self.threads}) "
                            "must be >= 1")
