"""Shared test helpers."""

from __future__ import annotations

import pytest
import torch

from gpt2 import GPT2, GPT2Config


def tiny_config(**overrides) -> GPT2Config:
    """A model small enough to build and run in milliseconds."""
    base = dict(vocab_size=97, context_length=32, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)
    return GPT2Config(**{**base, **overrides})


@pytest.fixture
def tiny_model() -> GPT2:
    torch.manual_seed(0)
    return GPT2(tiny_config()).eval()


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and on a shared machine each op would wait for a
    descheduled worker thread (10x slower tests); use one and restore the setting after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
