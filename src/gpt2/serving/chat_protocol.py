"""The request and response bodies of `POST /v1/chat/completions`, in OpenAI's wire format.

Messages are rendered by the one chat template (gpt2/chat_template.py) that fine-tuning
trains on, so a model fine-tuned here answers in its own format. The sampling knobs, limits
and errors are those of completions (protocol.py); logprobs come as OpenAI's chat layout
(`logprobs: true` and `top_logprobs: 0..5`).
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from gpt2.serving.jobs import ChoiceLog, TokenInfo
from gpt2.serving.protocol import SamplingRequest


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: StrictStr


class ChatCompletionRequest(SamplingRequest):
    """One chat request; max_completion_tokens (OpenAI's newer name) or max_tokens, default 256."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: Annotated[StrictInt, Field(ge=0)] | None = None
    max_completion_tokens: Annotated[StrictInt, Field(ge=0)] | None = None
    logprobs: StrictBool = False
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=5)] | None = None

    @property
    def limit(self) -> int:
        given = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        return 256 if given is None else given

    @property
    def top(self) -> int | None:
        """How many alternatives per token the worker reports (None: no logprobs at all)."""
        return (self.top_logprobs or 0) if self.logprobs else None


class ChatShape:
    """How chat responses look: `chat.completion` objects, or `chat.completion.chunk` deltas."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.model = model

    def body(self, obj: str, choices: list[dict], usage: dict | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "object": obj, "created": int(time.time()),
                                "model": self.model, "choices": choices}
        if usage is not None:
            body["usage"] = usage
        return body

    def opening(self, index: int) -> dict | None:
        """A stream's first chunk per choice says who speaks, as OpenAI's does."""
        delta = {"role": "assistant", "content": ""}
        return self.body("chat.completion.chunk", [{"index": index, "delta": delta, "logprobs": None,
                                                    "finish_reason": None}])

    def chunk(self, index: int, text: str, tokens: list[TokenInfo] | None, offset: int,
              finish_reason: str | None) -> dict:
        del offset  # chat's logprobs carry no text offsets
        delta = {"content": text} if text or finish_reason is None else {}
        logprobs = None if tokens is None else chat_logprobs(tokens)
        return self.body("chat.completion.chunk", [{"index": index, "delta": delta, "logprobs": logprobs,
                                                    "finish_reason": finish_reason}])

    def whole(self, logs: list[ChoiceLog], usage: dict) -> dict:
        return self.body("chat.completion", [
            {"index": i, "message": {"role": "assistant", "content": log.text}, "finish_reason": log.reason,
             "logprobs": chat_logprobs(log.tokens) if log.wanted else None}
            for i, log in enumerate(logs)], usage)


    def usage_chunk(self, usage: dict) -> dict:
        return self.body("chat.completion.chunk", [], usage)


def chat_logprobs(tokens: list[TokenInfo]) -> dict[str, list]:
    """OpenAI's chat layout: one entry per token with its bytes and its top alternatives."""
    def entry(text: str, logprob: float) -> dict:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    return {"content": [{**entry(t.token, t.logprob), "top_logprobs": [entry(a, lp) for a, lp in t.top]}
                        for t in tokens]}
