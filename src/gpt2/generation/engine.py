"""The decoding engine: token ids in, token ids out, for rows that come and go at any step.

A row is one sequence being continued: its prompt ids, its own sampling settings and
random stream, its own limit and stop ids. The engine keeps every row's keys and values in
one slot of a `SlotCache`; `add` prefills a new row's prompt into a free slot between two
steps while the other rows keep their place, and `step` draws one token for every row at
once (one forward pass over the batch, one vectorised sampling pass, row_sampling.py) and
reports what happened to each row. A row that finishes (a stop id, its limit) or is
cancelled leaves at once, and its slot is free for the next `add`: continuous batching, as
vLLM and TGI schedule. The engine knows nothing about text: `generate` (decode.py) and the
text layer (text.py, and through it `gpt2 serve`) are its users.

A row whose cache is full (its text outgrew the model's context) slides its window: its
last tokens are prefilled again from position 0, as `generate_text` crops its input.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from gpt2.errors import GPT2Error
from gpt2.generation.host_transfer import HostCopy, to_device
from gpt2.generation.kv_slots import SlotCache
from gpt2.generation.options import SamplingOptions
from gpt2.generation.row_sampling import RowSettings, chosen_logprobs, sample_rows
from gpt2.generation.static_cache import make_decoder
from gpt2.gpt_model import GPT2


@dataclass(frozen=True)
class RowSpec:
    """What one row asks for. `key` picks its random stream (see row_sampling.row_keys; greedy
    rows ignore it); `logprobs`: also report the chosen token's log-probability and this many
    most likely alternatives (None: neither)."""

    prompt: Sequence[int]
    max_new_tokens: int
    sampling: SamplingOptions = SamplingOptions()
    key: int = 0
    stop_ids: frozenset[int] = frozenset()
    logprobs: int | None = None


@dataclass(frozen=True)
class TokenEvent:
    """One token of one row. `logits` (V,): the raw logits it was drawn from; `logprob` and
    `top` ((id, log-probability), best first) are under those logits, before temperature and
    the other knobs, when the row asked for them. `finished`: "stop" (a stop id) or "length"."""

    row: int
    token: int
    logits: Tensor
    logprob: float | None = None
    top: list[tuple[int, float]] = field(default_factory=list)
    finished: str | None = None


@dataclass
class _Row:
    id: int
    spec: RowSpec
    tokens: list[int]  # prompt and generated ids (the window slides over them)
    drawn: int = 0  # tokens generated so far


@contextmanager
def decoding(model: GPT2) -> Iterator[None]:
    """Eval mode and no gradients while decoding; the model's mode is restored afterwards (a
    model in training can be sampled from without changing its training)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


