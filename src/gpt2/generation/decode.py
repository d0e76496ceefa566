"""Turning a model into ids: next-token prediction applied over and over.

Two paths that give the same greedy tokens (tests check it):
- `generate_text`: the readable reference. Every step re-reads the whole context.
- `generate` / `generate_stream`: the fast path, a batch of prompts given to the decoding
  engine (engine.py): each prompt is read once ("prefill"), its keys and values kept in the
  engine's cache, and each later step feeds only the newest token. Adds sampling
  (temperature, top-k, top-p, repetition penalty), stopping (end-of-text id, stop strings),
  prompts of different lengths (left padding + attention mask) and a sliding window when
  the text outgrows the model's context. On CUDA each one-token step runs as a replayed
  CUDA graph (static_cache.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from gpt2.errors import GPT2Error
from gpt2.generation.engine import Engine, RowSpec, decoding
from gpt2.generation.fast_linear import prepare_for_decoding
from gpt2.generation.host_transfer import to_device
from gpt2.generation.options import SamplingOptions
from gpt2.generation.request import check_request, check_stride, make_generator
from gpt2.generation.row_sampling import row_keys
from gpt2.generation.static_cache import DECODERS
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
    Rows that have already stopped get the padding id (the end-of-text id) and zero logits."""

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
    decoder: str  # "auto", "dynamic", "static", "cuda_graph" or "compiled" (see static_cache.py)


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
    eagerly), "cuda_graph" or "compiled" (torch.compile, for the CPU); all give the same tokens
    (in bf16, "compiled" rounds differently: compiled_step.py).
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
    if model.dtype == torch.bfloat16 or not model.training:
        # A model in eval mode (as from_pretrained returns it) is there to generate from: give its
        # CPU weights the decoding layout once (float32 ~1.3x, bf16 ~2x; values unchanged; a no-op
        # when already done, as by TextGenerator's load). A model in training (samples during a
        # run) keeps its float32 memory layout untouched.
        prepare_for_decoding(model, compiled=request.decoder == "compiled")
    with decoding(model):
        yield from _decode_loop(model, idx, request)


def _decode_loop(model: GPT2, idx: Tensor, r: _Request) -> Iterator[GenerationStep]:
    """Every prompt row becomes one engine row (its padding dropped); each step's tokens are
    gathered back into batch order. Rows never stop early unless a pad id was given."""
    B, T = idx.shape
    if r.max_new_tokens == 0:
        return
    real = r.mask.bool() if r.mask is not None else torch.ones_like(idx, dtype=torch.bool)
    keys = row_keys(r.generator, B) if r.generator is not None else [0] * B
    stop_ids = frozenset([r.eos_id]) if r.eos_id is not None and r.pad_id is not None else frozenset()
    engine = Engine(model, B, T + r.max_new_tokens, window_stride=r.stride, decoder=r.decoder)
    rows = [engine.add(RowSpec(idx[b][real[b]].tolist(), r.max_new_tokens, r.sampling, keys[b], stop_ids))
            for b in range(B)]
    batch_row = {row: b for b, row in enumerate(rows)}
    done = torch.zeros(B, dtype=torch.bool)
    history: list[Tensor] = []  # each step's (B,) ids, for stop strings
    for _ in range(r.max_new_tokens):
        events = engine.step()
        if not events:
            return
        tokens = torch.full((B,), r.pad_id if r.pad_id is not None else 0, dtype=torch.long)
        logits = events[0].logits.new_zeros(B, events[0].logits.size(-1))  # (B, V)
        for event in events:
            b = batch_row[event.row]
            tokens[b] = event.token
            logits[b] = event.logits
            done[b] |= event.finished == "stop"
        if r.stops.strings:  # a stop string ends a row the engine knows nothing of
            history.append(tokens)
            r.stops.update(done, torch.stack(history[-r.stops.window:], dim=1))
            for row in [row for row, b in batch_row.items() if done[b]]:
                engine.cancel(row)
                del batch_row[row]
        yield GenerationStep(to_device(tokens, idx.device), logits)
        if bool(done.all()):
            return
