"""From a job's events to HTTP: one JSON response, or server-sent events as they come.

Both ways watch the client: a stream that the client closes is cancelled by Starlette (the
`finally` below runs), and a waiting non-streamed request polls for a disconnect. Either
way the job's `cancelled` flag is set, and the worker stops decoding its rows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.requests import Request

from gpt2.serving.errors import APIError, error_body
from gpt2.serving.jobs import Event, Failed, Finished, Job, Piece, TokenInfo
from gpt2.serving.protocol import choice, completion, usage


class ChoiceLog:
    """One choice's text and logprobs so far, in OpenAI's completions `logprobs` layout."""

    def __init__(self, wanted: bool) -> None:
        self.wanted, self.text, self.reason, self.tokens = wanted, "", None, 0
        self.logprobs: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [],
                                          "text_offset": []}

    def add(self, piece: Piece) -> dict | None:
        """Record `piece`; return the logprobs of just its tokens (None if none were asked for)."""
        tokens = piece.tokens
        part = {"tokens": [t.token for t in tokens], "token_logprobs": [t.logprob for t in tokens],
                "top_logprobs": [_top(t) for t in tokens], "text_offset": [len(self.text)] * len(tokens)}
        self.text += piece.text
        for key, values in part.items():
            self.logprobs[key].extend(values)
        return part if self.wanted else None


def _top(token: TokenInfo) -> dict[str, float]:
    return {text: logprob for text, logprob in token.top}


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


async def whole_response(job: Job, request: Request, cid: str, model: str) -> dict:
    """Wait for every choice, then build one `text_completion` object."""
    logs = [ChoiceLog(job.logprobs is not None) for _ in range(job.n)]
    try:
        async for event in job_events(job, request):
            if isinstance(event, Failed):
                raise APIError(event.status, event.message, code="generation_failed")
            if isinstance(event, Piece):
                logs[event.index].add(event)
            else:
                logs[event.index].reason, logs[event.index].tokens = event.reason, event.completion_tokens
    finally:
        job.cancelled.set()  # a no-op once finished; stops the worker if we were cancelled
    choices = [choice(i, log.text, log.reason, log.logprobs if log.wanted else None)
               for i, log in enumerate(logs)]
    return completion(cid, model, choices, usage(len(job.ids), sum(log.tokens for log in logs)))


async def event_stream(job: Job, cid: str, model: str, include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events: one chunk per piece of text, one per finished choice, then [DONE]."""
    logs = [ChoiceLog(job.logprobs is not None) for _ in range(job.n)]
    try:
        async for event in job_events(job):
            if isinstance(event, Failed):
                yield _data(error_body(event.status, event.message, code="generation_failed"))
                return
            if isinstance(event, Piece):
                logprobs = logs[event.index].add(event)
                yield _data(completion(cid, model, [choice(event.index, event.text, None, logprobs)], None))
            else:
                logs[event.index].tokens = event.completion_tokens
                yield _data(completion(cid, model, [choice(event.index, "", event.reason, None)], None))
        if include_usage:
            yield _data(completion(cid, model, [], usage(len(job.ids), sum(log.tokens for log in logs))))
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled.set()  # the client left (Starlette cancelled us) or we are done


def _data(body: dict) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"
