"""Stop strings, with one meaning everywhere: the text ends just before the first stop string,
which itself is not included (OpenAI's rule).

- `StopMatcher` cuts streamed text: the text layer (text.py) gives every row of `gpt2
  generate`, the training samples and `gpt2 serve` one of them.
- `StopStrings` serves the id-level API (`generate(..., stop_strings=, tokenizer=)`): it only
  marks a row done once its text contains a stop string. Ids cannot end inside a token, so
  those rows keep the ids up to the one that completed the stop string; decode them with
  the text layer to get the text cut before it.
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


class StopMatcher:
    """Feed text pieces; get back the part that is safe to show, and whether a stop was hit.

    Text is streamed, so a piece that might be the start of a stop string is held back until
    the next pieces show whether it is one ("\\n" could begin "\\n\\n")."""

    def __init__(self, stops: Sequence[str] | None) -> None:
        self.stops = list(stops or [])
        self.text = ""  # everything fed so far (cut at the stop string once one is found)
        self.sent = 0  # self.text[:sent] has been returned

    def feed(self, piece: str) -> tuple[str, bool]:
        """-> (text to show now, stopped). After a stop, the rest of the text is dropped."""
        self.text += piece
        hits = [i for s in self.stops if (i := self.text.find(s, self.sent)) >= 0]
        if hits:
            self.text = self.text[:min(hits)]
            return self._release(len(self.text)), True
        return self._release(len(self.text) - self._held_back()), False

    def flush(self) -> str:
        """At the end of generation: what was held back is not a stop string after all."""
        return self._release(len(self.text))

    def _held_back(self) -> int:
        """Length of the longest unsent tail that is the beginning of a stop string."""
        unsent = len(self.text) - self.sent
        return max((k for s in self.stops for k in range(1, min(len(s) - 1, unsent) + 1)
                    if self.text.endswith(s[:k])), default=0)

    def _release(self, end: int) -> str:
        out = self.text[self.sent:end]
        self.sent = max(self.sent, end)
        return out
