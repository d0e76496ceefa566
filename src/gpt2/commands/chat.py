"""`gpt2 chat`: talk to a checkpoint in the terminal, one message per line, replies streamed.

The terminal side only: the conversation itself (template, history that fits the context)
is `gpt2.generation.chat.ChatSession`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from gpt2.commands.generate import utf8_stdout, write
from gpt2.commands.options import flat_command
from gpt2.errors import GPT2Error
from gpt2.generation.options import DecodingOptions, SamplingOptions
from gpt2.runtime.options import DeviceOptions

if TYPE_CHECKING:
    from gpt2.generation.chat import ChatSession


@dataclass(frozen=True)
class ChatOptions:
    """Who to talk to, and how.

    Args:
        checkpoint: Our checkpoint (best one fine-tuned on conversations) or a Hugging Face GPT-2 folder.
        system: A system message that starts the conversation (e.g. "You answer briefly.").
        max_new_tokens: Most tokens per reply (a reply also ends at end-of-text or the next "User:").
        seed: Makes the replies reproducible.
        tokenizer: Override the checkpoint's tokenizer: gpt2, a tokenizer directory, or a .model file.
    """

    checkpoint: str
    system: str | None = None
    max_new_tokens: int = 256
    seed: int | None = None
    tokenizer: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or self.max_new_tokens < 1:
            raise GPT2Error(f"--max_new_tokens must be at least 1, got {self.max_new_tokens}")


def converse(session: ChatSession, inp: TextIO, out: TextIO) -> None:
    """Read messages until end of input; '/reset' forgets the conversation. A message that
    cannot be answered (too long, characters the tokenizer lacks) is reported and skipped."""
    while True:
        print("you> ", end="", file=sys.stderr, flush=True)
        line = inp.readline()
        if not line:
            print(file=sys.stderr)
            return
        message = line.strip()
        if message == "/reset":
            session.reset()
            continue
        if not message:
            continue
        try:
            for piece in session.reply(message):
                write(out, piece)
        except GPT2Error as err:
            print(f"gpt2: error: {err}", file=sys.stderr)
            continue
        write(out, "\n")


def _run(options: ChatOptions, sampling: SamplingOptions, system: DeviceOptions,
         decoding: DecodingOptions) -> None:
    # Imported here, not at the top, so that --help does not import torch (see commands/__init__.py).
    import torch

    from gpt2.generation.chat import ChatSession
    from gpt2.generation.text import TextGenerator

    text = TextGenerator.load(options.checkpoint, options.tokenizer, system,
                              decoder=decoding.decoder(server=False), purpose="chat")
    generator = torch.Generator(device=text.model.device)
    if options.seed is not None:
        generator.manual_seed(options.seed)
    else:
        generator.seed()
    utf8_stdout()
    session = ChatSession(text, sampling, options.max_new_tokens, options.system, generator)
    converse(session, sys.stdin, sys.stdout)


chat = flat_command(_run, ChatOptions, SamplingOptions, DeviceOptions, DecodingOptions, name="chat", doc="""\
Chat with a checkpoint in the terminal: one message per line, the reply streamed.

Messages are rendered with the chat template that gpt2 finetune trains on (docs/finetuning.md);
the oldest exchanges are dropped when the conversation outgrows the context. '/reset' starts
over; Ctrl-D ends. Example:
gpt2 chat --checkpoint runs/chat/best --system "You answer briefly." --temperature 0.7""")
