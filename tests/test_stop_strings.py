"""A stop string means one thing everywhere: the text ends just before it, and it is not
included: in `gpt2 generate`, in the samples printed during training and in `gpt2 serve`."""

from __future__ import annotations

import json

import httpx
import pytest
import torch

from gpt2.cli import main
from gpt2.generation import SamplingOptions
from gpt2.generation.text import sample_text
from test_serve_helpers import running_server, save_tiny_checkpoint, tiny_text

SAMPLED = SamplingOptions(temperature=1.0)  # seeded: every path draws the same text


@pytest.fixture(scope="module")
def case() -> tuple[str, str]:
    """(stop string, the text every path must give): a stop taken from the free continuation."""
    free = tiny_text().complete("ab", SAMPLED, 40, torch.Generator().manual_seed(1))
    stop = free[6:8]
    assert stop and free.index(stop) > 0
    return stop, free[:free.index(stop)]


def test_gpt2_generate_ends_before_the_stop_string(tmp_path, case, capsys, one_thread) -> None:
    stop, expected = case
    ckpt = save_tiny_checkpoint(tmp_path / "ckpt")
    for option in (stop, f'["{stop}", "zzzz"]'):  # one plain string, or a JSON list
        main(["generate", "--checkpoint", str(ckpt), "--prompt", "ab", "--max_new_tokens", "40",
              "--temperature", "1", "--seed", "1", "--dtype", "float32", "--stop", option])
        assert capsys.readouterr().out == "ab" + expected + "\n"


def test_training_samples_end_before_the_stop_string(case) -> None:
    stop, expected = case
    text = tiny_text()
    text.model.train()  # a model in training is sampled in eval mode and left in training
    assert sample_text(text.model, text.tokenizer, "ab", SAMPLED, 40, seed=1, stop=[stop]) == expected
    assert text.model.training


def test_serve_ends_before_the_stop_string_whole_and_streamed(case, one_thread) -> None:
    stop, expected = case
    body = {"prompt": "ab", "max_tokens": 40, "temperature": 1.0, "seed": 1, "stop": stop}
    with running_server(tiny_text()) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        whole = client.post("/v1/completions", json=body).json()["choices"][0]
        assert (whole["text"], whole["finish_reason"]) == (expected, "stop")
        with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as response:
            lines = [line for line in response.iter_lines() if line.startswith("data: {")]
        pieces = [json.loads(line[6:])["choices"][0]["text"] for line in lines]
        assert "".join(pieces) == expected
