"""`gpt2 generate`: load a checkpoint once, read prompts, stream continuations to stdout.

This module is the terminal side only (where prompts come from, how text is written);
prompt -> text is `gpt2.generation.text.TextGenerator`, and how a checkpoint's tokenizer
is found is `gpt2.tokenizers.tokenizer_for_checkpoint`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from gpt2.commands.options import flat_command
from gpt2.errors import GPT2Error
from gpt2.generation.options import QUANTIZE_CHOICES, DecodingOptions, SamplingOptions
from gpt2.limits import check_numbers, check_seed
from gpt2.runtime.options import DeviceOptions
from gpt2.text_input import MAX_TEXT_BYTES, read_text_file, utf8_text

if TYPE_CHECKING:
    from gpt2.generation.text import TextGenerator


@dataclass(frozen=True)
class GenerateOptions:
    """What to generate from, and how much.

    Args:
        checkpoint: Our checkpoint directory or a local Hugging Face GPT-2 directory.
        prompt: The text to continue.
        prompt_file: A UTF-8 file holding the text to continue.
        num_samples: How many continuations of the prompt to write, one after another.
        max_new_tokens: Most tokens to generate per sample (stops early at end-of-text).
        stop: A stop string, or several as a JSON list ('["\\n\\n", "END"]'): a sample ends just
            before the first one, which is not printed (OpenAI's rule, as in gpt2 serve).
        seed: Makes sampling reproducible.
        interactive: Read prompts from stdin one line at a time without reloading (`--interactive true`).
        tokenizer: Override the checkpoint's tokenizer: gpt2, a tokenizer directory, or a .model file.
        quantize: int8: weight-only int8 (per-channel, activations in float32) for faster CPU decoding,
            the faster 8-bit mode with --compile true on an AVX-512 CPU; int8-dynamic: int8 weights
            and activations (llama.cpp's q8_0 idea, FBGEMM), the faster one elsewhere on x86; fp16:
            float16 weights, float32 activations (FBGEMM), the fastest 16-bit decoding on x86; all
            need float32 (--dtype auto or float32).
    """

    checkpoint: str
    prompt: str | None = None
    prompt_file: str | None = None
    num_samples: int = 1
    max_new_tokens: int = 200
    stop: list[str] | str | None = None
    seed: int | None = None
    interactive: bool = False
    tokenizer: str | None = None
    quantize: str | None = None

    def __post_init__(self) -> None:
        check_seed("--seed", self.seed)
        check_numbers(self)
        if isinstance(self.stop, str):  # --stop e: one stop string
            object.__setattr__(self, "stop", [self.stop])
        if self.stop is not None and not all(isinstance(s, str) and s for s in self.stop):
            raise GPT2Error(f"--stop: stop strings must be non-empty, got {self.stop!r}")
        if self.quantize not in (None, *QUANTIZE_CHOICES):
            raise GPT2Error(f"--quantize {self.quantize!r}: choose {', '.join(QUANTIZE_CHOICES)} "
                            "(or leave it out)")
        if isinstance(self.num_samples, bool) or self.num_samples < 1:
            raise GPT2Error(f"--num_samples must be at least 1, got {self.num_samples}")
        if self.max_new_tokens < 0:
            raise GPT2Error(f"--max_new_tokens must be >= 0, got {self.max_new_tokens}")
        utf8_text(self.prompt or "", "--prompt")
        if self.prompt is not None and self.prompt_file is not None:
            raise GPT2Error("give --prompt or --prompt_file, not both")


def read_prompt(prompt: str | None, prompt_file: str | None) -> str:
    """The prompt from the option, the file, or piped stdin ("" when there is none)."""
    if prompt is not None:
        return prompt
    if prompt_file is not None:
        return read_text_file(Path(prompt_file), "--prompt_file")
    if not sys.stdin.isatty():
        text = sys.stdin.read(MAX_TEXT_BYTES + 1)
        if len(text) > MAX_TEXT_BYTES:
            raise GPT2Error(f"the prompt piped to stdin is longer than {MAX_TEXT_BYTES:,} characters")
        return utf8_text(text, "the prompt piped to stdin")
    return ""


class Session:
    """A loaded TextGenerator, the request's options and one random generator for every prompt."""

    def __init__(self, text: TextGenerator, options: GenerateOptions, sampling: SamplingOptions) -> None:
        import torch  # a Session exists only once a model is loaded, so torch is imported by then

        self.text, self.options, self.sampling = text, options, sampling
        self.generator = torch.Generator(device=text.model.device)
        if options.seed is not None:
            self.generator.manual_seed(options.seed)
        else:
            self.generator.seed()

    def run(self, prompt: str, num_samples: int, out: TextIO, echo: bool) -> None:
        """Write `num_samples` continuations of `prompt` to `out` as they are generated."""
        ids = self.text.encode(prompt)
        for n in range(num_samples):
            if n:
                write(out, "\n" + "-" * 40 + "\n")
            if echo:
                write(out, prompt)
            for piece in self.text.stream(ids, self.sampling, self.options.max_new_tokens, self.options.stop,
                                          self.generator):
                write(out, piece)
            write(out, "\n")

    def interactive(self, inp: TextIO, out: TextIO) -> None:
        """One prompt per line until end of input; a bad prompt is reported and skipped."""
        while True:
            print("> ", end="", file=sys.stderr, flush=True)
            line = inp.readline()
            if not line:
                print(file=sys.stderr)
                return
            try:
                self.run(utf8_text(line.rstrip("\n"), "this line"), 1, out, echo=False)
            except GPT2Error as err:
                print(f"gpt2: error: {err}", file=sys.stderr)


def write(out: TextIO, text: str) -> None:
    """Write and flush, so the text appears as it is generated."""
    out.write(text)
    out.flush()


def utf8_stdout() -> None:
    """Print UTF-8 whatever the locale says, so Devanagari and emoji never fail to encode."""
    if (sys.stdout.encoding or "").lower().replace("-", "") != "utf8" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")


def load_session(options: GenerateOptions, sampling: SamplingOptions, system: DeviceOptions,
                 decoding: DecodingOptions = DecodingOptions()) -> Session:
    """Load the checkpoint (see TextGenerator.load) and keep the request's options with it."""
    # Imported here, not at the top, so that --help does not import torch (see commands/__init__.py).
    from gpt2.generation.text import TextGenerator

    text = TextGenerator.load(options.checkpoint, options.tokenizer, system, options.quantize,
                              decoder=decoding.decoder(server=False))
    return Session(text, options, sampling)


def _run(options: GenerateOptions, sampling: SamplingOptions, system: DeviceOptions,
         decoding: DecodingOptions) -> None:
    session = load_session(options, sampling, system, decoding)
    utf8_stdout()
    if hasattr(sys.stdin, "reconfigure"):  # bytes that are not UTF-8 become a one-line error, not a crash
        sys.stdin.reconfigure(errors="surrogateescape")
    try:
        if options.interactive:
            session.interactive(sys.stdin, sys.stdout)
        else:
            session.run(read_prompt(options.prompt, options.prompt_file), options.num_samples, sys.stdout,
                        echo=True)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit


generate = flat_command(_run, GenerateOptions, SamplingOptions, DeviceOptions, DecodingOptions,
                        name="generate", doc="""\
Generate text from a checkpoint, streamed as it is produced.

The prompt comes from --prompt, --prompt_file, or stdin when it is piped; with none of
them (or an empty one) generation starts from the end-of-text token. Example:
gpt2 generate --checkpoint runs/shakespeare_cpu/best --prompt "ROMEO:" --max_new_tokens 300""")
