"""Stop strings for one streamed choice, with OpenAI's meaning: the text ends just before the
first stop string, which itself is never sent.

Text is streamed, so a piece that might be the start of a stop string is held back until
the next pieces show whether it is one ("\\n" could begin "\\n\\n"). The generation layer's
`StopStrings` only marks a row done; the API also has to cut the text, per request.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    """Feed text pieces; get back the part that is safe to send, and whether a stop was hit."""

    def __init__(self, stops: Sequence[str] | None) -> None:
        self.stops = list(stops or [])
        self.text = ""  # everything fed so far (cut at the stop string once one is found)
        self.sent = 0  # self.text[:sent] has been returned

    def feed(self, piece: str) -> tuple[str, bool]:
        """-> (text to send now, stopped). After a stop, the rest of the text is dropped."""
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
        out, self.sent = self.text[self.sent:end], max(self.sent, end)
        return out
