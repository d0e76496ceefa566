"""`gpt2 generate`: load a checkpoint once, read prompts, stream continuations to stdout.

The tokenizer comes from the checkpoint (`gpt2.tokenizers.load_tokenizer`): our saved
tokenizer, or a Hugging Face directory's vocab.json + merges.txt, tokenizer.json or
tokenizer.model.
A directory with no tokenizer files at all whose vocab_size is GPT-2's 50,257 (e.g. made
by `model.save_pretrained`) falls back to GPT-2's BPE, with a note on stderr; any other
directory without a tokenizer is an error, unless `--tokenizer` names one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import torch

from gpt2.sampling import SamplingOptions

GPT2_VOCAB_SIZE = 50257


def generate_command(checkpoint: str, prompt: str | None = None, prompt_file: str | None = None,
                     num_samples: int = 1, max_new_tokens: int = 200, temperature: float = 0.8,
                     top_k: int | None = 200, top_p: float | None = None, repetition_penalty: float = 1.0,
                     stop: list[str] | None = None, seed: int | None = None, device: str = "auto",
                     dtype: str = "float32", interactive: bool = False,
                     tokenizer: str | None = None) -> None:
    """Generate text from a checkpoint, streamed as it is produced.

    The prompt comes from --prompt, --prompt_file, or stdin when it is piped; with none of
    them (or an empty one) generation starts from the end-of-text token. Example:
    gpt2 generate --checkpoint runs/shakespeare/latest --prompt "ROMEO:" --max_new_tokens 300

    Args:
        checkpoint: Our checkpoint directory or a local Hugging Face GPT-2 directory.
        prompt: The text to continue.
        prompt_file: A UTF-8 file holding the text to continue.
        num_samples: How many continuations of the prompt to write, one after another.
        max_new_tokens: Most tokens to generate per sample (stops early at end-of-text).
        temperature: 0 = greedy (always the most likely token); lower = safer, higher = wilder.
        top_k: Sample only among the k most likely tokens (null = no limit).
        top_p: Sample only among the most likely tokens whose probabilities sum to p, in (0, 1].
        repetition_penalty: > 1 makes tokens already in the text less likely (1 = off).
        stop: Stop strings, as a JSON list, e.g. '["\\n\\n"]'; a sample ends after the first one.
        seed: Makes sampling reproducible.
        device: auto, cpu, cuda, cuda:N or mps.
        dtype: float32, bf16 or fp16 (the weights are cast; bf16 halves the memory read per token).
        interactive: Read prompts from stdin one line at a time without reloading (`--interactive true`).
        tokenizer: Override the checkpoint's tokenizer: gpt2, a tokenizer directory, or a .model file.
    """
    options = SamplingOptions(temperature, top_k, top_p, repetition_penalty)  # fail before loading
    if isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"--num_samples must be at least 1, got {num_samples}")
    if max_new_tokens < 0:
        raise ValueError(f"--max_new_tokens must be >= 0, got {max_new_tokens}")
    if prompt is not None and prompt_file is not None:
        raise ValueError("give --prompt or --prompt_file, not both")
    session = GenerationSession.load(checkpoint, tokenizer, device, dtype, seed)
    utf8_stdout()
    kwargs = dict(options=options, max_new_tokens=max_new_tokens, stop=stop)
    try:
        if interactive:
            session.interactive(sys.stdin, sys.stdout, **kwargs)
        else:
            session.run(read_prompt(prompt, prompt_file), num_samples, sys.stdout, echo=True, **kwargs)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit


def read_prompt(prompt: str | None, prompt_file: str | None) -> str:
    """The prompt from the option, the file, or piped stdin ("" when there is none)."""
    if prompt is not None:
        return prompt
    if prompt_file is not None:
        path = Path(prompt_file)
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValueError(f"--prompt_file {path}: no such file") from None
        except UnicodeDecodeError as err:
            raise ValueError(f"--prompt_file {path}: not UTF-8 text ({err.reason} at byte {err.start})"
                             ) from None
    if not sys.stdin.isatty():
        return sys.stdin.read()
    return ""


def resolve_tokenizer(checkpoint: Path, override: str | None, vocab_size: int) -> Any:
    """The checkpoint's tokenizer (see the module docstring for the fallback rule)."""
    from gpt2.tokenizers import GPT2BPETokenizer, get_tokenizer, load_tokenizer

    if override is not None:
        tokenizer = get_tokenizer(override)
    else:
        try:
            tokenizer = load_tokenizer(checkpoint)
        except FileNotFoundError:
            if vocab_size != GPT2_VOCAB_SIZE:
                raise ValueError(
                    f"{checkpoint} holds no tokenizer (no gpt2_tokenizer.json, vocab.json + merges.txt, "
                    f"tokenizer.json or tokenizer.model) and its vocab_size {vocab_size} is not GPT-2's "
                    f"{GPT2_VOCAB_SIZE}; save the tokenizer into the checkpoint "
                    "(gpt2 generate also takes --tokenizer)"
                ) from None
            print(f"gpt2: note: {checkpoint} holds no tokenizer; its vocab_size is GPT-2's, "
                  "so GPT-2's BPE is used", file=sys.stderr)
            tokenizer = GPT2BPETokenizer()
    if tokenizer.vocab_size > vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids but the model in {checkpoint} "
                         f"only {vocab_size}; they do not belong together")
    return tokenizer


