"""Shared helpers of the evaluation tests: tiny checkpoints and task files."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from gpt2 import GPT2, GPT2Config
from gpt2.evaluation.make_tasks import make_next_line_task
from gpt2.tokenizers import Tokenizer, get_tokenizer


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def shakespeare_task(path: Path, examples: int = 12, seed: int = 3) -> Path:
    """A small Shakespeare next-line file (the generic `choice` shape)."""
    return write_jsonl(path, make_next_line_task(examples, seed))


def random_model(cfg: GPT2Config, seed: int = 0, std: float = 0.05) -> GPT2:
    """A model with every weight random (biases and LayerNorm gains too), so scores differ clearly."""
    torch.manual_seed(seed)
    model = GPT2(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return model


def char_checkpoint(out: Path, text: str, context_length: int = 48) -> tuple[GPT2, Tokenizer]:
    """A random 2-layer char model whose vocabulary covers `text`, saved with its tokenizer."""
    tokenizer = get_tokenizer("char", text=text)
    cfg = GPT2Config(vocab_size=tokenizer.vocab_size, context_length=context_length, emb_dim=32, n_heads=4,
                     n_layers=2, drop_rate=0.0)
    model = random_model(cfg)
    model.save_pretrained(out)
    tokenizer.save(out)
    return model, tokenizer


def bpe_checkpoint(out: Path, context_length: int = 64) -> tuple[GPT2, Tokenizer]:
    """A random tiny model with GPT-2's vocabulary (50,257 ids), saved with GPT-2's BPE files:
    transformers (and so lm-evaluation-harness) load it as a GPT-2 model and tokenizer."""
    tokenizer = get_tokenizer("gpt2")
    cfg = GPT2Config(vocab_size=tokenizer.vocab_size, context_length=context_length, emb_dim=32, n_heads=4,
                     n_layers=2, drop_rate=0.0)
    model = random_model(cfg, std=0.1)
    model.save_pretrained(out)
    tokenizer.save(out)
    return model, tokenizer
