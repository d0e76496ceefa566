"""`gpt2 prepare`: the command over `gpt2.data.prepare.prepare`."""

from __future__ import annotations

from dataclasses import dataclass

from gpt2.commands.options import flat_command
from gpt2.data.options import SPLITS, PrepareOptions
from gpt2.data.sources import CorpusOptions


@dataclass(frozen=True)
class PrepareInputs:
    """What to tokenize, with what, and where to.

    Args:
        input: Text file(s), folder(s), glob(s), .jsonl file(s), or the built-in corpus `shakespeare`;
            several as a list: --input '[a.txt, b/]'.
        out: Output folder: shards, meta.json and the tokenizer in tokenizer/.
        tokenizer: gpt2 (GPT-2 BPE), char (characters of this corpus), a SentencePiece .model file,
            or a folder holding a saved tokenizer (a checkpoint, another prepared folder's tokenizer/).
    """

    input: str | list[str]
    out: str
    tokenizer: str = "gpt2"


def _run(what: PrepareInputs, corpus: CorpusOptions, options: PrepareOptions) -> None:
    # Imported here, not at the top, so that --help does not import numpy (see commands/__init__.py).
    from gpt2.data.prepare import prepare

    inputs = [what.input] if isinstance(what.input, str) else list(what.input)
    meta = prepare(inputs, what.out, what.tokenizer, corpus, options)
    counts = ", ".join(f"{split} {meta.splits[split].tokens:,} tokens" for split in SPLITS)
    print(f"{what.out}: {meta.tokenizer['kind']} (vocab {meta.vocab_size:,}, {meta.dtype}): {counts}")


prepare_command = flat_command(_run, PrepareInputs, CorpusOptions, PrepareOptions, name="prepare", doc="""\
Tokenize text into shards for training (streaming, on all cores, re-runs are free).""")
