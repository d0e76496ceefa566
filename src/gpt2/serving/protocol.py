"""The request and response bodies of `POST /v1/completions`, in OpenAI's wire format.

The request is a pydantic model with extra="forbid" and strict types: a misspelt field or
a string where a number belongs is a 400 naming the field, not a silent default. `top_k`
is our extension (OpenAI's API has no such field).
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

from gpt2.generation.sampling import SamplingOptions

Number = StrictFloat | StrictInt  # JSON 1 and 1.0 both; "1" and true are refused


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: StrictBool = False


class CompletionRequest(BaseModel):
    """One completion request. Defaults follow OpenAI's (temperature 1, top_p 1, n 1, 16 tokens)."""

    model_config = ConfigDict(extra="forbid")

    prompt: StrictStr
    model: StrictStr | None = None
    max_tokens: Annotated[StrictInt, Field(ge=0)] = 16
    temperature: Annotated[Number, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[Number, Field(gt=0, le=1)] = 1.0
    top_k: Annotated[StrictInt, Field(ge=1)] | None = None
    stop: StrictStr | Annotated[list[StrictStr], Field(max_length=4)] | None = None
    seed: StrictInt | None = None
    n: Annotated[StrictInt, Field(ge=1)] = 1
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    logprobs: Annotated[StrictInt, Field(ge=0, le=5)] | None = None

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


def completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex[:24]}"


def choice(index: int, text: str, finish_reason: str | None, logprobs: dict | None) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish_reason}


def completion(cid: str, model: str, choices: list[dict], usage: dict | None) -> dict[str, Any]:
    """A whole response, or (with one choice's piece) one chunk of a streamed one."""
    body: dict[str, Any] = {"id": cid, "object": "text_completion", "created": int(time.time()),
                            "model": model, "choices": choices}
    if usage is not None:
        body["usage"] = usage
    return body


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}
