"""Turning a model into ids: next-token prediction applied over and over.

Two paths that give the same greedy tokens (tests check it):
- `generate_text`: the readable reference. Every step re-reads the whole context.
- `generate` / `generate_stream`: the fast path. The prompt is read once ("prefill"), its
  keys and values kept in a `KVCache`; each later step feeds only the newest token. Adds
  sampling (temperature, top-k, top-p, repetition penalty), stopping (end-of-text id, stop
  strings), batched prompts of different lengths (left padding + attention mask) and a
  sliding window when the text outgrows the model's context. On CUDA each one-token step
  runs as a replayed CUDA graph over a fixed-shape cache (static_cache.py), which removes
  the per-kernel launch cost that bounds batch-1 decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from gpt2.attention import KVCache
from gpt2.errors import GPT2Error
from gpt2.generation.fast_linear import prepare_for_decoding
from gpt2.generation.request import check_request, check_stride, make_generator
from gpt2.generation.sampling import SamplingOptions, sample_next
from gpt2.generation.static_cache import DECODERS, make_decoder
from gpt2.generation.stopping import StopStrings
from gpt2.gpt_model import GPT2


@torch.no_grad()
def generate_text(model: GPT2, idx: Tensor, max_new_tokens: int, context_size: int) -> Tensor:
    """Greedy decoding, the readable reference: no cache, the whole context re-read each step.

    idx: (B, T) prompt ids -> (B, T + max_new_tokens). The context is cropped to the last
    `context_size` tokens, so text can grow past what the model has positions for.
    """
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]  # (B, <= context_size)
        logits = model(idx_cond)[:, -1, :]  # (B, vocab): the prediction for the next position
        idx_next = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
        idx = torch.cat((idx, idx_next), dim=1)  # (B, T + 1)
    return idx


class GenerationStep(NamedTuple):
    """One decoding step: the chosen ids (B,) and the model's raw logits (B, V) they came from.
    Rows that have already stopped get the padding id (the end-of-text id)."""

    tokens: Tensor
    logits: Tensor


def generate(model: GPT2, idx: Tensor, max_new_tokens: int, sampling: SamplingOptions = SamplingOptions(),
             *, callback: Callable[[Tensor], Any] | None = None, **options: Any) -> Tensor:
    """Continue each prompt by up to `max_new_tokens` tokens with a KV cache.

    idx: (B, T) prompt ids. Returns (B, T + n) where n <= max_new_tokens: generation ends
    early once every row has stopped (see `generate_stream`, whose keyword `options` this
    takes: eos_id, stop_strings + tokenizer, generator or seed, attention_mask for
    left-padded prompts, window_stride). `sampling` holds temperature (0 = greedy), top-k,
    top-p and the repetition penalty. `callback(tokens)` sees each step's (B,) ids as they
    are chosen.
    """
    new: list[Tensor] = []
    for step in generate_stream(model, idx, max_new_tokens, sampling, **options):
        new.append(step.tokens)
        if callback is not None:
            callback(step.tokens)
    if not new:
        return idx.clone()
    return torch.cat((idx, torch.stack(new, dim=1).to(idx.dtype)), dim=1)  # (B, T + n)


@dataclass(frozen=True)
class _Request:
    """A checked generation request: what the decoding loop needs besides the model and ids."""

    max_new_tokens: int
    sampling: SamplingOptions
    mask: Tensor | None  # (B, T) left-padding mask, None when nothing is padded
    stride: int  # how far the window slides when the context is full
    eos_id: int | None
    pad_id: int | None  # what a row that stopped gets; None: rows never stop early
    stops: StopStrings
    generator: torch.Generator | None
    decoder: str  # "auto", "dynamic", "static" or "cuda_graph" (see static_cache.py)


def generate_stream(model: GPT2, idx: Tensor, max_new_tokens: int,
                    sampling: SamplingOptions = SamplingOptions(),
                    *, eos_id: int | None = None, stop_strings: Sequence[str] | None = None,
                    tokenizer: Any = None, generator: torch.Generator | None = None, seed: int | None = None,
                    attention_mask: Tensor | None = None, window_stride: int | None = None,
                    decoder: str = "auto") -> Iterator[GenerationStep]:
    """The iterator behind `generate`: yields a `GenerationStep` as soon as each token is chosen.

    idx: (B, T) prompt ids, left-padded when prompts differ in length, with `attention_mask`
    (B, T) 1 for real tokens and 0 for padding. A row stops at `eos_id` or once its text
    contains one of `stop_strings` (which needs `tokenizer`); a row that stopped is padded
    with `eos_id` (or the tokenizer's end-of-text id). `seed` or `generator` makes sampling
    reproducible. When the text fills the model's context, the window slides forward by
    `window_stride` positions (default a quarter of the context) and the cache is rebuilt
    from the tokens still inside it: each step then sees the last tokens that fit, as
    `generate_text` does. With window_stride=1 every later step sees exactly the last
    context_length tokens, which gives `generate_text`'s tokens (slowly: a full re-read each step).
    `decoder` picks how each one-token step runs: "auto" (a CUDA graph on CUDA, else
    "dynamic"), "dynamic" (the cache sliced to its length), "static" (the fixed-shape step run
    eagerly) or "cuda_graph"; all give the same tokens.
    Checks everything up front, so a mistake raises GPT2Error before any work is done.
    """
    if decoder not in DECODERS or (decoder == "cuda_graph" and idx.device.type != "cuda"):
        raise GPT2Error(f"decoder must be one of {', '.join(DECODERS)} (cuda_graph on CUDA only), "
                        f"got {decoder!r} on {idx.device.type}")
    mask = check_request(model, idx, max_new_tokens, attention_mask)
    stops = StopStrings(stop_strings, tokenizer)
    pad_id = eos_id if eos_id is not None else (tokenizer.eot_id if stop_strings else None)
    request = _Request(max_new_tokens, sampling, mask, check_stride(window_stride, model.cfg.context_length),
                       eos_id, pad_id, stops, make_generator(generator, seed, idx.device, sampling.greedy),
                       decoder)
    return _decode(model, idx, request)


def _decode(model: GPT2, idx: Tensor, request: _Request) -> Iterator[GenerationStep]:
    """Run the loop in eval mode without gradients, restoring the model's mode afterwards."""
    was_training = model.training
    model.eval()
    if model.dtype == torch.bfloat16 or not was_training:
        # A model in eval mode (as from_pretrained returns it) is there to generate from: give its
        # CPU weights the decoding layout (float32 ~1.3x, bf16 ~2x; values unchanged). A model in
        # training (samples during a run) keeps its float32 memory layout untouched.
        prepare_for_decoding(model)
    try:
        with torch.no_grad():
            yield from _decode_loop(model, idx, request)
    finally:
        model.train(was_training)


def _decode_loop(model: GPT2, idx: Tensor, r: _Request) -> Iterator[GenerationStep]:
    """Prefill, then one token per step from the cache. Only what was asked for is computed:
    no per-step validation, no growing concatenation (ids go into a preallocated buffer)."""
    B, T = idx.shape
    total = T + r.max_new_tokens
    ctx = model.cfg.context_length
    tokens = torch.empty(B, total, dtype=torch.long, device=idx.device)  # prompt + generated ids
    tokens[:, :T] = idx
    mask = r.mask
    if mask is not None:  # grows by one real token per step
        mask = torch.cat((mask, mask.new_ones(B, r.max_new_tokens)), dim=1)  # (B, total)
    cache = KVCache(model.cfg, B, min(ctx, total), device=model.device, dtype=model.dtype)
    penalise = r.sampling.repetition_penalty != 1
    seen = _seen_tokens(tokens[:, :T], mask, model.cfg.vocab_size) if penalise else None  # (B, V)
    done = torch.zeros(B, dtype=torch.bool, device=idx.device) if r.pad_id is not None else None
    logits, position, start = _prefill(model, tokens[:, :T], mask, cache, 0)
    decoder = make_decoder(r.decoder, model, cache, B)  # None: the dynamic path
    if decoder is not None:
        decoder.set_padding(mask[:, :T] if mask is not None else None)
    n = T  # tokens written so far; the cache holds tokens[:, start:n - 1] once a new one is written
    for step in range(r.max_new_tokens):
        next_id = sample_next(logits, r.sampling, seen, r.generator)  # (B,)
        if done is not None:
            next_id = torch.where(done, r.pad_id, next_id)
        tokens[:, n] = next_id
        n += 1
        if seen is not None:
            seen[torch.arange(B, device=seen.device), next_id] = True
        yield GenerationStep(next_id, logits)
        if done is not None:
            if r.eos_id is not None:
                done |= next_id == r.eos_id
            r.stops.update(done, tokens[:, T:n])
            if bool(done.all()):
                return
        if step == r.max_new_tokens - 1:
            return
        if cache.length == cache.max_len:  # no position left: slide the window
            logits, position, start = _prefill(model, tokens[:, :n], mask, cache, ctx - r.stride + 1)
            if decoder is not None:
                decoder.set_padding(mask[:, start:n] if mask is not None else None)
            continue
        if decoder is not None:
            logits = decoder.step(next_id, position)  # (B, V)
            position = position + 1
            continue
        step_mask = mask[:, start:n] if mask is not None else None  # (B, T_past + 1)
        step_pos = position[:, None] if mask is not None else None  # (B, 1)
        logits = model(next_id[:, None], cache=cache, attention_mask=step_mask,
                       position_ids=step_pos)[:, -1, :]  # (B, V)
        position = position + 1


def _prefill(model: GPT2, tokens: Tensor, mask: Tensor | None, cache: KVCache,
             keep: int) -> tuple[Tensor, Tensor, int]:
    """Fill an empty cache from `tokens` (B, n) — all of them, or the last `keep` when the
    window slides. Returns the logits of the last position (B, V), the position the next
    token will take (B,), and where the window starts in `tokens`."""
    for layer in cache.layers:  # start over: the kept tokens get new positions from 0
        layer.length = 0
    n = tokens.size(1)
    start = n - keep if keep else 0
    window = tokens[:, start:]  # (B, n - start)
    if mask is None:
        logits = model(window, cache=cache)[:, -1, :]
        return logits, torch.full((tokens.size(0),), n - start, device=tokens.device), start
    window_mask = mask[:, start:n]  # (B, n - start); left padding keeps the last column real
    positions = (window_mask.cumsum(dim=1) - 1).clamp(min=0)  # padding shares position 0
    logits = model(window, cache=cache, attention_mask=window_mask, position_ids=positions)[:, -1, :]
    return logits, positions[:, -1] + 1, start


def _seen_tokens(prompt: Tensor, mask: Tensor | None, vocab_size: int) -> Tensor:
    """bool (B, V): which ids occur in each row's real (unpadded) prompt."""
    real = torch.ones_like(prompt, dtype=torch.bool) if mask is None else mask[:, : prompt.size(1)].bool()
    return _scatter_or(prompt, real, vocab_size)


def _scatter_or(ids: Tensor, present: Tensor, vocab_size: int) -> Tensor:
    """bool (B, V), True at ids[b, j] wherever present[b, j] (scatter_ alone would let a later
    padded copy of an id overwrite an earlier real one)."""
    counts = torch.zeros(ids.size(0), vocab_size, dtype=torch.int32, device=ids.device)
    counts.scatter_add_(1, ids, present.to(torch.int32))
    return counts > 0
