"""What the `gpt2 serve` tests share (no tests here): tiny models and a running server.

The tiny model is random, but built so that its greedy choice is never end-of-text: a
request then runs for exactly max_tokens, which lets tests hold the worker busy for as long
as they need and stop it by disconnecting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from gpt2 import GPT2, GPT2Config
from gpt2.checkpoint import save_checkpoint
from gpt2.generation.text import TextGenerator
from gpt2.serving.app import create_app
from gpt2.serving.background import BackgroundServer
from gpt2.serving.options import ServeLimits
from gpt2.tokenizers import CharTokenizer, Tokenizer

CORPUS = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,:;!?'\n"
MODEL = "tiny"


def tiny_model(tokenizer: Tokenizer, seed: int = 0, context_length: int = 64) -> GPT2:
    """A random 2-layer model whose end-of-text logit is 10 below every other token's: the final
    LayerNorm's first feature is pinned to 5, and every token but end-of-text reads it with +1
    (end-of-text with -1). The other logits stay random, spread 40x wider than at initialisation
    (the final gain) so that probabilities range from near 0 to near 1, as a trained model's do."""
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=tokenizer.vocab_size, context_length=context_length, emb_dim=32, n_heads=2,
                     n_layers=2, drop_rate=0.0)
    model = GPT2(cfg).eval()
    with torch.no_grad():
        model.final_norm.weight.mul_(40.0)
        model.final_norm.weight[0] = 0.0
        model.final_norm.bias[0] = 5.0
        model.tok_emb.weight[:, 0] = 1.0  # tied: this is the output layer's weight too
        model.tok_emb.weight[tokenizer.eot_id, 0] = -1.0
    return model


def tiny_text(seed: int = 0) -> TextGenerator:
    tokenizer = CharTokenizer.from_text(CORPUS)
    return TextGenerator(tiny_model(tokenizer, seed), tokenizer)


def save_tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    text = tiny_text(seed)
    save_checkpoint(path, text.model, tokenizer=text.tokenizer)
    return path


@contextmanager
def running_server(text: TextGenerator, api_key: str | None = None,
                   **limits: int) -> Iterator[BackgroundServer]:
    """The app on a free loopback port, one torch thread (tiny models gain nothing from more)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with BackgroundServer(create_app(text, MODEL, ServeLimits(**limits), api_key)) as server:
            yield server
    finally:
        torch.set_num_threads(threads)
