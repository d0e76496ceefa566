"""The request and response bodies of `POST /v1/completions`, in OpenAI's wire format, and
what chat completions share with them (chat_protocol.py has the rest).

The request is a pydantic model with extra="forbid" and strict types: a misspelt field or
a string where a number belongs is a 400 naming the field, not a silent default. `top_k`
is our extension (OpenAI's API has no such field). A response "shape" builds the bodies:
responses.py drives either shape the same way.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

from gpt2.generation.options import SamplingOptions
from gpt2.serving.jobs import ChoiceLog, TokenInfo

Number = StrictFloat | StrictInt  # JSON 1 and 1.0 both; "1" and true are refused


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: StrictBool = False


class SamplingRequest(BaseModel):
    """What completions and chat completions share. Defaults follow OpenAI's (temperature 1,
    top_p 1, n 1)."""

    model_config = ConfigDict(extra="forbid")

    model: StrictStr | None = None
    temperature: Annotated[Number, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[Number, Field(gt=0, le=1)] = 1.0
    top_k: Annotated[StrictInt, Field(ge=1)] | None = None
    stop: StrictStr | Annotated[list[StrictStr], Field(max_length=4)] | None = None
    seed: Annotated[StrictInt, Field(ge=0, le=2**63 - 1)] | None = None  # a torch seed's range
    n: Annotated[StrictInt, Field(ge=1)] = 1
    stream: StrictBool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, stop: str | list[str] | None) -> list[str] | None:
        stops = [stop] if isinstance(stop, str) else stop
        if stops is not None and not all(stops):
            raise ValueError("stop strings must not be empty")
        return stops or None

    def sampling(self) -> SamplingOptions:
        """The decoding knobs as the generation layer takes them (top_p 1 = no nucleus cut)."""
        return SamplingOptions(temperature=float(self.temperature), top_k=self.top_k,
                               top_p=None if self.top_p >= 1 else float(self.top_p))

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class CompletionRequest(SamplingRequest):
    """One completion request (16 tokens unless max_tokens says otherwise, as OpenAI's)."""

    prompt: StrictStr
    max_tokens: Annotated[StrictInt, Field(ge=0)] = 16
    logprobs: Annotated[StrictInt, Field(ge=0, le=5)] | None = None


class CompletionShape:
    """How completions' responses look: `text_completion` objects, logprobs as parallel lists."""

    def __init__(self, model: str) -> None:
        self.id = f"cmpl-{uuid.uuid4().hex[:24]}"
        self.model = model

    def body(self, choices: list[dict], usage: dict | None = None) -> dict[str, Any]:
        """A whole response, or (with one choice's piece) one chunk of a streamed one."""
        body: dict[str, Any] = {"id": self.id, "object": "text_completion", "created": int(time.time()),
                                "model": self.model, "choices": choices}
        if usage is not None:
            body["usage"] = usage
        return body

    def opening(self, index: int) -> dict | None:
        return None  # a completion stream starts with its first piece

    def chunk(self, index: int, text: str, tokens: list[TokenInfo] | None, offset: int,
              finish_reason: str | None) -> dict:
        logprobs = None if tokens is None else completion_logprobs(tokens, [offset] * len(tokens))
        return self.body([{"text": text, "index": index, "logprobs": logprobs,
                           "finish_reason": finish_reason}])

    def whole(self, logs: list[ChoiceLog], usage: dict) -> dict:
        return self.body([{"text": log.text, "index": i, "finish_reason": log.reason,
                           "logprobs": completion_logprobs(log.tokens, log.offsets) if log.wanted else None}
                          for i, log in enumerate(logs)], usage)


    def usage_chunk(self, usage: dict) -> dict:
        return self.body([], usage)


def completion_logprobs(tokens: list[TokenInfo], offsets: list[int]) -> dict[str, list]:
    """OpenAI's completions layout; `offsets`: where each token's text starts in the choice."""
    return {"tokens": [t.token for t in tokens], "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [dict(t.top) for t in tokens], "text_offset": offsets}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}
