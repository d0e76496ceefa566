"""Prompt text -> continuation text: the one layer between strings and the decoding engine,
driven by `gpt2 generate`, the samples printed during training and `gpt2 serve` alike.

`TextGenerator.encode` turns a prompt into ids within the model's limits (an empty prompt
starts from end-of-text); the engine (engine.py) chooses new ids; a `TextStream` per row turns
them back into text pieces that never split a character, skips end-of-text and ids past the
tokenizer's vocabulary, and ends the text before a stop string, which is not included.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from gpt2.checkpoint import read_config, readable_path
from gpt2.errors import GPT2Error
from gpt2.generation.engine import Engine, RowSpec, decoding
from gpt2.generation.fast_linear import prepare_for_decoding
from gpt2.generation.half_linear import quantize_fp16
from gpt2.generation.options import QUANTIZE_CHOICES, SamplingOptions
from gpt2.generation.quantize import quantize_int8
from gpt2.generation.quantize_dynamic import faster_than_int8, quantize_int8_dynamic
from gpt2.generation.row_sampling import row_keys
from gpt2.generation.stopping import StopMatcher
from gpt2.generation.streaming import StreamDecoder
from gpt2.gpt_model import GPT2
from gpt2.runtime.options import DeviceOptions
from gpt2.runtime.resolve import resolve_runtime
from gpt2.tokenizers import Tokenizer, tokenizer_for_checkpoint


class PromptTooLongError(GPT2Error):
    """A prompt with more tokens than the model (or a server's limit) takes."""


# what each --quantize choice does to the float32 model
QUANTIZERS = dict(zip(QUANTIZE_CHOICES, (quantize_int8, quantize_int8_dynamic, quantize_fp16), strict=True))


class TextGenerator:
    """A model and its tokenizer, ready to continue prompts."""

    def __init__(self, model: GPT2, tokenizer: Tokenizer, decoder: str = "auto") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.decoder = decoder  # how the engine runs each step (static_cache.DECODERS)
        self.engine: Engine | None = None  # made on first use (see _engine)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, tokenizer: str | None = None,
                        device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
                        quantize: str | None = None) -> TextGenerator:
        """Load a checkpoint (ours or a Hugging Face GPT-2 directory) for generation: its
        tokenizer first (so a directory without one fails before the weights are read), then
        the weights in `dtype` - or as `QUANTIZERS[quantize]` makes them ("int8": quantize.py,
        "int8-dynamic": quantize_dynamic.py, "fp16": half_linear.py) - laid out for fast
        decoding (see fast_linear.py)."""
        path = readable_path(checkpoint)  # the previous checkpoint while a save swaps in a new one
        tok = tokenizer_for_checkpoint(path, tokenizer, read_config(path).vocab_size)
        model = GPT2.from_pretrained(path, device=device, dtype=dtype)
        if quantize is not None:
            QUANTIZERS[quantize](model)
        return cls(prepare_for_decoding(model), tok)

    @classmethod
    def load(cls, checkpoint: str | Path, tokenizer: str | None, system: DeviceOptions,
             quantize: str | None = None, rows: int = 1, decoder: str = "auto",
             purpose: str = "generate") -> TextGenerator:
        """What `gpt2 generate` and `gpt2 serve` load: the device, precision and threads
        resolved for this checkpoint and for decoding up to `rows` sequences at once (`auto` too:
        on a CPU with FBGEMM and few rows, float16 weights as `--quantize fp16` makes them), then
        `from_checkpoint`. `decoder="compiled"` (`--compile true`) applies on a CPU; a GPU
        keeps `auto`'s CUDA graph. `purpose` ("generate", "chat" or "serve") names the command in
        the line that says what `auto` chose."""
        if not readable_path(checkpoint).is_dir():
            raise GPT2Error(f"--checkpoint {checkpoint}: no such directory")
        if quantize and system.dtype not in ("auto", "float32"):
            raise GPT2Error(f"--quantize {quantize} starts from float32 weights; use --dtype float32 "
                            f"(or auto), not {system.dtype}")
        if quantize:  # quantized weights replace the choice of a float precision
            system = dataclasses.replace(system, dtype="float32")
        runtime = resolve_runtime(system, read_config(checkpoint), purpose, batch_size=rows)
        if quantize == "int8" and runtime.device.type == "cpu" and faster_than_int8(decoder == "compiled"):
            print("gpt2: note: here --quantize int8-dynamic decodes faster than int8, with a little more "
                  "rounding (docs/generation.md, 'Which 8-bit mode')", file=sys.stderr)
        text = cls.from_checkpoint(checkpoint, tokenizer, runtime.device, runtime.dtype,
                                   quantize or runtime.weights)
        if decoder == "compiled" and runtime.device.type != "cpu":
            decoder = "auto"  # a GPU keeps its CUDA graph
        text.decoder = decoder
        if decoder == "compiled":
            print("gpt2: compiling the decoding step with torch.compile (gpt2-124M: ~1 min the first "
                  "time on this machine, ~10 s after; --compile false skips it)", file=sys.stderr)
            text.compile_step(rows)
        return text

    def compile_step(self, rows: int) -> None:
        """Compile the decoding step now for engines of `rows` rows (decoder "compiled"), so no
        prompt waits for it: one program for one active row and one for several (dynamo treats
        a size of 1 as a case of its own); every later engine of that size reuses them."""
        greedy = SamplingOptions(temperature=0)
        engine = Engine(self.model, rows, decoder="compiled")
        with decoding(self.model):
            for active in sorted({min(rows, 2), 1}, reverse=True):
                ids = [engine.add(RowSpec([self.tokenizer.eot_id], 2, greedy)) for _ in range(active)]
                engine.step()
                for row in ids:
                    engine.cancel(row)

    def encode(self, text: str, limit: int | None = None) -> list[int]:
        """Prompt ids; an empty prompt starts from end-of-text. A prompt longer than `limit`
        tokens (at most, and by default, the model's context) raises PromptTooLongError."""
        ids = self.tokenizer.encode(text) or [self.tokenizer.eot_id]
        ctx = self.model.cfg.context_length
        most = min(limit or ctx, ctx)
        if len(ids) > most:
            raise PromptTooLongError(f"the prompt is {len(ids)} tokens but the limit is {most} tokens "
                                f"(the model's context is {ctx}); shorten the prompt")
        return ids

    def stream(self, ids: list[int], sampling: SamplingOptions, max_new_tokens: int,
               stop: list[str] | None = None, generator: torch.Generator | None = None) -> Iterator[str]:
        """Text pieces of one continuation of `ids`, each safe to print as it comes; ends at
        end-of-text, before a stop string, or after `max_new_tokens` tokens. `generator` picks
        the row's random stream (row_sampling.row_keys), as `gpt2 serve` does for a seed."""
        if max_new_tokens == 0:
            return
        key = row_keys(generator, 1)[0] if generator is not None and not sampling.greedy else 0
        text = TextStream(self.tokenizer, ids, stop)
        engine = self._engine()
        with decoding(self.model):
            row = engine.add(RowSpec(ids, max_new_tokens, sampling, key, frozenset([self.tokenizer.eot_id])))
            try:
                while not text.stopped:
                    events = engine.step()
                    if not events:
                        break
                    piece = text.push(events[0].token)
                    if piece:
                        yield piece
            finally:  # also when the reader stops early: the row leaves, the engine is ready again
                engine.cancel(row)
        tail = text.finish()
        if tail:
            yield tail

    def _engine(self) -> Engine:
        """One engine of one row, made on first use and kept: its cache is allocated once and,
        on CUDA, its step is captured as a CUDA graph once for every later prompt."""
        if self.engine is None or self.engine.model is not self.model:
            self.engine = Engine(self.model, 1, decoder=self.decoder)
        return self.engine

    def complete(self, prompt: str, sampling: SamplingOptions, max_new_tokens: int,
                 generator: torch.Generator | None = None, stop: list[str] | None = None) -> str:
        """The whole continuation of `prompt` as one string."""
        return "".join(self.stream(self.encode(prompt), sampling, max_new_tokens, stop, generator))


