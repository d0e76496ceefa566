"""Generation: from a model and a prompt to new tokens and text.

    decode.py       generate_text (the readable reference) and generate / generate_stream
                    (KV cache, batches, sliding window)
    sampling.py     SamplingOptions and the logit processors (temperature, top-k, top-p, ...)
    stopping.py     stop strings            request.py   checks done once per request
    streaming.py    ids -> text pieces that never split a character
    fast_linear.py  weight layouts for fast CPU decoding
    quantize.py     weight-only int8 linears for faster CPU decoding (opt-in)
    text.py         prompt text -> continuation text (gpt2 generate, training samples)
"""

from gpt2.generation.decode import GenerationStep, generate, generate_stream, generate_text
from gpt2.generation.fast_linear import prepare_for_decoding
from gpt2.generation.quantize import quantize_int8
from gpt2.generation.sampling import SamplingOptions

__all__ = ["GenerationStep", "SamplingOptions", "generate", "generate_stream", "generate_text",
           "prepare_for_decoding", "quantize_int8"]
