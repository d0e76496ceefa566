"""From a job's events to HTTP: one JSON response, or server-sent events as they come.

Both ways watch the client: a stream that the client closes is cancelled by Starlette (the
`finally` below runs), and a waiting non-streamed request polls for a disconnect. Either
way the job's `cancelled` flag is set, and the worker stops decoding its rows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Protocol

from starlette.requests import Request

from gpt2.serving.errors import APIError, error_body
from gpt2.serving.jobs import ChoiceLog, Event, Failed, Finished, Job, Piece, TokenInfo
from gpt2.serving.protocol import usage


class Shape(Protocol):
    """How one API's responses look (protocol.CompletionShape, chat_protocol.ChatShape)."""

    def opening(self, index: int) -> dict | None: ...

    def chunk(self, index: int, text: str, tokens: list[TokenInfo] | None, offset: int,
              finish_reason: str | None) -> dict: ...

    def whole(self, logs: list[ChoiceLog], usage: dict) -> dict: ...

    def usage_chunk(self, usage: dict) -> dict: ...


async def job_events(job: Job, request: Request | None = None, poll: float = 0.25) -> AsyncIterator[Event]:
    """The job's events until every choice has finished. With `request`, a client that
    disconnects while we wait (checked every `poll` seconds) cancels the job and ends the iteration."""
    loop = asyncio.get_running_loop()
    finished, next_check = 0, loop.time() + poll
    while finished < job.n:
        if request is not None and loop.time() >= next_check:
            next_check = loop.time() + poll
            if await request.is_disconnected():
                job.cancelled.set()
                return
        try:
            event = await asyncio.wait_for(job.events.get(), poll)
        except asyncio.TimeoutError:
            continue
        if isinstance(event, Finished):
            finished += 1
        yield event
        if isinstance(event, Failed):
            return


async def whole_response(job: Job, request: Request, shape: Shape) -> dict:
    """Wait for every choice, then build one response body."""
    logs = [ChoiceLog(job.logprobs is not None) for _ in range(job.n)]
    try:
        async for event in job_events(job, request):
            if isinstance(event, Failed):
                raise APIError(event.status, event.message, code="generation_failed")
            if isinstance(event, Piece):
                logs[event.index].add(event)
            else:
                logs[event.index].reason = event.reason
                logs[event.index].count = event.completion_tokens
    finally:
        job.cancelled.set()  # a no-op once finished; stops the worker if we were cancelled
    return shape.whole(logs, usage(len(job.ids), sum(log.count for log in logs)))


async def event_stream(job: Job, shape: Shape, include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events: one chunk per piece of text, one per finished choice, then [DONE]."""
    logs = [ChoiceLog(job.logprobs is not None) for _ in range(job.n)]
    try:
        for index in range(job.n):
            opening = shape.opening(index)
            if opening is not None:
                yield _data(opening)
        async for event in job_events(job):
            if isinstance(event, Failed):
                yield _data(error_body(event.status, event.message, code="generation_failed"))
                return
            log = logs[event.index]
            if isinstance(event, Piece):
                offset = len(log.text)
                log.add(event)
                tokens = event.tokens if log.wanted else None
                yield _data(shape.chunk(event.index, event.text, tokens, offset, None))
            else:
                log.count = event.completion_tokens
                yield _data(shape.chunk(event.index, "", None, len(log.text), event.reason))
        if include_usage:
            yield _data(shape.usage_chunk(usage(len(job.ids), sum(log.count for log in logs))))
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled.set()  # the client left (Starlette cancelled us) or we are done


def _data(body: dict) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"
