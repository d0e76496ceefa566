"""From an HTTP request to a job: the body read within its limits, parsed strictly, encoded by
the text layer (a prompt) or the chat template (messages), and checked against the limits.
Every refusal is an `APIError` (400/408/413), before anything is queued.
"""

from __future__ import annotations

import asyncio

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from gpt2 import chat_template
from gpt2.generation.chat import CHAT_STOPS
from gpt2.generation.text import PromptTooLongError, TextGenerator
from gpt2.serving.chat_protocol import ChatCompletionRequest
from gpt2.serving.errors import APIError
from gpt2.serving.jobs import Job
from gpt2.serving.options import ServeLimits
from gpt2.serving.protocol import CompletionRequest, SamplingRequest


async def read_body(request: Request, limits: ServeLimits) -> bytes:
    """The request body, refused with 413 as soon as it grows past the size limit and with 408
    when it has not all arrived within the read timeout."""
    limit = limits.max_request_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the request body is {declared} bytes; the limit is {limit}")
    body = bytearray()

    async def read() -> None:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise APIError(413, f"the request body is over the limit of {limit} bytes")

    try:
        await asyncio.wait_for(read(), limits.read_timeout)
    except asyncio.TimeoutError:
        raise APIError(408, f"the request body did not arrive within {limits.read_timeout:g} s") from None
    except ClientDisconnect:  # the client left mid-body: nobody to answer, nothing to log
        raise APIError(400, "the client closed the connection before sending the whole body") from None
    return bytes(body)


def parse(raw: bytes, model: type[BaseModel]) -> BaseModel:
    try:
        return model.model_validate_json(raw)
    except ValidationError as err:
        raise RequestValidationError(err.errors()) from None


def completion_job(body: CompletionRequest, text: TextGenerator, limits: ServeLimits) -> Job:
    """Encode the prompt through the text layer and check the request against the limits."""
    try:
        ids = text.encode(body.prompt, limits.max_prompt_tokens or None)
    except PromptTooLongError as err:
        raise APIError(400, str(err), "prompt", "context_length_exceeded") from None
    except (ValueError, UnicodeError) as err:  # GPT2Error is a ValueError
        raise APIError(400, f"the prompt cannot be encoded by this model's tokenizer: {err}",
                       "prompt") from None
    return _job(body, ids, body.max_tokens, body.stop, body.logprobs, limits)


def chat_job(body: ChatCompletionRequest, text: TextGenerator, limits: ServeLimits) -> Job:
    """Render the messages with the chat template (ending in the assistant's turn) and check them."""
    messages = [m.model_dump() for m in body.messages]
    try:
        ids, _ = chat_template.encode(text.tokenizer, messages, add_generation_prompt=True)
    except (ValueError, UnicodeError) as err:
        raise APIError(400, f"the messages cannot be encoded by this model's tokenizer: {err}",
                       "messages") from None
    ctx = text.model.cfg.context_length
    most = min(limits.max_prompt_tokens or ctx, ctx)
    if len(ids) > most:
        raise APIError(400, f"the conversation is {len(ids)} tokens; the limit is {most}: drop earlier "
                            "messages", "messages", "context_length_exceeded")
    return _job(body, ids, body.limit, [*(body.stop or []), *CHAT_STOPS], body.top, limits)


def _job(body: SamplingRequest, ids: list[int], max_tokens: int, stop: list[str] | None,
         logprobs: int | None, limits: ServeLimits) -> Job:
    if max_tokens > limits.max_tokens_limit:
        raise APIError(400, f"max_tokens is {max_tokens}; this server allows at most "
                            f"{limits.max_tokens_limit}", "max_tokens")
    if body.n > limits.max_n:
        raise APIError(400, f"n is {body.n}; this server allows at most {limits.max_n}", "n")
    return Job(ids, body.sampling(), max_tokens, body.n, stop, body.seed, logprobs,
               loop=asyncio.get_running_loop())
