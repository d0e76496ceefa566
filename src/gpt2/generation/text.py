"""Prompt text -> continuation text: the one layer between strings and `generate_stream`,
used by `gpt2 generate` and by the samples printed during training.

The tokenizer turns the prompt into ids, `generate_stream` chooses new ids, and
`stream_text` turns them back into text pieces that never split a character.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from gpt2.checkpoint import read_config, readable_path
from gpt2.device import DeviceOptions
from gpt2.errors import GPT2Error
from gpt2.generation.decode import generate_stream
from gpt2.generation.fast_linear import prepare_for_decoding
from gpt2.generation.quantize import quantize_int8
from gpt2.generation.sampling import SamplingOptions
from gpt2.generation.streaming import stream_text
from gpt2.gpt_model import GPT2
from gpt2.runtime import resolve_runtime
from gpt2.tokenizers import Tokenizer, tokenizer_for_checkpoint


class TextGenerator:
    """A model and its tokenizer, ready to continue prompts."""

    def __init__(self, model: GPT2, tokenizer: Tokenizer) -> None:
        self.model, self.tokenizer = model, tokenizer

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, tokenizer: str | None = None,
                        device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
                        quantize: str | None = None) -> TextGenerator:
        """Load a checkpoint (ours or a Hugging Face GPT-2 directory) for generation: its
        tokenizer first (so a directory without one fails before the weights are read), then
        the weights in `dtype` - or int8 with quantize="int8" (see quantize.py) - laid out for
        fast decoding (see fast_linear.py)."""
        path = readable_path(checkpoint)  # the previous checkpoint while a save swaps in a new one
        tok = tokenizer_for_checkpoint(path, tokenizer, read_config(path).vocab_size)
        model = GPT2.from_pretrained(path, device=device, dtype=dtype)
        if quantize == "int8":
            quantize_int8(model)
        return cls(prepare_for_decoding(model), tok)

    @classmethod
    def load(cls, checkpoint: str | Path, tokenizer: str | None, system: DeviceOptions,
             quantize: str | None = None) -> TextGenerator:
        """What `gpt2 generate` and `gpt2 serve` load: the device, precision and threads
        resolved for this checkpoint (`auto` too), then `from_checkpoint`."""
        if not readable_path(checkpoint).is_dir():
            raise GPT2Error(f"--checkpoint {checkpoint}: no such directory")
        if quantize and system.dtype not in ("auto", "float32"):
            raise GPT2Error(f"--quantize int8 keeps activations in float32; use --dtype float32, "
                            f"not {system.dtype}")
        if quantize:  # int8 weights replace the choice of a float precision
            system = dataclasses.replace(system, dtype="float32")
        runtime = resolve_runtime(system, read_config(checkpoint), "generate")
        return cls.from_checkpoint(checkpoint, tokenizer, runtime.device, runtime.dtype, quantize)

    def encode(self, text: str) -> list[int]:
        """Prompt ids; an empty prompt starts from end-of-text, a too-long one is refused."""
        ids = self.tokenizer.encode(text) or [self.tokenizer.eot_id]
        ctx = self.model.cfg.context_length
        if len(ids) > ctx:
            raise GPT2Error(f"the prompt is {len(ids)} tokens but the model's context is {ctx} tokens; "
                            "shorten the prompt")
        return ids

    def stream(self, ids: list[int], sampling: SamplingOptions, max_new_tokens: int,
               stop: list[str] | None = None, generator: torch.Generator | None = None) -> Iterator[str]:
        """Text pieces of one continuation of `ids`, each safe to print as it comes; ends at
        end-of-text, a stop string or `max_new_tokens`."""
        idx = torch.tensor([ids], dtype=torch.long, device=self.model.device)  # (1, T)
        steps = generate_stream(self.model, idx, max_new_tokens, sampling, eos_id=self.tokenizer.eot_id,
                                stop_strings=stop, tokenizer=self.tokenizer,
                                generator=None if sampling.greedy else generator)

        def new_ids() -> Iterator[int]:  # up to end-of-text, skipping ids with no text
            for step in steps:
                token = int(step.tokens[0])
                if token == self.tokenizer.eot_id:
                    return
                if token < self.tokenizer.vocab_size:  # a padded model vocabulary
                    yield token

        yield from stream_text(self.tokenizer, new_ids(), ids)

    def complete(self, prompt: str, sampling: SamplingOptions, max_new_tokens: int,
                 generator: torch.Generator | None = None) -> str:
        """The whole continuation of `prompt` as one string."""
        return "".join(self.stream(self.encode(prompt), sampling, max_new_tokens, generator=generator))


def sample_text(model: GPT2, tokenizer: Tokenizer | Any, prompt: str, sampling: SamplingOptions,
                max_new_tokens: int, seed: int) -> str:
    """A continuation of `prompt` drawn with its own seeded generator, so a sample neither
    depends on nor disturbs the training RNG (resume stays bit-identical). The model is run
    in eval mode and its mode restored afterwards (see `generate_stream`)."""
    generator = torch.Generator(device=model.device).manual_seed(seed)
    return TextGenerator(model, tokenizer).complete(prompt, sampling, max_new_tokens, generator)
