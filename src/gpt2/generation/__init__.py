"""Generation: from a model and a prompt to new tokens and text.

    decode.py       generate_text (the readable reference) and generate / generate_stream
                    (KV cache, batches, sliding window)
    options.py      SamplingOptions (without torch, so the `gpt2` command's --help stays fast)
    sampling.py     the logit processors (temperature, top-k, top-p, ...) and sample_next
    stopping.py     stop strings            request.py   checks done once per request
    streaming.py    ids -> text pieces that never split a character
    fast_linear.py  weight layouts for fast CPU decoding
    quantize.py     weight-only int8 linears for faster CPU decoding (opt-in)
    text.py         prompt text -> continuation text (gpt2 generate, training samples)

`from gpt2.generation import generate, SamplingOptions` works as always, but the names are
imported on first use (the module `__getattr__` below): importing `gpt2.generation.options`
runs this file, and must not import torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GenerationStep", "SamplingOptions", "generate", "generate_stream", "generate_text",
           "prepare_for_decoding", "quantize_int8"]


def __getattr__(name: str) -> Any:
    if name in ("GenerationStep", "generate", "generate_stream", "generate_text"):
        from gpt2.generation import decode as module
    elif name == "prepare_for_decoding":
        from gpt2.generation import fast_linear as module
    elif name == "quantize_int8":
        from gpt2.generation import quantize as module
    elif name == "SamplingOptions":
        from gpt2.generation import options as module
    else:
        raise AttributeError(f"module 'gpt2.generation' has no attribute {name!r}")
    return getattr(module, name)
