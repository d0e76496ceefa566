"""An example's text -> the token rows both scorers read, and what scoring one row yields.

The rules, shared by the fast path (scoring.py) and the reference (reference.py) so that they
differ only in how they compute:
- whitespace at the end of the context belongs to the continuation (lm-evaluation-harness does
  the same), so "line\\n" + "Next" is scored as "line" + "\\nNext";
- context and continuation are encoded separately, as llm.c's HellaSwag script does (at a
  whitespace boundary GPT-2's BPE gives the same ids as encoding the joined text);
- an empty context is the end-of-text token, so the first continuation token has a condition;
- a row longer than the model's context keeps its last context_length + 1 tokens (the
  context's start is cut), and at most context_length continuation tokens are scored.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpt2.errors import GPT2Error
from gpt2.evaluation.tasks import Example
from gpt2.tokenizers import Tokenizer


@dataclass(frozen=True)
class Row:
    """One continuation to score: the model reads `inputs` and is scored on predicting `targets`
    (inputs shifted by one) at the last `scored` positions."""

    inputs: list[int]
    targets: list[int]
    scored: int


@dataclass(frozen=True)
class EndingScore:
    """What a model says about one continuation given its context."""

    logprob: float  # sum of the log-probabilities of its scored tokens
    tokens: int  # how many tokens were scored
    greedy: bool  # whether each scored token is the model's most likely one (argmax)


def split_pair(context: str, continuation: str) -> tuple[str, str]:
    """Move trailing whitespace of `context` to the start of `continuation`."""
    kept = context.rstrip()
    return kept, context[len(kept):] + continuation


def encode_pair(tokenizer: Tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) by the rules above; special tokens' spellings are text."""
    context, continuation = split_pair(context, continuation)
    context_ids = tokenizer.encode(context, allow_special=False) or [tokenizer.eot_id]
    return context_ids, tokenizer.encode(continuation, allow_special=False)


def example_rows(tokenizer: Tokenizer, example: Example, context_length: int) -> list[Row]:
    """The rows of every continuation of `example`; a text the tokenizer cannot encode (e.g. a
    character a char model never saw) fails naming the example's file and line."""
    rows = []
    for continuation in example.continuations:
        try:
            context_ids, continuation_ids = encode_pair(tokenizer, example.context, continuation)
        except GPT2Error as err:
            raise GPT2Error(f"{example.where}: {err}") from None
        tokens = (context_ids + continuation_ids)[-(context_length + 1):]
        rows.append(Row(tokens[:-1], tokens[1:], min(len(continuation_ids), len(tokens) - 1)))
    return rows
