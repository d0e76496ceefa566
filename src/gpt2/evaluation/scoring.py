"""The fast scorer: the endings of many examples in one forward pass, each context read once.

Every example's endings are packed after its context in one sequence (packing.py); units are
sorted by length, so a batch holds units of similar length, and right-padded to the longest.
The model's blocks run on the packed batch with a mask that keeps endings apart; the LM head
(d x vocabulary: at GPT-2's vocabulary a third of the model's work per position, more in small
models) runs only at the positions whose next token is scored, and only those go through the
log-softmax.

`reference.py` is the same computation written out one row at a time; tests check they agree.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from gpt2.evaluation.encoding import EndingScore, Row, example_rows
from gpt2.evaluation.packing import Unit, example_units, pack
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


@torch.no_grad()
def score_encoded(model: GPT2, per_example: Sequence[Sequence[Row]], batch_size: int,
                  autocast_ctx: contextlib.AbstractContextManager | None = None,
                  progress: bool = False) -> list[list[EndingScore]]:
    """`score_examples` of examples already encoded (`encoding.example_rows`). A batch holds
    units until it has `batch_size` endings (at least one unit), longest units first."""
    from tqdm.auto import tqdm

    units, first = [], 0
    for rows in per_example:
        units += example_units(rows, first)
        first += len(rows)
    units.sort(key=lambda u: -u.length)
    flat: list[EndingScore | None] = [None] * first
    with tqdm(total=first, desc="scoring", unit="ending", disable=not progress, dynamic_ncols=True) as bar:
        for batch in _batches(units, batch_size):
            for row, score in _score_units(model, batch, autocast_ctx).items():
                flat[row] = score
            bar.update(sum(len(u.rows) for u in batch))
    out, start = [], 0
    for rows in per_example:
        out.append(flat[start:start + len(rows)])
        start += len(rows)
    return out  # type: ignore[return-value]


def _batches(units: Sequence[Unit], batch_size: int) -> list[list[Unit]]:
    batches: list[list[Unit]] = [[]]
    for unit in units:
        if batches[-1] and sum(len(u.rows) for u in batches[-1]) + len(unit.rows) > batch_size:
            batches.append([])
        batches[-1].append(unit)
    return batches


def _score_units(model: GPT2, units: Sequence[Unit],
                 autocast_ctx: contextlib.AbstractContextManager | None) -> dict[int, EndingScore]:
    packed = pack(units, model.device)
    with autocast_ctx or contextlib.nullcontext():
        hidden = model.hidden_states(packed.idx, packed.positions, packed.mask, [None] * len(model.blocks))
        picked = model.lm_head(hidden.flatten(0, 1)[packed.picks]).float()  # (S, V): scored positions only
    logprobs = picked.gather(-1, packed.targets[:, None]).squeeze(-1) - picked.logsumexp(dim=-1)  # (S,)
    misses = (picked.argmax(dim=-1) != packed.targets).long()  # (S,): 1 where greedy decoding differs
    n, owners = len(packed.rows), packed.owners  # owners (S,): the branch of each scored id
    sums = torch.zeros(n, device=picked.device).index_add_(0, owners, logprobs)  # (n,)
    missed = torch.zeros(n, dtype=torch.long, device=picked.device).index_add_(0, owners, misses)  # (n,)
    counts = torch.bincount(owners, minlength=n)  # (n,)
    scores = zip(sums.tolist(), counts.tolist(), missed.tolist(), strict=True)
    return {row: EndingScore(s, c, m == 0) for row, (s, c, m) in zip(packed.rows, scores, strict=True)}
