"""Our GPT2 and transformers' GPT2LMHeadModel compute the same function, both directions."""

import pytest
import torch

from gpt2 import GPT2, GPT2Config

transformers = pytest.importorskip("transformers")

CONFIGS = [
    dict(vocab_size=101, context_length=48, emb_dim=32, n_heads=4, n_layers=2),
    dict(vocab_size=257, context_length=64, emb_dim=96, n_heads=6, n_layers=3),
    dict(vocab_size=65, context_length=64, emb_dim=128, n_heads=4, n_layers=4, bias=False),
]


def _random_hf_model(cfg: GPT2Config, seed: int):
    torch.manual_seed(seed)
    hf_cfg = transformers.GPT2Config(**{k: v for k, v in cfg.to_hf_dict().items() if k != "bias"})
    model = transformers.GPT2LMHeadModel(hf_cfg).eval()
    with torch.no_grad():  # HF zero-initialises biases and unit LN gains: randomise everything
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model


def _assert_same_logits(ours: GPT2, hf, cfg: GPT2Config):
    g = torch.Generator().manual_seed(1)
    for batch, length in [(1, 1), (2, 7), (3, cfg.context_length)]:
        idx = torch.randint(0, cfg.vocab_size, (batch, length), generator=g)
        with torch.no_grad():
            diff = (ours(idx) - hf(idx).logits).abs().max().item()
        assert diff <= 1e-5, f"max |diff| {diff} at batch {batch}, length {length}"


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_ours_to_transformers(kwargs, tmp_path):
    torch.manual_seed(0)
    cfg = GPT2Config(**kwargs, drop_rate=0.0)
    ours = GPT2(cfg).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0, 0.05)
    ours.save_pretrained(tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    _assert_same_logits(ours, hf, cfg)


@pytest.mark.parametrize("kwargs", CONFIGS[:2])
def test_transformers_to_ours(kwargs, tmp_path):
    cfg = GPT2Config(**kwargs, drop_rate=0.0)
    hf = _random_hf_model(cfg, seed=2)
    hf.save_pretrained(tmp_path)
    ours = GPT2.from_pretrained(tmp_path)
    _assert_same_logits(ours, hf, cfg)


def test_transformers_pytorch_model_bin_is_loaded_safely(tmp_path):
    cfg = GPT2Config(**CONFIGS[0], drop_rate=0.0)
    hf = _random_hf_model(cfg, seed=3)
    hf.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    # The legacy layout older transformers versions wrote, with their causal-mask buffers.
    state = dict(hf.state_dict())
    for i in range(cfg.n_layers):
        state[f"transformer.h.{i}.attn.bias"] = torch.ones(1, 1, 48, 48).tril()
    torch.save(state, tmp_path / "pytorch_model.bin")
    _assert_same_logits(GPT2.from_pretrained(tmp_path), hf, cfg)


@pytest.mark.slow
def test_full_gpt2_shape_both_ways(tmp_path):
    """The real GPT-2 small shape (124M parameters), random weights, both directions."""
    cfg = GPT2Config(drop_rate=0.0)
    hf = _random_hf_model(cfg, seed=4)
    hf.save_pretrained(tmp_path / "hf")
    ours = GPT2.from_pretrained(tmp_path / "hf")
    g = torch.Generator().manual_seed(5)
    for batch, length in [(1, 5), (2, 64)]:
        idx = torch.randint(0, cfg.vocab_size, (batch, length), generator=g)
        with torch.no_grad():
            assert (ours(idx) - hf(idx).logits).abs().max().item() <= 1e-5
    ours.save_pretrained(tmp_path / "ours")
    del hf
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "ours").eval()
    idx = torch.randint(0, cfg.vocab_size, (2, 32), generator=g)
    with torch.no_grad():
        assert (ours(idx) - back(idx).logits).abs().max().item() <= 1e-5
