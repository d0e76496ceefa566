"""One choice of one request, from the engine's token events to the request's events.

Each choice is one engine row. Its `TextStream` (the text layer every other path uses too)
turns ids into text that never splits a character and ends before a stop string; this
module adds only what the API needs besides: logprobs as text, and the request's counters.
"""

from __future__ import annotations

from gpt2.generation.engine import TokenEvent
from gpt2.generation.text import TextStream
from gpt2.serving.jobs import Finished, Job, Piece, TokenInfo
from gpt2.tokenizers import Tokenizer


class Choice:
    """Choice `index` of `job`: sends `Piece`s as text becomes ready, then one `Finished`."""

    def __init__(self, job: Job, index: int, tokenizer: Tokenizer) -> None:
        self.job = job
        self.index = index
        self.tokenizer = tokenizer
        self.text = TextStream(tokenizer, job.ids, job.stop)
        self.count = 0  # tokens generated for this choice (end-of-text not counted)

    def advance(self, event: TokenEvent) -> bool:
        """Take this row's next token; returns True once the choice has ended."""
        if event.finished == "stop":  # the end-of-text id: no text, not counted
            self.finish("stop")
            return True
        self.count += 1
        piece = self.text.push(event.token)
        self._send(piece, [self._info(event)] if self.job.logprobs is not None else [])
        if self.text.stopped:
            self._end("stop")
            return True
        if event.finished is not None:
            self.finish(event.finished)
            return True
        return False

    def finish(self, reason: str) -> None:
        """Send what was held back (an incomplete character, a possible stop string), then end."""
        tail = self.text.finish()
        self._send(tail, [])
        self._end("stop" if self.text.stopped else reason)

    def _info(self, event: TokenEvent) -> TokenInfo:
        """The token's text and log-probability, and its alternatives', for `logprobs`."""
        return TokenInfo(self._piece(event.token), event.logprob if event.logprob is not None else 0.0,
                         [(self._piece(i), lp) for i, lp in event.top])

    def _piece(self, token: int) -> str:
        return self.tokenizer.decode([token]) if token < self.tokenizer.vocab_size else ""

    def _send(self, text: str, tokens: list[TokenInfo]) -> None:
        if text or tokens:
            self.job.send(Piece(self.index, text, tokens))

    def _end(self, reason: str) -> None:
        self.job.send(Finished(self.index, reason, self.count))
