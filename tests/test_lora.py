"""LoRA: the layer equals its merged weight, a merged model equals the adapted one, and our
adapters on an exported model compute what the `peft` library computes with the same weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from conftest import tiny_config
from gpt2 import GPT2
from gpt2.checkpoint import save_checkpoint
from gpt2.finetune.classifier import GPT2Classifier
from gpt2.finetune.lora import (
    LoRALinear,
    adapter_tensors,
    add_lora,
    load_adapter_tensors,
    lora_layers,
    merge_lora,
)
from gpt2.finetune.saved import ADAPTER, checkpoint_writer, finetune_info, load_finetuned, merge_checkpoint
from gpt2.tokenizers import get_tokenizer

ALL = ["attn.qkv", "attn.proj", "mlp.fc", "mlp.proj"]


def _randomise_adapters(model: torch.nn.Module) -> None:
    """B starts at zero (the update is 0); give every adapter a visible update."""
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.normal_(std=0.05)


def test_lora_linear_equals_its_merged_weight():
    torch.manual_seed(0)
    base = torch.nn.Linear(12, 20)
    layer = LoRALinear(base, rank=4, alpha=8.0)
    x = torch.randn(3, 5, 12)
    assert torch.equal(layer(x), base(x))  # B = 0: training starts from the unchanged layer
    layer.lora_B.data.normal_()
    assert not torch.allclose(layer(x), base(x))
    torch.testing.assert_close(layer(x), F.linear(x, layer.merged_weight(), base.bias), rtol=1e-5, atol=1e-5)
    assert layer.merged_weight().shape == base.weight.shape
    assert [n for n, p in layer.named_parameters() if p.requires_grad] == ["lora_A", "lora_B"]


def test_merged_model_computes_what_the_adapted_one_does():
    torch.manual_seed(0)
    model = GPT2(tiny_config()).eval()
    add_lora(model, rank=4, alpha=16.0, dropout=0.0, targets=ALL)
    _randomise_adapters(model)
    idx = torch.randint(0, 97, (2, 16))
    adapted = model(idx)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    merge_lora(model)
    assert not lora_layers(model) and isinstance(model.blocks[0].attn.qkv, torch.nn.Linear)
    torch.testing.assert_close(model(idx), adapted, rtol=1e-5, atol=1e-5)


def test_adapters_round_trip_by_name():
    torch.manual_seed(0)
    a, b = GPT2(tiny_config()), GPT2(tiny_config())
    for m in (a, b):
        add_lora(m, rank=2, alpha=4.0, dropout=0.0, targets=["attn.qkv", "mlp.fc"])
    _randomise_adapters(a)
    tensors = adapter_tensors(a)
    assert "base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight" in tensors
    load_adapter_tensors(b, tensors, "test")
    assert all(torch.equal(v, adapter_tensors(b)[k]) for k, v in tensors.items())


@pytest.mark.slow
def test_ours_equals_peft_and_the_merge_loads_in_transformers(tmp_path):
    """The same exported base model and the same adapter file: our LoRA and peft's agree, and
    `merge` writes a checkpoint transformers loads to the same logits."""
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    tok = get_tokenizer("char", text="abcdefghijklmnopqrstuvwxyz .\n")
    base = GPT2(tiny_config(vocab_size=tok.vocab_size)).eval()
    save_checkpoint(tmp_path / "base", base, tokenizer=tok)
    ours = GPT2.from_pretrained(tmp_path / "base").eval()
    add_lora(ours, rank=4, alpha=8.0, dropout=0.0, targets=["attn.qkv", "attn.proj", "mlp.fc"])
    _randomise_adapters(ours)
    lora = {"rank": 4, "alpha": 8.0, "dropout": 0.0, "targets": ["attn.qkv", "attn.proj", "mlp.fc"]}
    info = finetune_info("chat", str(tmp_path / "base"), None, lora)
    checkpoint_writer(info)(tmp_path / "tuned", ours, tok)
    adapter_bytes = (tmp_path / "tuned" / ADAPTER).stat().st_size
    assert adapter_bytes < (tmp_path / "base" / "model.safetensors").stat().st_size / 2
    assert not (tmp_path / "tuned" / "model.safetensors").exists()  # only the adapters are saved

    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "base").eval()
    theirs = peft.PeftModel.from_pretrained(hf, tmp_path / "tuned").eval()  # our files, read by peft
    wrapped = {n for n, m in theirs.named_modules() if hasattr(m, "lora_A")}
    assert "base_model.model.transformer.h.0.mlp.c_fc" in wrapped
    assert "base_model.model.transformer.h.0.mlp.c_proj" not in wrapped  # attn.c_proj only, as asked
    idx = torch.randint(0, tok.vocab_size, (2, 16))
    with torch.no_grad():
        expected = ours(idx)
        torch.testing.assert_close(theirs(idx).logits, expected, rtol=1e-4, atol=1e-5)
        loaded, _, _ = load_finetuned(tmp_path / "tuned")
        torch.testing.assert_close(loaded(idx), expected, rtol=1e-5, atol=1e-6)

    merge_checkpoint(tmp_path / "tuned", tmp_path / "merged")
    merged_hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "merged").eval()
    merged_ours = GPT2.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(merged_hf(idx).logits, expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(merged_ours(idx), expected, rtol=1e-5, atol=1e-5)
    assert set(load_file(tmp_path / "tuned" / ADAPTER)) == set(adapter_tensors(ours))


def test_a_classifier_keeps_its_head_trainable_under_lora():
    torch.manual_seed(0)
    model = GPT2Classifier(GPT2(tiny_config()), ["a", "b"])
    add_lora(model, rank=2, alpha=2.0, dropout=0.0, targets=["attn.qkv"])
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == ["gpt.blocks.0.attn.qkv.lora_A", "gpt.blocks.0.attn.qkv.lora_B",
                         "gpt.blocks.1.attn.qkv.lora_A", "gpt.blocks.1.attn.qkv.lora_B",
                         "head.bias", "head.weight"]
