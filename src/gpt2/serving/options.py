"""The server's limits: how much work one request may ask for and how much may wait.

Every limit answers a request that exceeds it with a JSON error (see errors.py) before any
decoding starts, so a client never waits on a request that was never going to run.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpt2.errors import GPT2Error


@dataclass(frozen=True)
class ServeLimits:
    """How the model worker batches requests, and what it refuses.

    Args:
        max_batch: Most sequences decoded together in one batch (1 = one request at a time).
        max_queue: Most requests waiting for the model; one more is refused with 429.
        max_tokens_limit: Largest max_tokens a request may ask for (400 above it).
        max_prompt_tokens: Longest prompt in tokens (400 above it); 0 = the model's context length.
        max_n: Most choices (n) one request may ask for.
        max_request_bytes: Largest request body in bytes (413 above it).
        read_timeout: Seconds a client may take to send a request's head, and again its body
            (a connection still sending is closed, a body still arriving gets 408), so slow or
            stalled clients cannot hold the server's connections.
    """

    max_batch: int = 8
    max_queue: int = 64
    max_tokens_limit: int = 1024
    max_prompt_tokens: int = 0
    max_n: int = 4
    max_request_bytes: int = 1 << 20
    read_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_queue", "max_tokens_limit", "max_n", "max_request_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GPT2Error(f"--{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.read_timeout, bool) or not isinstance(self.read_timeout, (int, float)) \
                or not 0 < self.read_timeout <= 3600:
            raise GPT2Error(f"--read_timeout must be a number of seconds in (0, 3600], "
                            f"got {self.read_timeout!r}")
        if isinstance(self.max_prompt_tokens, bool) or self.max_prompt_tokens < 0:
            raise GPT2Error(f"--max_prompt_tokens must be >= 0 (0 = the context length), "
                            f"got {self.max_prompt_tokens!r}")
        if self.max_n > self.max_batch:
            raise GPT2Error(f"--max_n ({self.max_n}) cannot exceed --max_batch ({self.max_batch}): "
                            "the choices of one request are decoded in one batch")
