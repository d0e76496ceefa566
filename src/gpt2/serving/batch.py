"""Decoding one batch of jobs: every choice of every job is one row of a left-padded batch
given to `generate_stream`, and each step's tokens are turned into text and logprobs per row.

Rows end on their own terms (end-of-text, a stop string, their own max_tokens, their client
leaving); a row that ended is still computed by the batch but sends nothing more. Once every
row has ended the decoding generator is closed, so a batch whose clients all left stops at
the next token.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gpt2.generation.decode import generate_stream
from gpt2.generation.streaming import StreamDecoder
from gpt2.generation.text import TextGenerator
from gpt2.serving.jobs import Finished, Job, Piece, TokenInfo
from gpt2.serving.stops import StopMatcher
from gpt2.tokenizers import Tokenizer


class Choice:
    """One row of the batch: one choice of one job, from generated ids to events."""

    def __init__(self, job: Job, index: int, tokenizer: Tokenizer) -> None:
        self.job, self.index, self.tokenizer = job, index, tokenizer
        self.decoder = StreamDecoder(tokenizer, job.ids)
        self.stops = StopMatcher(job.stop)
        self.count = 0  # tokens generated for this choice
        self.done = job.max_tokens == 0
        if self.done:
            job.send(Finished(index, "length", 0))

    def advance(self, token: int, info: TokenInfo | None) -> None:
        """Take this row's next token: send its text (if any is ready) and maybe finish."""
        if self.job.cancelled.is_set():
            self.done = True
            return
        if token == self.tokenizer.eot_id:
            self.finish("stop")
            return
        self.count += 1
        piece = self.decoder.push(token) if token < self.tokenizer.vocab_size else ""
        text, stopped = self.stops.feed(piece)
        self._send(text, [info] if info is not None else [])
        if stopped:
            self._end("stop")
        elif self.count >= self.job.max_tokens:
            self.finish("length")

    def finish(self, reason: str) -> None:
        """Send what was held back (an incomplete character, a possible stop string), then end."""
        text, stopped = self.stops.feed(self.decoder.flush())
        if not stopped:
            text += self.stops.flush()
        self._send(text, [])
        self._end("stop" if stopped else reason)

    def _send(self, text: str, tokens: list[TokenInfo]) -> None:
        if text or tokens:
            self.job.send(Piece(self.index, text, tokens))

    def _end(self, reason: str) -> None:
        self.job.send(Finished(self.index, reason, self.count))
        self.done = True


def left_pad(prompts: list[list[int]], pad_id: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Prompts of different lengths -> ids (B, T) padded on the left, and the mask (B, T)."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    return ids.to(device), mask.to(device)


def token_infos(logits: Tensor, tokens: Tensor, k: int, tokenizer: Tokenizer) -> list[TokenInfo]:
    """Per row: the chosen token's log-probability under the model (before temperature and
    the other sampling knobs) and the k most likely tokens at that position."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, V)
    chosen = logp.gather(1, tokens[:, None].to(logp.device)).squeeze(1).tolist()  # (B,)
    values, ids = logp.topk(k, dim=-1) if k else (logp[:, :0], logp[:, :0].long())  # (B, k)

    def text(i: int) -> str:
        return tokenizer.decode([i]) if i < tokenizer.vocab_size else ""

    return [TokenInfo(text(token), lp, [(text(i), v) for i, v in zip(row_ids, row_values, strict=True)])
            for token, lp, row_ids, row_values in zip(tokens.tolist(), chosen, ids.tolist(), values.tolist(),
                                                       strict=True)]


def decode_batch(text: TextGenerator, jobs: list[Job], generator: torch.Generator,
                 on_step: Callable[[int], None] = lambda rows: None) -> None:
    """Decode `jobs` (which share their sampling settings) together until every row has ended.
    `on_step(live_rows)` is told how many rows were still live at each step (for the stats)."""
    model, tokenizer = text.model, text.tokenizer
    rows = [Choice(job, i, tokenizer) for job in jobs for i in range(job.n)]
    if all(row.done for row in rows):
        return
    ids, mask = left_pad([row.job.ids for row in rows], tokenizer.eot_id, model.device)
    sampling, seed = jobs[0].sampling, jobs[0].seed
    if seed is not None:  # a seeded job is alone in its batch (Job.batch_key)
        generator = torch.Generator(device=model.device).manual_seed(seed)
    longest = max(job.max_tokens for job in jobs)
    steps = generate_stream(model, ids, longest, sampling, eos_id=tokenizer.eot_id, attention_mask=mask,
                            generator=None if sampling.greedy else generator)
    k = max((job.logprobs for job in jobs if job.logprobs is not None), default=None)
    try:
        for step in steps:
            infos = token_infos(step.logits, step.tokens, k, tokenizer) if k is not None else None
            live = [row for row in rows if not row.done]
            for row_index, token in enumerate(step.tokens.tolist()):
                row = rows[row_index]
                if not row.done:
                    info = infos[row_index] if infos is not None and row.job.logprobs is not None else None
                    row.advance(token, _trim(info, row.job.logprobs))
            on_step(len(live))
            if all(row.done for row in rows):
                break
    finally:
        steps.close()  # stops decoding now if every row ended early; restores the model's mode
    for row in rows:
        if not row.done and not row.job.cancelled.is_set():
            row.finish("length")


def _trim(info: TokenInfo | None, k: int | None) -> TokenInfo | None:
    """A row's TokenInfo with only the top-k alternatives its own request asked for."""
    if info is None or k is None or len(info.top) <= k:
        return info
    return TokenInfo(info.token, info.logprob, info.top[:k])