class GenerationSession:
    """A loaded model + tokenizer + random generator, reused for every prompt."""

    def __init__(self, model: Any, tokenizer: Any, generator: torch.Generator) -> None:
        self.model, self.tokenizer, self.generator = model, tokenizer, generator

    @classmethod
    def load(cls, checkpoint: str, tokenizer: str | None, device: str, dtype: str,
             seed: int | None) -> GenerationSession:
        from gpt2.checkpoint import load_model, read_config
        from gpt2.device import pick_device, resolve_dtype

        path = Path(checkpoint)
        if not path.is_dir():
            raise ValueError(f"--checkpoint {path}: no such directory")
        dev, dt = pick_device(device), resolve_dtype(dtype)
        tok = resolve_tokenizer(path, tokenizer, read_config(path).vocab_size)
        from gpt2.fast_linear import prepare_for_decoding

        model = prepare_for_decoding(load_model(path, device=dev, dtype=dt))
        generator = torch.Generator(device=dev)
        if seed is not None:
            generator.manual_seed(seed)
        else:
            generator.seed()
        return cls(model, tok, generator)

    def encode(self, text: str) -> list[int]:
        """Prompt ids; an empty prompt starts from end-of-text, a too-long one is refused."""
        ids = self.tokenizer.encode(text) or [self.tokenizer.eot_id]
        ctx = self.model.cfg.context_length
        if len(ids) > ctx:
            raise ValueError(f"the prompt is {len(ids)} tokens but the model's context is {ctx} tokens; "
                             "shorten the prompt")
        return ids

    def stream(self, ids: list[int], options: SamplingOptions, max_new_tokens: int,
               stop: list[str] | None) -> Iterator[str]:
        """Text pieces of one continuation of `ids`, each safe to print as it comes."""
        from gpt2.generation import generate_stream
        from gpt2.streaming import stream_text

        idx = torch.tensor([ids], dtype=torch.long, device=self.model.tok_emb.weight.device)
        steps = generate_stream(
            self.model, idx, max_new_tokens, temperature=options.temperature, top_k=options.top_k,
            top_p=options.top_p, repetition_penalty=options.repetition_penalty,
            eos_id=self.tokenizer.eot_id, stop_strings=stop, tokenizer=self.tokenizer,
            generator=None if options.greedy else self.generator,
        )

        def new_ids() -> Iterator[int]:  # up to end-of-text, skipping ids with no text
            for step in steps:
                token = int(step.tokens[0])
                if token == self.tokenizer.eot_id:
                    return
                if token < self.tokenizer.vocab_size:  # a padded model vocabulary
                    yield token

        yield from stream_text(self.tokenizer, new_ids(), ids)

    def run(self, text: str, num_samples: int, out: TextIO, echo: bool, **kwargs: Any) -> None:
        ids = self.encode(text)
        for n in range(num_samples):
            if n:
                write(out, "\n" + "-" * 40 + "\n")
            if echo:
                write(out, text)
            for piece in self.stream(ids, kwargs["options"], kwargs["max_new_tokens"], kwargs["stop"]):
                write(out, piece)
            write(out, "\n")

    def interactive(self, inp: TextIO, out: TextIO, **kwargs: Any) -> None:
        """One prompt per line until end of input; a bad prompt is reported and skipped."""
        while True:
            print("> ", end="", file=sys.stderr, flush=True)
            line = inp.readline()
            if not line:
                print(file=sys.stderr)
                return
            try:
                self.run(line.rstrip("\n"), 1, out, echo=False, **kwargs)
            except ValueError as err:
                print(f"gpt2: error: {err}", file=sys.stderr)


def write(out: TextIO, text: str) -> None:
    """Write and flush, so the text appears as it is generated."""
    out.write(text)
    out.flush()


def utf8_stdout() -> None:
    """Print UTF-8 whatever the locale says, so Devanagari and emoji never fail to encode."""
    if (sys.stdout.encoding or "").lower().replace("-", "") != "utf8" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")
