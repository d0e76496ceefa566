"""Stop strings: ending a row of generation once its text contains one of them.

This is the one part of decoding that needs text rather than ids, so it takes the
tokenizer; the decoding loop itself (decode.py) works on ids only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from gpt2.errors import GPT2Error


class StopStrings:
    """Marks rows as done once their generated text contains one of the stop strings.

    Only the last few tokens are decoded each step: enough to cover the longest stop string
    (every token is at least one byte) plus some context for tokenizers whose decode of a
    lone piece differs (SentencePiece drops a leading space)."""

    def __init__(self, stop_strings: Sequence[str] | None, tokenizer: Any) -> None:
        if isinstance(stop_strings, str):
            stop_strings = [stop_strings]
        self.strings = list(stop_strings or [])
        if not all(isinstance(s, str) and s for s in self.strings):
            raise GPT2Error(f"stop_strings must be non-empty strings, got {self.strings!r}")
        if self.strings and tokenizer is None:
            raise GPT2Error("stop_strings need the tokenizer= that turns ids into text")
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
