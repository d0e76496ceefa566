"""A conversation with a model: the chat template, a history that fits the context, and
replies streamed through the text layer.

`gpt2 chat` (terminal) drives a `ChatSession`; `gpt2 serve`'s /v1/chat/completions renders
the same template, but takes the whole history from each request, as OpenAI's API does.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from gpt2.chat_template import encode
from gpt2.errors import GPT2Error
from gpt2.generation.options import SamplingOptions
from gpt2.generation.text import TextGenerator

# A model that goes on to write the user's next turn has ended its own (end-of-text ends it too).
CHAT_STOPS = ["\nUser:", "\nSystem:"]


class ChatSession:
    """Turns of one conversation. Before each reply the oldest exchanges are dropped until the
    system message, the rest of the history, the new message and `max_new_tokens` fit the
    model's context."""

    def __init__(self, text: TextGenerator, sampling: SamplingOptions, max_new_tokens: int,
                 system: str | None = None, generator: torch.Generator | None = None) -> None:
        self.text = text
        self.sampling = sampling
        self.max_new_tokens = max_new_tokens
        self.system = [{"role": "system", "content": system}] if system else []
        self.history: list[dict[str, str]] = []  # user and assistant messages, oldest first
        self.generator = generator

    def reply(self, message: str) -> Iterator[str]:
        """Stream the assistant's answer to `message`, then keep both in the history."""
        ids = self._prompt({"role": "user", "content": message})
        answer = ""
        for piece in self.text.stream(ids, self.sampling, self.max_new_tokens, CHAT_STOPS, self.generator):
            answer += piece
            yield piece
        self.history += [{"role": "user", "content": message},
                         {"role": "assistant", "content": answer.strip()}]

    def reset(self) -> None:
        self.history = []

    def _prompt(self, message: dict[str, str]) -> list[int]:
        """The template's ids for the history and `message`, the oldest exchanges dropped to fit."""
        room = self.text.model.cfg.context_length - self.max_new_tokens
        while True:
            messages = [*self.system, *self.history, message]
            ids, _ = encode(self.text.tokenizer, messages, add_generation_prompt=True)
            if len(ids) <= room:
                return ids
            if not self.history:
                raise GPT2Error(f"the message is {len(ids)} tokens with the template; with "
                                f"--max_new_tokens {self.max_new_tokens} the model's context "
                                f"({self.text.model.cfg.context_length}) leaves room for {max(room, 0)}: "
                                "write less or lower --max_new_tokens")
            self.history = self.history[2:]  # the oldest user message and its answer