class Engine:
    """Up to `max_rows` rows decoded together over a cache of `max_len` positions per row.
    `window_stride`: how far a full row's window slides (default a quarter of max_len);
    `decoder`: how a step runs ("auto", "dynamic", "static", "cuda_graph": static_cache.py;
    "compiled": compiled_step.py)."""

    def __init__(self, model: GPT2, max_rows: int, max_len: int | None = None, *,
                 window_stride: int | None = None, decoder: str = "auto") -> None:
        max_len = min(max_len or model.cfg.context_length, model.cfg.context_length)
        self.model = model
        self.cache = SlotCache(model.cfg, max_rows, max_len, model.device, model.dtype)
        self.stride = min(window_stride or max(1, max_len // 4), max_len)
        self.decoder = make_decoder(decoder, model, self.cache)
        self.run_ahead = model.device.type == "cuda"  # see step (on the CPU nothing would overlap)
        self.rows: list[_Row] = []  # row i lives in slot i
        self.logits: Tensor | None = None  # (A, V): the next-token logits of every row
        self.seen: Tensor | None = None  # bool (A, V): the ids in each row's text (for the penalty)
        self._settings: RowSettings | None = None  # rebuilt whenever the rows change
        self._next_id = 0

    @property
    def free(self) -> int:
        """How many more rows fit now."""
        return self.cache.rows - len(self.rows)

    @torch.no_grad()
    def add(self, spec: RowSpec) -> int:
        """Prefill a new row into a free slot; returns its id. Raises GPT2Error when no slot is
        free or the row is invalid (nothing changes then)."""
        self._check(spec)
        slot = len(self.rows)
        logits = self._prefill(slot, list(spec.prompt))  # (1, V)
        seen = torch.zeros_like(logits, dtype=torch.bool)
        seen[0, torch.tensor(list(spec.prompt), device=seen.device)] = True
        self.logits = logits if self.logits is None else torch.cat((self.logits, logits))
        self.seen = seen if self.seen is None else torch.cat((self.seen, seen))
        self.rows.append(_Row(self._next_id, spec, list(spec.prompt)))
        self._next_id += 1
        self._settings = None
        return self.rows[-1].id

    def cancel(self, row_id: int) -> None:
        """Remove a row now (its client left); unknown or finished rows are ignored."""
        slots = [i for i, row in enumerate(self.rows) if row.id == row_id]
        if slots:
            self._remove(slots)

    @torch.no_grad()
    def step(self) -> list[TokenEvent]:
        """One token for every row; finished rows leave; the others' next logits are computed.

        The tokens are drawn on the device. When they cannot change what runs next (no row
        reaches its limit or fills its window now), the next forward pass is queued before the
        host reads them: on a GPU the host's bookkeeping then overlaps the pass (a row that
        drew a stop id has its slot computed for nothing and dropped)."""
        if not self.rows:
            return []
        assert self.logits is not None and self.seen is not None
        logits, A, settings = self.logits, len(self.rows), self._row_settings()
        counters = (to_device([row.drawn for row in self.rows], logits.device)
                    if settings.any_sampled else None)  # (A,): each row's place in its stream
        tokens = sample_rows(logits, settings, self.seen, counters)  # (A,)
        if settings.any_penalty:
            self.seen[torch.arange(A, device=tokens.device), tokens] = True
        infos = chosen_logprobs(logits, tokens, [row.spec.logprobs for row in self.rows])
        host = HostCopy(tokens)
        ahead = self.run_ahead and all(row.drawn + 1 < row.spec.max_new_tokens for row in self.rows) \
            and max(self.cache.lengths[:A]) < self.cache.max_len
        if ahead:
            self._advance(tokens)
        events = []
        for i, (row, token) in enumerate(zip(self.rows, host.tolist(), strict=True)):
            row.tokens.append(token)
            row.drawn += 1
            finished = "stop" if token in row.spec.stop_ids else (
                "length" if row.drawn >= row.spec.max_new_tokens else None)
            events.append(TokenEvent(row.id, token, logits[i], *infos[i], finished))
        order = self._remove([i for i, event in enumerate(events) if event.finished])
        if self.rows and not ahead:  # the rows that stay, in their new slots
            self._advance(tokens[to_device(order, tokens.device)] if len(order) < A else tokens)
        return events

    def _check(self, spec: RowSpec) -> None:
        n, vocab = len(spec.prompt), self.model.cfg.vocab_size
        if self.free == 0:
            raise GPT2Error(f"the engine is full ({self.cache.rows} rows); add the row after one finishes")
        if not 1 <= n <= self.cache.max_len:
            raise GPT2Error(f"a prompt must have 1 to {self.cache.max_len} tokens, got {n}")
        if not all(0 <= t < vocab for t in spec.prompt):
            raise GPT2Error(f"a prompt id is outside the vocabulary [0, {vocab})")
        if isinstance(spec.max_new_tokens, bool) or not isinstance(spec.max_new_tokens, int) \
                or spec.max_new_tokens < 1:
            raise GPT2Error(f"max_new_tokens must be an integer >= 1, got {spec.max_new_tokens!r}")

    def _prefill(self, slot: int, tokens: list[int]) -> Tensor:
        """Fill slot `slot` from `tokens` (positions 0..T-1) -> the last position's logits (1, V)."""
        idx = torch.tensor([tokens], device=self.model.device)  # (1, T)
        positions = torch.arange(len(tokens), device=idx.device)[None]  # (1, T)
        hidden = self.model.hidden_states(idx, positions, None, self.cache.prefill_views(slot, slot + 1))
        self.cache.lengths[slot] = len(tokens)
        return self.model.lm_head(hidden[:, -1])  # (1, V): the head of the last position only

    def _advance(self, tokens: Tensor) -> None:
        """Feed each row's new token (A,): slide full windows, then one step for every row."""
        for slot, row in enumerate(self.rows):
            if self.cache.lengths[slot] == self.cache.max_len:
                kept = row.tokens[-(self.cache.max_len - self.stride + 1):-1]  # the newest is fed below
                self.cache.lengths[slot] = 0
                if kept:
                    self._prefill(slot, kept)
        lengths = self.cache.lengths[:len(self.rows)]
        if self.decoder is not None:
            self.logits = self.decoder.step(tokens, lengths)
        else:
            self.logits = self._dynamic_step(tokens, lengths)
        for slot in range(len(self.rows)):
            self.cache.lengths[slot] += 1

    def _dynamic_step(self, tokens: Tensor, lengths: list[int]) -> Tensor:
        """tokens (A,) at positions `lengths` -> logits (A, V), reading each slot up to the
        longest row. Rows of equal length (always at batch 1) need neither mask nor gather."""
        span = max(lengths) + 1
        if all(n == lengths[0] for n in lengths):
            write: int | Tensor = lengths[0]
            positions = torch.full((1, 1), lengths[0], device=tokens.device)  # (1, 1), broadcast
            mask = None
        else:
            write = torch.tensor(lengths, device=tokens.device)  # (A,)
            positions = write[:, None]  # (A, 1)
            visible = torch.arange(span, device=tokens.device)[None, :] <= positions  # (A, span)
            mask = visible[:, None, None, :]  # (A, 1, 1, span)
        views = self.cache.step_views(len(lengths), write, span)
        hidden = self.model.hidden_states(tokens[:, None], positions, mask, views)  # (A, 1, d)
        return self.model.lm_head(hidden[:, -1])  # (A, V)

    def _remove(self, slots: list[int]) -> list[int]:
        """Drop the rows in `slots`, moving the last rows into the holes so rows stay in slots
        0..A-1. Returns the old slot of every remaining row, in its new order."""
        order = list(range(len(self.rows)))
        for slot in sorted(slots, reverse=True):
            last = len(order) - 1
            if slot != last:
                self.cache.move(last, slot)
                self.rows[slot] = self.rows[last]
                order[slot] = order[last]
            self.rows.pop()
            order.pop()
        if slots:
            assert self.logits is not None and self.seen is not None
            index = torch.tensor(order, dtype=torch.long, device=self.logits.device)
            self.logits, self.seen = self.logits[index], self.seen[index]
            self._settings = None
        return order

    def _row_settings(self) -> RowSettings:
        if self._settings is None:
            self._settings = RowSettings.of([row.spec.sampling for row in self.rows],
                                            [row.spec.key for row in self.rows],
                                            self.model.cfg.vocab_size, self.model.device)
        return self._settings
