"""The fast scorer: the continuations of many examples in one forward pass.

All rows (one per continuation) are sorted by length, so a batch holds rows of similar length,
and right-padded to the batch's longest. Right padding needs no attention mask: attention is
causal, so a real position only ever attends to the positions before it, which are all real;
padding positions see real ones but nothing reads what they compute. Position ids stay
0, 1, 2, ... for every row. (Left padding, as batched generation uses, would need both a mask
and shifted position ids.) Only the scored positions are turned into log-probabilities.

`reference.py` is the same computation written out one row at a time; tests check they agree.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import Tensor

from gpt2.evaluation.encoding import EndingScore, Row, example_rows
from gpt2.evaluation.tasks import Example
from gpt2.gpt_model import GPT2
from gpt2.tokenizers import Tokenizer


def score_examples(model: GPT2, tokenizer: Tokenizer, examples: Sequence[Example], batch_size: int = 32,
                   context_length: int | None = None,
                   autocast_ctx: contextlib.AbstractContextManager | None = None,
                   progress: bool = False) -> list[list[EndingScore]]:
    """For each example, the score of each of its continuations (in the file's order)."""
    per_example = [example_rows(tokenizer, ex, context_length or model.cfg.context_length) for ex in examples]
    return score_encoded(model, per_example, batch_size, autocast_ctx, progress)


def score_encoded(model: GPT2, per_example: Sequence[Sequence[Row]], batch_size: int,
                  autocast_ctx: contextlib.AbstractContextManager | None = None,
                  progress: bool = False) -> list[list[EndingScore]]:
    """`score_examples` of examples already encoded (`encoding.example_rows`)."""
    flat = score_rows(model, [row for rows in per_example for row in rows], batch_size, autocast_ctx,
                      progress)
    out, start = [], 0
    for rows in per_example:
        out.append(flat[start:start + len(rows)])
        start += len(rows)
    return out


@torch.no_grad()
def score_rows(model: GPT2, rows: Sequence[Row], batch_size: int,
               autocast_ctx: contextlib.AbstractContextManager | None = None,
               progress: bool = False) -> list[EndingScore]:
    """The score of every row, `batch_size` rows per forward pass, longest rows first."""
    from tqdm.auto import tqdm

    order = sorted(range(len(rows)), key=lambda i: -len(rows[i].inputs))
    scores: list[EndingScore | None] = [None] * len(rows)
    with tqdm(total=len(rows), desc="scoring", unit="seq", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            for i, score in zip(chosen, _score_batch(model, [rows[i] for i in chosen], autocast_ctx),
                                strict=True):
                scores[i] = score
            bar.update(len(chosen))
    return scores  # type: ignore[return-value]


def _score_batch(model: GPT2, rows: Sequence[Row],
                 autocast_ctx: contextlib.AbstractContextManager | None) -> list[EndingScore]:
    idx, targets, scored = _pad(rows, model.device)  # (B, T) each
    with autocast_ctx or contextlib.nullcontext():
        logits = model(idx)  # (B, T, V)
    picked = logits[scored].float()  # (S, V): only the positions that are scored
    wanted = targets[scored]  # (S,)
    logprobs = picked.gather(-1, wanted[:, None]).squeeze(-1) - picked.logsumexp(dim=-1)  # (S,)
    misses = (picked.argmax(dim=-1) != wanted).float()  # (S,): 1 where greedy decoding differs
    row_of = scored.nonzero()[:, 0]  # (S,): which row each scored position belongs to
    sums = torch.zeros(len(rows), device=idx.device).index_add_(0, row_of, logprobs)  # (B,)
    missed = torch.zeros(len(rows), device=idx.device).index_add_(0, row_of, misses)  # (B,)
    return [EndingScore(float(s), row.scored, bool(m == 0))
            for s, m, row in zip(sums.tolist(), missed.tolist(), rows, strict=True)]


def _pad(rows: Sequence[Row], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded inputs and targets (B, T) and the (B, T) bool mask of scored positions."""
    T = max(len(row.inputs) for row in rows)
    idx = torch.zeros(len(rows), T, dtype=torch.long)
    targets = torch.zeros(len(rows), T, dtype=torch.long)
    scored = torch.zeros(len(rows), T, dtype=torch.bool)
    for b, row in enumerate(rows):
        n = len(row.inputs)
        idx[b, :n] = torch.tensor(row.inputs)
        targets[b, :n] = torch.tensor(row.targets)
        scored[b, n - row.scored:n] = True
    return idx.to(device), targets.to(device), scored.to(device)