def sample_text(model: GPT2, tokenizer: Tokenizer | Any, prompt: str, sampling: SamplingOptions,
                max_new_tokens: int, seed: int, stop: list[str] | None = None) -> str:
    """A continuation of `prompt` drawn with its own seeded generator, so a sample neither
    depends on nor disturbs the training RNG (resume stays bit-identical). The model is run
    in eval mode and its mode restored afterwards (see `engine.decoding`)."""
    generator = torch.Generator(device=model.device).manual_seed(seed)
    return TextGenerator(model, tokenizer).complete(prompt, sampling, max_new_tokens, generator, stop)


class TextStream:
    """One row's generated ids -> text. `push` returns the text that is ready (maybe ""): it
    never splits a character, gives no text for end-of-text or ids past the tokenizer's
    vocabulary (a padded model vocabulary), and stops before the first stop string, which is
    not included (`stopped` is then True); `finish` returns what was held back."""

    def __init__(self, tokenizer: Tokenizer, prompt_ids: list[int], stop: list[str] | None = None) -> None:
        self.tokenizer = tokenizer
        self.decoder = StreamDecoder(tokenizer, prompt_ids)
        self.stops = StopMatcher(stop)
        self.stopped = False

    def push(self, token: int) -> str:
        if self.stopped or token == self.tokenizer.eot_id or token >= self.tokenizer.vocab_size:
            return ""
        text, self.stopped = self.stops.feed(self.decoder.push(token))
        return text

    def finish(self) -> str:
        if self.stopped:
            return ""
        text, self.stopped = self.stops.feed(self.decoder.flush())
        return text if self.stopped else text + self.stops.flush()
