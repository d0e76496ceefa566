"""Generation: from a model and a prompt to new tokens and text.

    engine.py       the decoding engine: rows of ids joining and leaving at any step
    kv_slots.py     its cache: one slot per row, each row at its own length
    row_sampling.py every row's sampling knobs as tensors, one pass over the batch
    static_cache.py the engine's step at fixed shapes (CUDA graphs)
    compiled_step.py the engine's step compiled for the CPU (--compile true)
    opaque_linear.py the kernels that step calls without tracing into them
    decode.py       generate_text (the readable reference) and generate / generate_stream
                    (batches of prompts through the engine)
    options.py      SamplingOptions (without torch, so the `gpt2` command's --help stays fast)
    sampling.py     the reference logit processors (temperature, top-k, top-p, ...), sample_next
    stopping.py     stop strings            request.py   checks done once per request
    streaming.py    ids -> text pieces that never split a character
    fast_linear.py  weight layouts for fast CPU decoding
    quantize.py     weight-only int8 linears for faster CPU decoding (opt-in)
    quantize_dynamic.py  int8 weights and activations (FBGEMM), llama.cpp's q8_0 idea (opt-in)
    half_linear.py  float16 weights, float32 activations (FBGEMM) for fast 16-bit decoding (opt-in)
    text.py         the one text layer: prompt text -> continuation text (gpt2 generate,
                    training samples, gpt2 serve)

`from gpt2.generation import generate, SamplingOptions` works as always, but the names are
imported on first use (`gpt2.lazy`): importing `gpt2.generation.options`
runs this file, and must not import torch.
"""

from __future__ import annotations

from gpt2.lazy import lazy_exports

_DECODE = "gpt2.generation.decode"
_HOMES = {"GenerationStep": _DECODE, "generate": _DECODE, "generate_stream": _DECODE,
          "generate_text": _DECODE, "prepare_for_decoding": "gpt2.generation.fast_linear",
          "quantize_int8": "gpt2.generation.quantize",
          "quantize_int8_dynamic": "gpt2.generation.quantize_dynamic",
          "quantize_fp16": "gpt2.generation.half_linear",
          "SamplingOptions": "gpt2.generation.options"}
__all__ = list(_HOMES)
__getattr__ = lazy_exports(__name__, _HOMES)
