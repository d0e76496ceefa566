import math

import pytest
import torch

from conftest import tiny_config
from gpt2 import GPT2, GPT2Config
from gpt2.runtime.device import pick_device, resolve_dtype


def test_parameter_count_by_construction():
    model = GPT2(GPT2Config.from_preset("gpt2"))
    assert model.num_parameters() == 124_439_808
    assert model.lm_head.weight is model.tok_emb.weight


# the same construction without memory: the larger presets (gpt2-medium's 1.4 GB took 19 s to fill)
@pytest.mark.parametrize("preset, expected", [("gpt2-medium", 354_823_168), ("gpt2-large", 774_030_080),
                                              ("gpt2-xl", 1_557_611_200)])
def test_parameter_count_without_allocating(preset, expected):
    with torch.device("meta"):
        model = GPT2(GPT2Config.from_preset(preset))
    assert model.num_parameters() == expected


def test_initialisation_follows_gpt2():
    torch.manual_seed(0)
    cfg = GPT2Config.from_preset("gpt2", n_layers=4)
    model = GPT2(cfg)
    assert abs(model.tok_emb.weight.std().item() - 0.02) < 1e-3
    assert abs(model.blocks[0].mlp.fc.weight.std().item() - 0.02) < 1e-3
    residual = 0.02 / math.sqrt(2 * cfg.n_layers)
    for block in model.blocks:
        assert abs(block.attn.proj.weight.std().item() - residual) < 1e-3
        assert abs(block.mlp.proj.weight.std().item() - residual) < 1e-3
        assert torch.count_nonzero(block.attn.qkv.bias) == 0
        assert torch.all(block.norm1.weight == 1)


def test_forward_shape_and_causality(tiny_model):
    idx = torch.randint(0, 97, (3, 20))
    logits = tiny_model(idx)
    assert logits.shape == (3, 20, 97)
    changed = idx.clone()
    changed[:, 15:] = (changed[:, 15:] + 1) % 97
    torch.testing.assert_close(tiny_model(changed)[:, :15], logits[:, :15])


def test_explicit_and_sdpa_models_agree():
    torch.manual_seed(0)
    fast = GPT2(tiny_config()).eval()
    slow = GPT2(tiny_config(attention="explicit")).eval()
    slow.load_state_dict(fast.state_dict())
    idx = torch.randint(0, 97, (2, 32))
    torch.testing.assert_close(slow(idx), fast(idx), atol=1e-5, rtol=0)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    model = GPT2(tiny_config(drop_rate=0.5))
    idx = torch.randint(0, 97, (2, 10))
    model.eval()
    torch.testing.assert_close(model(idx), model(idx))
    model.train()
    assert not torch.allclose(model(idx), model(idx))


@pytest.mark.parametrize(
    "idx, message",
    [
        (torch.zeros(2, 4), "must hold integer token ids"),
        (torch.zeros(4, dtype=torch.long), r"must have shape \(batch, seq_len\), got \(4,\)"),
        (torch.zeros(1, 2, 3, dtype=torch.long), r"must have shape \(batch, seq_len\)"),
        (torch.zeros(1, 33, dtype=torch.long), "sequence length 33 exceeds the model's context_length 32"),
        (torch.tensor([[1, 97]]), r"token id 97 is outside the vocabulary \[0, 97\)"),
        (torch.tensor([[-1, 3]]), "token id -1 is outside the vocabulary"),
        (torch.zeros(1, 0, dtype=torch.long), "idx is empty"),
        ([[1, 2]], "must be a torch.Tensor"),
    ],
)
def test_bad_input_is_a_clear_value_error(tiny_model, idx, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(idx)


def test_int32_ids_are_accepted(tiny_model):
    idx = torch.randint(0, 97, (1, 5))
    torch.testing.assert_close(tiny_model(idx.int()), tiny_model(idx))


def test_device_and_dtype_helpers():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype(torch.float16) is torch.float16
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8")
    with pytest.raises(ValueError, match="'auto' is not resolved yet"):
        resolve_dtype("auto")  # the machine decides auto (gpt2.runtime), never a silent float32
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        pick_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="MPS is not available"):
            pick_device("mps")


def test_model_runs_in_bfloat16(tiny_model):
    model = tiny_model.to(pick_device("cpu"), torch.bfloat16)
    logits = model(torch.randint(0, 97, (2, 6)))
    assert logits.dtype is torch.bfloat16 and torch.isfinite(logits).all()


def test_original_quick_start():
    """The original README's quick start, with only the package prefix added."""
    from gpt2.config import GPT2Config
    from gpt2.generation import generate_text
    from gpt2.gpt_model import GPT2

    torch.manual_seed(123)
    cfg = GPT2Config(vocab_size=50257, context_length=64, emb_dim=64, n_heads=4, n_layers=2)
    model = GPT2(cfg)
    model.eval()
    idx = torch.tensor([[15496, 11, 314, 716]])  # "Hello, I am"
    logits = model(idx)
    assert logits.shape == (1, 4, 50257)
    out = generate_text(model=model, idx=idx, max_new_tokens=6, context_size=cfg.context_length)
    assert out.shape == (1, 10) and torch.equal(out[:, :4], idx)
    # Greedy: each new token is the argmax of the logits for the text so far.
    assert out[0, 4].item() == model(idx)[0, -1].argmax().item()


def test_generate_text_crops_to_context_size(tiny_model):
    from gpt2.generation import generate_text

    idx = torch.randint(0, 97, (1, 30))  # longer than context_size: only the last 8 are read
    out = generate_text(tiny_model, idx, max_new_tokens=10, context_size=8)
    assert out.shape == (1, 40)
    assert out[0, 30].item() == tiny_model(idx[:, -8:])[0, -1].argmax().item()
