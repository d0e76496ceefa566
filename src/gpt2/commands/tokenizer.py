"""`gpt2 tokenizer train`: a SentencePiece tokenizer trained on your text, saved to a folder."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from gpt2.commands.options import flat_command
from gpt2.data.options import SentencePieceOptions
from gpt2.data.sources import CorpusOptions, resolve_sources
from gpt2.errors import GPT2Error


@dataclass(frozen=True)
class TokenizerOutput:
    """What to train on and where the tokenizer goes.

    Args:
        input: Text file(s), folder(s), glob(s), .jsonl file(s) or `shakespeare`; several as '[a, b]'.
        out: Folder to write tokenizer.model + gpt2_tokenizer.json into.
        overwrite: Write into an --out that already holds a tokenizer or other files (only the
            tokenizer's files are replaced; nothing else is deleted).
    """

    input: str | list[str]
    out: str
    overwrite: bool = False


def _check_out(out_dir: Path, overwrite: bool) -> None:
    """Refuse an --out that is a file, or that holds a tokenizer or anything else, unless overwrite
    (which replaces only the tokenizer's own files; other files are left alone)."""
    from gpt2.tokenizers.base import TOKENIZER_FILE  # here, not at the top: see commands/__init__.py

    if out_dir.exists() and not out_dir.is_dir():
        raise GPT2Error(f"--out {out_dir} exists and is not a folder")
    if overwrite or not out_dir.is_dir():
        return
    if (out_dir / TOKENIZER_FILE).exists():
        raise GPT2Error(f"{out_dir} already holds a tokenizer; choose another --out or pass "
                        "--overwrite true")
    if any(out_dir.iterdir()):
        raise GPT2Error(f"{out_dir} is not empty; choose another --out or pass --overwrite true "
                        "(which writes the tokenizer's files there and leaves the others alone)")


def _run(target: TokenizerOutput, corpus: CorpusOptions, options: SentencePieceOptions) -> None:
    # Imported here, not at the top, so that --help does not import SentencePiece (see commands/__init__.py).
    from gpt2.data.train_tokenizer import suggested_vocab_size, train_sentencepiece

    out_dir = Path(target.out)
    _check_out(out_dir, target.overwrite)
    inputs = [target.input] if isinstance(target.input, str) else list(target.input)
    sources = resolve_sources(inputs, corpus.glob)
    if options.vocab_size is None:
        size = sum(s.size for s in sources)
        print(f"gpt2: note: no --vocab_size: {suggested_vocab_size(size):,} pieces suggested for "
              f"{size / 1e6:.1f} MB of text (fewer if the text has fewer distinct pieces)", file=sys.stderr)
    tok = train_sentencepiece(sources, corpus, options)
    tok.save(out_dir)  # each file atomically, gpt2_tokenizer.json last; nothing else is touched
    print(f"{out_dir}: SentencePiece {options.model_type}, {tok.vocab_size:,} pieces, "
          f"end-of-text id {tok.eot_id}")


tokenizer_train = flat_command(_run, TokenizerOutput, CorpusOptions, SentencePieceOptions, name="train",
                               doc="""\
Train a SentencePiece tokenizer and save it to a folder (use it with `gpt2 prepare --tokenizer`).""")
