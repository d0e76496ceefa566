"""Scores -> the accuracies the field reports, each with its definition.

Multiple choice: the prediction is the choice with the highest score, where the score is
- acc:            the sum of the continuation's token log-probabilities;
- acc_norm_token: that sum divided by the number of tokens (llm.c's and build-nanogpt's
                  "acc_norm": the mean log-probability per token);
- acc_norm_byte:  that sum divided by the UTF-8 bytes of the choice as the file writes it
                  (lm-evaluation-harness's "acc_bytes"; its "acc_norm" divides by characters,
                  which is the same number on ASCII text such as HellaSwag).
Ties go to the first choice (as numpy's argmax, which both reference scripts use).
Cloze (lambada): acc is the fraction of examples whose every target token is the model's
argmax given the text before it (greedy decoding would write the target), and perplexity is
exp(-mean target log-probability), as lm-evaluation-harness reports for LAMBADA.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from gpt2.evaluation.encoding import EndingScore
from gpt2.evaluation.tasks import Example

CHOICE_DEFINITIONS = {
    "acc": "argmax over choices of the sum of the continuation's token log-probabilities",
    "acc_norm_token": "argmax of that sum / the continuation's token count (llm.c / build-nanogpt acc_norm)",
    "acc_norm_byte": "argmax of that sum / the choice's UTF-8 bytes (lm-evaluation-harness acc_bytes; "
                     "equals its acc_norm, per character, on ASCII text)",
}
CLOZE_DEFINITIONS = {
    "acc": "fraction of examples whose every target token is the argmax given the text before it",
    "perplexity": "exp(-mean over examples of the target's summed log-probability)",
}


def definitions(task: str) -> dict[str, str]:
    """Metric name -> how it is computed, for the task's kind."""
    return CLOZE_DEFINITIONS if task == "lambada" else CHOICE_DEFINITIONS


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))  # the first of equal maxima


def predictions(example: Example, scores: Sequence[EndingScore]) -> dict[str, int]:
    """The choice each multiple-choice metric picks for one example."""
    sums = [s.logprob for s in scores]
    return {"acc": _argmax(sums),
            "acc_norm_token": _argmax([s.logprob / s.tokens for s in scores]),
            "acc_norm_byte": _argmax([s.logprob / len(c.encode("utf-8"))
                                      for s, c in zip(scores, example.choices, strict=True)])}


def task_metrics(task: str, examples: Sequence[Example],
                 scores: Sequence[Sequence[EndingScore]]) -> dict[str, float]:
    """The task's metrics over all examples (see the module docstring)."""
    if task == "lambada":
        target_scores = [s[0] for s in scores]
        mean_logprob = sum(s.logprob for s in target_scores) / len(target_scores)
        return {"acc": sum(s.greedy for s in target_scores) / len(target_scores),
                "perplexity": math.exp(-mean_logprob) if -mean_logprob < 700 else math.inf}
    hits = dict.fromkeys(CHOICE_DEFINITIONS, 0)
    for example, example_scores in zip(examples, scores, strict=True):
        for name, choice in predictions(example, example_scores).items():
            hits[name] += choice == example.label
    return {name: count / len(examples) for name, count in hits.items()}


def chance(task: str, examples: Sequence[Example]) -> float | None:
    """The accuracy of guessing uniformly (None for cloze tasks, where it is near 0)."""
    if task == "lambada":
        return None
    return sum(1 / len(ex.choices) for ex in examples) / len(examples)
