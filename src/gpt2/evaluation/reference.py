"""The readable reference scorer: one continuation, one forward pass, one position at a time.

No batching, no padding, no sorting: each continuation's context and ids are windowed like
the fast path's (encoding.py), the model reads them, and the log-probability of each
continuation token is looked up in a log-softmax. tests/test_evaluation.py checks that the
fast path (scoring.py) gives the same scores and the same accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gpt2.evaluation.encoding import EndingScore, encode_pair
from gpt2.evaluation.tasks import Example
from gpt2.gpt_model import GPT2
from gpt2.tokenizers import Tokenizer


@torch.no_grad()
def score_examples_reference(model: GPT2, tokenizer: Tokenizer, examples: Sequence[Example],
                             context_length: int | None = None) -> list[list[EndingScore]]:
    """For each example, the score of each of its continuations (in the file's order)."""
    length = context_length or model.cfg.context_length
    out = []
    for example in examples:
        scores = []
        for continuation in example.continuations:
            context_ids, continuation_ids = encode_pair(tokenizer, example.context, continuation)
            tokens = (context_ids + continuation_ids)[-(length + 1):]  # what fits in the window
            logits = model(torch.tensor([tokens[:-1]], device=model.device))[0]  # (T, V)
            log_probs = logits.float().log_softmax(dim=-1)  # (T, V)
            n = min(len(continuation_ids), len(tokens) - 1)
            total, greedy = 0.0, True
            for pos in range(len(tokens) - 1 - n, len(tokens) - 1):  # the last n predictions
                target = tokens[pos + 1]
                total += log_probs[pos, target].item()
                greedy = greedy and int(log_probs[pos].argmax()) == target
            scores.append(EndingScore(total, n, greedy))
        out.append(scores)
    return out
