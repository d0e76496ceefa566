"""Turning a model into text: next-token prediction applied over and over.

Two paths that give the same greedy tokens (tests check it):
- `generate_text`: the readable reference. Every step re-reads the whole context.
- `generate` / `generate_stream`: the fast path. The prompt is read once ("prefill"), its
  keys and values kept in a `KVCache`; each later step feeds only the newest token. Adds
  sampling (temperature, top-k, top-p, repetition penalty), stopping (end-of-text id, stop
  strings), batched prompts of different lengths (left padding + attention mask) and a
  sliding window when the text outgrows the model's context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from gpt2.attention import KVCache
from gpt2.fast_linear import prepare_for_decoding
from gpt2.gpt_model import GPT2
from gpt2.sampling import SamplingOptions, sample_next

__all__ = ["GenerationStep", "generate", "generate_stream", "generate_text", "prepare_for_decoding"]


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


def generate(model: GPT2, idx: Tensor, max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, repetition_penalty: float = 1.0,
             eos_id: int | None = None, stop_strings: Sequence[str] | None = None, tokenizer: Any = None,
             generator: torch.Generator | None = None, seed: int | None = None,
             callback: Callable[[Tensor], Any] | None = None, attention_mask: Tensor | None = None,
             window_stride: int | None = None) -> Tensor:
    """Continue each prompt by up to `max_new_tokens` tokens with a KV cache.

    idx: (B, T) prompt ids, left-padded when prompts differ in length, with
    `attention_mask` (B, T) 1 for real tokens and 0 for padding. Returns (B, T + n) where
    n <= max_new_tokens: generation ends early once every row has produced `eos_id` or one
    of `stop_strings` (which needs `tokenizer`); a row that stopped is padded with `eos_id`
    (or the tokenizer's end-of-text id). temperature 0 is greedy; `seed` or `generator` makes
    sampling reproducible. `callback(tokens)` sees each step's (B,) ids as they are chosen.
    See `generate_stream` for the sliding window (`window_stride`).
    """
    steps = generate_stream(
        model, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
        repetition_penalty=repetition_penalty, eos_id=eos_id, stop_strings=stop_strings,
        tokenizer=tokenizer, generator=generator, seed=seed, attention_mask=attention_mask,
        window_stride=window_stride,
    )
    new: list[Tensor] = []
    for step in steps:
        new.append(step.tokens)
        if callback is not None:
            callback(step.tokens)
    if not new:
        return idx.clone()
    return torch.cat((idx, torch.stack(new, dim=1).to(idx.dtype)), dim=1)  # (B, T + n)


def generate_stream(model: GPT2, idx: Tensor, max_new_tokens: int, *, temperature: float = 1.0,
                    top_k: int | None = None, top_p: float | None = None,
                    repetition_penalty: float = 1.0, eos_id: int | None = None,
                    stop_strings: Sequence[str] | None = None, tokenizer: Any = None,
                    generator: torch.Generator | None = None, seed: int | None = None,
                    attention_mask: Tensor | None = None,
                    window_stride: int | None = None) -> Iterator[GenerationStep]:
    """The iterator behind `generate`: yields a `GenerationStep` as soon as each token is chosen.

    Options as in `generate`. When the text fills the model's context, the window slides
    forward by `window_stride` positions (default a quarter of the context) and the cache is
    rebuilt from the tokens still inside it: each step then sees the last tokens that fit, as
    `generate_text` does. With window_stride=1 every later step sees exactly the last
    context_length tokens, which gives `generate_text`'s tokens (slowly: a full re-read each step).
    Checks everything up front, so a mistake raises ValueError before any work is done.
    """
    options = SamplingOptions(temperature, top_k, top_p, repetition_penalty)
    mask = _check_request(model, idx, max_new_tokens, attention_mask)
    stride = _check_stride(window_stride, model.cfg.context_length)
    stops = _StopStrings(stop_strings, tokenizer)
    pad_id = eos_id if eos_id is not None else (tokenizer.eot_id if stop_strings else None)
    generator = _make_generator(generator, seed, idx.device, options.greedy)
    return _decode(model, idx, max_new_tokens, options, mask, stride, eos_id, pad_id, stops, generator)


def _decode(model: GPT2, idx: Tensor, max_new_tokens: int, options: SamplingOptions,
            mask: Tensor | None, stride: int, eos_id: int | None, pad_id: int | None,
            stops: _StopStrings, generator: torch.Generator | None) -> Iterator[GenerationStep]:
    """Prefill, then one token per step from the cache. Only what was asked for is computed:
    no per-step validation, no growing concatenation (ids go into a preallocated buffer)."""
    was_training = model.training
    model.eval()
    if model.tok_emb.weight.dtype == torch.bfloat16:
        prepare_for_decoding(model)  # bf16 on CPU: prepacked weights, ~2x faster decoding
    try:
        with torch.no_grad():
            yield from _decode_loop(model, idx, max_new_tokens, options, mask, stride, eos_id,
                                    pad_id, stops, generator)
    finally:
        model.train(was_training)


def _decode_loop(model: GPT2, idx: Tensor, max_new_tokens: int, options: SamplingOptions,
                 mask: Tensor | None, stride: int, eos_id: int | None, pad_id: int | None,
                 stops: _StopStrings, generator: torch.Generator | None) -> Iterator[GenerationStep]:
    B, T = idx.shape
    total = T + max_new_tokens
    ctx = model.cfg.context_length
    tokens = torch.empty(B, total, dtype=torch.long, device=idx.device)  # prompt + generated ids
    tokens[:, :T] = idx
    if mask is not None:  # grows by one real token per step
        mask = torch.cat((mask, mask.new_ones(B, max_new_tokens)), dim=1)  # (B, total)
    weight = model.tok_emb.weight
    cache = KVCache(model.cfg, B, min(ctx, total), device=weight.device, dtype=weight.dtype)
    penalise = options.repetition_penalty != 1
    seen = _seen_tokens(tokens[:, :T], mask, model.cfg.vocab_size) if penalise else None  # (B, V)
    done = torch.zeros(B, dtype=torch.bool, device=idx.device) if pad_id is not None else None
    logits, position, start = _prefill(model, tokens[:, :T], mask, cache, 0)
    n = T  # tokens written so far; the cache holds tokens[:, start:n - 1] once a new one is written
    for step in range(max_new_tokens):
        next_id = sample_next(logits, options, seen, generator)  # (B,)
        if done is not None:
            next_id = torch.where(done, pad_id, next_id)
        tokens[:, n] = next_id
        n += 1
        if seen is not None:
            seen[torch.arange(B, device=seen.device), next_id] = True
        yield GenerationStep(next_id, logits)
        if done is not None:
            if eos_id is not None:
                done |= next_id == eos_id
            stops.update(done, tokens[:, T:n])
            if bool(done.all()):
                return
        if step == max_new_tokens - 1:
            return
        if cache.length == cache.max_len:  # no position left: slide the window
            logits, position, start = _prefill(model, tokens[:, :n], mask, cache, ctx - stride + 1)
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


class _StopStrings:
    """Marks rows as done once their generated text contains one of the stop strings.

    Only the last few tokens are decoded each step: enough to cover the longest stop string
    (every token is at least one byte) plus some context for tokenizers whose decode of a
    lone piece differs (SentencePiece drops a leading space)."""

    def __init__(self, stop_strings: Sequence[str] | None, tokenizer: Any) -> None:
        if isinstance(stop_strings, str):
            stop_strings = [stop_strings]
        self.strings = list(stop_strings or [])
        if not all(isinstance(s, str) and s for s in self.strings):
            raise ValueError(f"stop_strings must be non-empty strings, got {self.strings!r}")
        if self.strings and tokenizer is None:
            raise ValueError("stop_strings need the tokenizer= that turns ids into text")
        self.tokenizer = tokenizer
        self.window = max((len(s.encode("utf-8")) for s in self.strings), default=0) + 8

    def update(self, done: Tensor, generated: Tensor) -> None:
        """done: bool (B,), updated in place; generated: (B, n) the ids generated so far."""
        if not self.strings:
            return
        tails = generated[:, -self.window:].tolist()
        flags = done.tolist()
        for row, (tail, finished) in enumerate(zip(tails, flags, strict=True)):
            if not finished:
                text = self.tokenizer.decode(tail)
                if any(s in text for s in self.strings):
                    done[row] = True


def _check_request(model: GPT2, idx: Tensor, max_new_tokens: int,
                   attention_mask: Tensor | None) -> Tensor | None:
    """Validate once, before the loop; returns the attention mask, or None if nothing is padded."""
    if not isinstance(idx, Tensor) or idx.dim() != 2 or idx.dtype not in (torch.int64, torch.int32):
        raise ValueError("idx must be an integer tensor of token ids with shape (batch, seq_len)")
    B, T = idx.shape
    if T == 0:
        raise ValueError("the prompt is empty; start from at least one token, e.g. the end-of-text id")
    ctx = model.cfg.context_length
    if idx.size(1) > ctx:
        raise ValueError(f"the prompt is {T} tokens but the model's context is {ctx}; "
                         f"shorten it (e.g. keep idx[:, -{ctx}:])")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= model.cfg.vocab_size:
        raise ValueError(f"token id {lo if lo < 0 else hi} is outside the vocabulary "
                         f"[0, {model.cfg.vocab_size}); was the prompt encoded with another tokenizer?")
    if attention_mask is None:
        return None
    if tuple(attention_mask.shape) != (B, T):
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(B, T)}")
    mask = attention_mask.to(device=idx.device, dtype=torch.long)
    if bool(((mask != 0) & (mask != 1)).any()):
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (real token)")
    if bool((mask[:, 1:] < mask[:, :-1]).any()) or not bool(mask[:, -1].all()):
        raise ValueError("attention_mask must describe left padding: zeros first, then ones, "
                         "and a real token in the last column of every row")
    return None if bool(mask.all()) else mask


def _check_stride(window_stride: int | None, ctx: int) -> int:
    if window_stride is None:
        return max(1, ctx // 4)
    if isinstance(window_stride, bool) or not isinstance(window_stride, int) or not 1 <= window_stride <= ctx:
        raise ValueError(f"window_stride must be an integer in [1, context_length={ctx}], "
                         f"got {window_stride!r}")
    return window_stride


def _make_generator(generator: torch.Generator | None, seed: int | None, device: torch.device,
                    greedy: bool) -> torch.Generator | None:
    """A seeded generator on the device the sampling happens on (None for greedy)."""
    if generator is not None and seed is not None:
        raise ValueError("give either seed or generator, not both")
    if greedy:
        return None
    if seed is not None:
        return torch.Generator(device=device).manual_seed(seed)
    if generator is not None and generator.device.type != torch.device(device).type:
        raise ValueError(f"the generator is on {generator.device} but the ids are on {device}")
    return generator
