"""The fixed-shape decoding step (what a CUDA graph replays) gives the dynamic path's logits and
tokens at every step: plain, left-padded batches, a sliding window, sampling, both attentions."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_config
from gpt2 import GPT2
from gpt2.errors import GPT2Error
from gpt2.generation import SamplingOptions
from gpt2.generation.decode import generate, generate_stream
from gpt2.generation.kv_slots import SlotCache
from gpt2.generation.static_cache import StaticView


def _steps(model: GPT2, idx: torch.Tensor, n: int, decoder: str, **options: object) -> list:
    return list(generate_stream(model, idx, n, decoder=decoder, **options))


CONFIGS = {
    "sdpa": dict(),
    "explicit-no-bias": dict(attention="explicit", bias=False, n_layers=3, emb_dim=48, n_heads=3),
}


@pytest.fixture(params=sorted(CONFIGS))
def model(request: pytest.FixtureRequest) -> GPT2:
    torch.manual_seed(0)
    return GPT2(tiny_config(**CONFIGS[request.param])).eval()


@pytest.mark.parametrize("case", ["greedy", "padded", "sliding", "sampled"])
def test_static_step_equals_the_dynamic_path(model: GPT2, case: str, one_thread: None) -> None:
    torch.manual_seed(1)
    idx = torch.randint(0, model.cfg.vocab_size, (3, 7))
    options: dict = {}
    n = 12
    if case == "padded":
        mask = torch.ones(3, 7, dtype=torch.long)
        mask[0, :4] = 0
        mask[2, :1] = 0
        options["attention_mask"] = mask
    if case == "sliding":  # 7 + 40 tokens > context 32: the window slides and the cache refills
        n, options["window_stride"] = 40, 5
    if case == "sampled":
        options.update(sampling=SamplingOptions(temperature=1.0, top_k=20), seed=3)
    else:
        options["sampling"] = SamplingOptions(temperature=0)
    dynamic = _steps(model, idx, n, "dynamic", **options)
    static = _steps(model, idx, n, "static", **options)
    assert len(dynamic) == len(static) == n
    for a, b in zip(dynamic, static, strict=True):
        assert torch.equal(a.tokens, b.tokens)
        torch.testing.assert_close(a.logits, b.logits, rtol=1e-5, atol=1e-5)


def test_auto_is_dynamic_on_the_cpu_and_generate_takes_the_decoder(tiny_model: GPT2) -> None:
    idx = torch.tensor([[1, 2, 3]])
    greedy = SamplingOptions(temperature=0)
    static = generate(tiny_model, idx, 6, greedy, decoder="static")
    assert torch.equal(generate(tiny_model, idx, 6, greedy), static)
    with pytest.raises(GPT2Error, match="cuda_graph on CUDA only"):
        generate(tiny_model, idx, 2, greedy, decoder="cuda_graph")
    with pytest.raises(GPT2Error, match="decoder must be one of"):
        generate(tiny_model, idx, 2, greedy, decoder="fast")


def test_static_view_writes_each_row_at_the_position_it_holds() -> None:
    cache = SlotCache(tiny_config(), rows=2, max_len=5, device=torch.device("cpu"), dtype=torch.float32)
    positions = torch.tensor([[3], [1]])  # (rows, 1): row 0 writes at 3, row 1 at 1
    layer = StaticView(cache.k[0], cache.v[0], positions)
    k, v = torch.ones(2, 4, 1, 8), torch.full((2, 4, 1, 8), 2.0)
    all_k, all_v = layer.append(k, v)
    assert all_k.shape == (2, 4, 6, 8) and all_k is cache.k[0]  # the same buffer, whole (max_len + a spare)
    assert all_k[0, :, 3].eq(1).all() and all_v[0, :, 3].eq(2).all() and all_k[1, :, 1].eq(1).all()
    assert all_k[0, :, :3].eq(0).all() and all_k[1, :, 2:].eq(0).all() and all_k[1, :, 0].eq(0).all()
