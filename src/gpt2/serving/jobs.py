"""A job: one accepted request on its way through the model worker, and the events it sends back.

The HTTP side (an asyncio event loop) and the model worker (a thread) share nothing but
jobs: the worker reads a job's fields, sends events into its asyncio queue with
`loop.call_soon_threadsafe`, and checks `cancelled`, which the HTTP side sets when the
client goes away.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from gpt2.generation.options import SamplingOptions


@dataclass(frozen=True)
class TokenInfo:
    """One generated token for `logprobs`: its text, its log-probability under the model, and
    the most likely alternatives at that position as (text, log-probability), best first."""

    token: str
    logprob: float
    top: list[tuple[str, float]]


@dataclass(frozen=True)
class Piece:
    """New text of choice `index` and the tokens it came from (text may be "" while a
    character or a possible stop string is held back)."""

    index: int
    text: str
    tokens: list[TokenInfo]


@dataclass(frozen=True)
class Finished:
    """Choice `index` is complete: "stop" (end-of-text or a stop string) or "length"."""

    index: int
    reason: str
    completion_tokens: int


@dataclass(frozen=True)
class Failed:
    """The worker could not finish this job (an error: 500; shutting down: 503); the message
    is safe to show the client."""

    message: str
    status: int = 500


Event = Piece | Finished | Failed


class ChoiceLog:
    """One choice's text, tokens (with where each one's text starts) and ending so far: what a
    whole response is built from."""

    def __init__(self, wanted: bool) -> None:
        self.wanted = wanted  # logprobs were asked for
        self.text = ""
        self.tokens: list[TokenInfo] = []
        self.offsets: list[int] = []
        self.reason: str | None = None
        self.count = 0  # completion tokens

    def add(self, piece: Piece) -> None:
        self.tokens += piece.tokens
        self.offsets += [len(self.text)] * len(piece.tokens)
        self.text += piece.text


@dataclass
class Job:
    """One request: prompt ids, how to decode them, and where the results go."""

    ids: list[int]
    sampling: SamplingOptions
    max_tokens: int
    n: int = 1
    stop: list[str] | None = None
    seed: int | None = None
    logprobs: int | None = None
    loop: asyncio.AbstractEventLoop | None = None
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def send(self, event: Event) -> None:
        """From the worker thread: hand an event to the request's event loop."""
        if self.loop is None:
            self.events.put_nowait(event)
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
