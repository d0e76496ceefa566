"""Sampling for a batch whose rows each have their own settings, in one pass over the batch.

`sample_next` (sampling.py) applies one `SamplingOptions` to every row: it is the readable
reference. The decoding engine's rows each carry their own temperature, top-k, top-p,
repetition penalty and random stream, so here each knob is a tensor with one entry per row
and every processor works on the whole (rows, vocab) matrix at once. A row whose knob is
off gets the neutral value (penalty 1, top-k = V, top-p = inf), which leaves it unchanged.
Tests check each row equals the reference processors applied to that row alone.

Randomness is per row and counter-based: the noise for a row's t-th token is a hash
(SplitMix64, Steele et al., 2014) of the row's key, t and the vocabulary index. A row's
tokens therefore depend on its key alone: not on which rows share its batch, when it joined,
or the device. A token is drawn with the Gumbel-max trick: argmax(logits / T + g) with g
Gumbel(0, 1) noise is a sample from softmax(logits / T) (Gumbel, 1954; Maddison et al., 2014).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gpt2.generation.options import SamplingOptions

_GAMMA = 0x9E3779B97F4A7C15 - (1 << 64)  # SplitMix64's increment, as a signed int64
_MUL1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MUL2 = 0x94D049BB133111EB - (1 << 64)


def _shift_right(x: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64 (torch's >> keeps the sign bit)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def _mix(x: Tensor) -> Tensor:
    """SplitMix64's finaliser: int64 -> well-scrambled int64 (multiplications wrap around).
    The constants go in as tensors: torch multiplies by a 0-d tensor ~3x faster than by a
    Python int this large."""
    mul1, mul2 = (torch.tensor(c, device=x.device) for c in (_MUL1, _MUL2))
    x = (x ^ _shift_right(x, 30)) * mul1
    x = (x ^ _shift_right(x, 27)) * mul2
    return x ^ _shift_right(x, 31)


def gumbel_noise(keys: Tensor, counters: Tensor, ids: Tensor) -> Tensor:
    """Gumbel(0, 1) noise (A, n) float32 for the vocabulary ids (A, n) of each row: a pure
    function of (key, counter, id), so noise computed for a few candidate ids equals the same
    entries of the noise for the whole vocabulary. keys, counters: int64 (A,)."""
    gamma = torch.tensor(_GAMMA, device=keys.device)
    stream = _mix(keys + counters * gamma)  # (A,): one stream per row and token
    bits = _mix(stream[:, None] + ids * gamma)  # (A, n)
    u = (_shift_right(bits, 40).float() + 0.5) / (1 << 24)  # uniform in (0, 1), 24 bits
    return -torch.log(-torch.log(u))


def row_keys(generator: torch.Generator, n: int) -> list[int]:
    """`n` row keys drawn from `generator`: seeding it the same way gives the same rows."""
    return torch.randint(0, 1 << 62, (n,), generator=generator, device=generator.device).tolist()


@dataclass(frozen=True)
class RowSettings:
    """Every row's sampling knobs as tensors, built once whenever the batch's rows change."""

    greedy: Tensor  # (A,) bool
    temperature: Tensor  # (A, 1) float32; 1 for greedy rows (they take the argmax anyway)
    top_k: Tensor  # (A, 1) int64; V = no limit
    top_p: Tensor  # (A, 1) float32; inf = no nucleus cut
    penalty: Tensor  # (A, 1) float32; 1 = off
    keys: Tensor  # (A,) int64
    max_top_k: int | None  # the largest top-k in use (None: no row limits k)
    all_top_k: bool  # every sampled row limits k: only its best ids can be drawn
    any_sampled: bool
    any_top_p: bool
    any_penalty: bool

    @classmethod
    def of(cls, options: Sequence[SamplingOptions], keys: Sequence[int], vocab_size: int,
           device: torch.device) -> RowSettings:
        def column(values: list, dtype: torch.dtype) -> Tensor:
            return torch.tensor(values, dtype=dtype, device=device)[:, None]

        top_k = [min(o.top_k, vocab_size) if o.top_k is not None else vocab_size for o in options]
        drawn = [k for k, o in zip(top_k, options, strict=True) if not o.greedy]  # greedy: the argmax
        return cls(greedy=torch.tensor([o.greedy for o in options], device=device),
                   temperature=column([o.temperature or 1.0 for o in options], torch.float32),
                   top_k=column(top_k, torch.long),
                   top_p=column([o.top_p if o.top_p is not None and o.top_p < 1 else float("inf")
                                 for o in options], torch.float32),
                   penalty=column([float(o.repetition_penalty) for o in options], torch.float32),
                   keys=torch.tensor(list(keys), dtype=torch.long, device=device),
                   max_top_k=max([k for k in top_k if k < vocab_size], default=None),
                   all_top_k=bool(drawn) and max(drawn) < vocab_size,
                   any_sampled=bool(drawn),
                   any_top_p=any(o.top_p is not None and o.top_p < 1 for o in options),
                   any_penalty=any(o.repetition_penalty != 1 for o in options))


def penalise_rows(logits: Tensor, seen: Tensor, penalty: Tensor) -> Tensor:
    """CTRL's repetition penalty with one penalty (A, 1) per row (see apply_repetition_penalty)."""
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def filter_rows(logits: Tensor, s: RowSettings) -> Tensor:
    """Top-k, then top-p, each row with its own k and p: logits (A, V) -> (A, V) with -inf
    where a token may not be chosen. Equals apply_top_k then apply_top_p row by row."""
    if s.max_top_k is not None:
        values = torch.topk(logits, s.max_top_k, dim=-1).values  # (A, k_max), largest first
        kth = values.gather(1, (s.top_k - 1).clamp(max=s.max_top_k - 1))  # (A, 1)
        kth = torch.where(s.top_k < logits.size(-1), kth, float("-inf"))  # no limit: keep all
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if s.any_top_p:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (A, V)
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above
        drop_sorted = mass_before >= s.top_p  # top_p inf: nothing dropped
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return logits


