import pytest
import torch

from gpt2 import GPT2, GPT2Config
from gpt2.config import PRESETS


def test_defaults_are_gpt2_small():
    cfg = GPT2Config()
    assert (cfg.vocab_size, cfg.context_length, cfg.emb_dim, cfg.n_heads, cfg.n_layers) == (
        50257, 1024, 768, 12, 12)
    assert cfg == GPT2Config.from_preset("gpt2")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("emb_dim", 100, "emb_dim (100) must be divisible by GPT2Config.n_heads (12)"),
        ("n_heads", 0, "GPT2Config.n_heads must be a positive integer"),
        ("n_layers", -1, "GPT2Config.n_layers must be a positive integer"),
        ("vocab_size", 2.5, "GPT2Config.vocab_size must be a positive integer"),
        ("context_length", 0, "GPT2Config.context_length must be a positive integer"),
        ("drop_rate", 1.0, "GPT2Config.drop_rate must be in [0, 1)"),
        ("drop_rate", -0.1, "GPT2Config.drop_rate must be in [0, 1)"),
        ("attention", "flash", "GPT2Config.attention must be 'sdpa' or 'explicit'"),
    ],
)
def test_invalid_values_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[")):
        GPT2Config(**{field: value})


def test_unknown_preset_lists_choices():
    with pytest.raises(ValueError, match="unknown preset 'gpt5'; choose one of gpt2, gpt2-medium"):
        GPT2Config.from_preset("gpt5")


def test_preset_overrides_and_dict_round_trip():
    cfg = GPT2Config.from_preset("char-tiny", vocab_size=65)
    assert GPT2Config.from_dict(cfg.to_dict()) == cfg
    assert GPT2Config.from_hf_dict(cfg.to_hf_dict()) == cfg
    with pytest.raises(ValueError, match="unknown GPT2Config field"):
        GPT2Config.from_dict({**cfg.to_dict(), "n_embd": 3})


@pytest.mark.parametrize("name", ["char-tiny", "cpu-tiny", "cpu-small", "cpu-10m"])
def test_small_presets_build_and_run(name):
    cfg = GPT2Config.from_preset(name)
    model = GPT2(cfg)
    logits = model(torch.zeros(1, 8, dtype=torch.long))
    assert logits.shape == (1, 8, cfg.vocab_size)


def test_presets_are_valid_configs():
    for name in PRESETS:
        GPT2Config.from_preset(name).validate()