def sample_rows(logits: Tensor, s: RowSettings, seen: Tensor | None, counters: Tensor | None) -> Tensor:
    """logits (A, V) -> the next id of every row (A,) int64, each row by its own settings.
    seen: bool (A, V), the ids already in each row's text (for the penalty); counters: (A,)
    how many tokens each row has drawn so far (its position in its random stream; only read
    when a row samples).

    When every sampled row limits top-k, only the k_max best ids can be drawn, so the filters
    and the noise run on those candidates alone (the same draw: the noise of an id does not
    depend on which other ids it is computed with; greedy rows take the argmax whatever their
    candidates); otherwise on the whole vocabulary."""
    if s.any_penalty and seen is not None:
        logits = penalise_rows(logits, seen, s.penalty)
    greedy = logits.argmax(dim=-1)  # (A,)
    if not s.any_sampled:
        return greedy
    scaled = logits.float() / s.temperature  # (A, V)
    if s.all_top_k:
        assert s.max_top_k is not None
        scaled, ids = torch.topk(scaled, s.max_top_k, dim=-1)  # (A, k_max) candidates, best first
    else:
        ids = torch.arange(scaled.size(-1), device=scaled.device).expand_as(scaled)  # (A, V)
    kept = filter_rows(scaled, s)
    assert counters is not None
    choice = (kept + gumbel_noise(s.keys, counters, ids)).argmax(dim=-1, keepdim=True)  # (A, 1)
    return torch.where(s.greedy, greedy, ids.gather(1, choice).squeeze(1))


def chosen_logprobs(logits: Tensor, tokens: Tensor, wanted: Sequence[int | None]
                    ) -> list[tuple[float | None, list[tuple[int, float]]]]:
    """logits (A, V), the drawn tokens (A,) -> per row: (the token's log-probability under the
    raw logits, the `wanted[i]` most likely (id, log-probability) pairs), or (None, []) for a
    row that asked for neither (wanted None). Reads the host only when some row asked."""
    if all(w is None for w in wanted):
        return [(None, [])] * len(wanted)
    logp = torch.log_softmax(logits.float(), dim=-1)  # (A, V)
    chosen = logp.gather(1, tokens[:, None]).squeeze(1).tolist()  # (A,)
    k = max(w for w in wanted if w is not None)
    values, ids = logp.topk(k, dim=-1)  # (A, k)
    return [(None, []) if w is None else (lp, list(zip(row_ids[:w], row_values[:w], strict=True)))
            for w, lp, row_ids, row_values in zip(wanted, chosen, ids.tolist(), values.tolist(), strict=True)]
