"""Muon: the Newton-Schulz orthogonalisation against an exact SVD, the parameter split, the
AdamW half against torch's AdamW, and a `gpt2 train --optim.name muon` run that learns and
resumes bit for bit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from gpt2 import GPT2, GPT2Config
from gpt2.cli import main
from gpt2.training.muon import muon_groups, orthogonalize, orthogonalize_reference
from gpt2.training.optim import build_optimizer
from train_helpers import fails_in_one_line, make_char_data, tiny_args, train_losses


def _model() -> GPT2:
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=50, context_length=16, emb_dim=16, n_heads=2, n_layers=2, drop_rate=0.0)
    return GPT2(cfg)


def _step(model: GPT2, opt: torch.optim.Optimizer, seed: int) -> None:
    x = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(seed)).to(model.device)
    opt.zero_grad()
    model(x).logsumexp(-1).mean().backward()
    opt.step()


def _spread(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A float64 matrix (or batch) whose singular values spread over a factor of 30."""
    gen = torch.Generator().manual_seed(seed)
    *batch, rows, cols = shape
    r = min(rows, cols)
    u = torch.linalg.qr(torch.randn(*batch, rows, r, generator=gen, dtype=torch.float64)).Q
    v = torch.linalg.qr(torch.randn(*batch, cols, r, generator=gen, dtype=torch.float64)).Q
    return u @ torch.diag(torch.logspace(0, math.log10(30), r, dtype=torch.float64)) @ v.mT


@pytest.mark.parametrize("shape", [(384, 128), (128, 512), (64, 64), (3, 96, 32)])
def test_newton_schulz_is_close_to_the_svd_orthogonal_factor(shape: tuple[int, ...]) -> None:
    g = _spread(shape)
    got = orthogonalize(g)
    want = torch.stack([orthogonalize_reference(m) for m in g.reshape(-1, *shape[-2:])]).reshape(shape)
    singular = torch.linalg.svdvals(got)
    assert singular.min() > 0.6 and singular.max() < 1.2  # pushed near 1 from 1..30
    cosine = (got * want).sum() / (got.norm() * want.norm())
    assert cosine > 0.97  # the same directions as U V^T


def test_the_iteration_in_bf16_stays_close_to_float32() -> None:
    """What a bf16-autocast run uses (Muon's ns_dtype): bf16 rounding, the same directions."""
    g = _spread((3, 128, 512)).float()
    exact, rounded = orthogonalize(g), orthogonalize(g.bfloat16()).float()
    assert (exact * rounded).sum() / (exact.norm() * rounded.norm()) > 0.99
    singular = torch.linalg.svdvals(rounded)
    assert singular.min() > 0.5 and singular.max() < 1.3


def test_a_batch_of_matrices_equals_each_alone() -> None:
    g = torch.randn(4, 48, 16, generator=torch.Generator().manual_seed(1))
    for batched, one in zip(orthogonalize(g), g, strict=True):
        torch.testing.assert_close(batched, orthogonalize(one), rtol=1e-5, atol=1e-6)


def test_groups_give_block_matrices_to_muon_and_the_rest_to_adamw() -> None:
    model = _model()
    muon, decay, no_decay = muon_groups(model, weight_decay=0.1, lr=1e-3, muon_lr=5e-3)
    names = {id(p): n for n, p in model.named_parameters()}
    assert muon["muon"] and muon["lr"] == 5e-3 and decay["lr"] == no_decay["lr"] == 1e-3
    assert {names[id(p)] for p in muon["params"]} == {
        f"blocks.{i}.{m}.weight" for i in range(2) for m in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")}
    assert {names[id(p)] for p in decay["params"]} == {"tok_emb.weight", "pos_emb.weight"}
    assert all(p.dim() == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    ids = [id(p) for g in (muon, decay, no_decay) for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each parameter exactly once


def test_the_adamw_half_matches_torch_adamw() -> None:
    """With the block matrices frozen, Muon is AdamW over the remaining parameters."""
    models = [_model(), _model()]
    for model in models:
        for name, p in model.named_parameters():
            p.requires_grad = not (p.dim() == 2 and name.startswith("blocks."))
    muon = build_optimizer(models[0], lr=1e-2, weight_decay=0.1, name="muon")
    adamw = build_optimizer(models[1], lr=1e-2, weight_decay=0.1, impl="loop")
    for seed in range(3):
        _step(models[0], muon, seed)
        _step(models[1], adamw, seed)
    for got, want in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert not torch.equal(models[0].tok_emb.weight, _model().tok_emb.weight)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("saved_step", [int, torch.tensor])
def test_a_loaded_muon_state_resumes_the_same(device: str, saved_step: type) -> None:
    """A state loaded into a fresh Muon continues exactly as a run that never stopped: one whose
    step counts are ints (runs saved before the AdamW half used torch's kernel) or tensors read
    onto the CPU, where torch's CUDA kernel refuses them."""
    models = [_model().to(device), _model().to(device)]
    opts = [build_optimizer(m, lr=1e-2, name="muon") for m in models]
    for model, opt in zip(models, opts, strict=True):
        _step(model, opt, seed=0)
    old = opts[1].state_dict()
    for state in old["state"].values():
        if "step" in state:
            state["step"] = saved_step(int(state["step"]))
    opts[1] = build_optimizer(models[1], lr=1e-2, name="muon")
    opts[1].load_state_dict(old)
    for model, opt in zip(models, opts, strict=True):
        _step(model, opt, seed=1)
    for got, want in zip(models[1].parameters(), models[0].parameters(), strict=True):
        assert torch.equal(got, want)


def test_two_muon_steps_follow_the_written_out_update() -> None:
    """W <- W (1 - lr wd) - lr sqrt(max(1, rows/cols)) orthogonalize(g + mu (mu buf + g)), with
    buf the running sum buf <- mu buf + g: two steps with different gradients, so plain
    momentum or no momentum would give other weights; no set_lr call, so the groups' rates
    are the ones the optimizer was built with."""
    model = _model()
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.1, name="muon", muon_lr=0.02, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.02, 1e-3, 1e-3])
    tall, wide = model.blocks[0].mlp.fc.weight, model.blocks[0].mlp.proj.weight  # (64, 16), (16, 64)
    w0 = {"tall": tall.detach().clone(), "wide": wide.detach().clone()}
    _step(model, opt, seed=0)
    g1 = {"tall": tall.grad.clone(), "wide": wide.grad.clone()}
    decay, step = 1 - 0.02 * 0.1, {"tall": -0.02 * math.sqrt(64 / 16), "wide": -0.02}
    w1 = {k: w0[k] * decay + step[k] * orthogonalize(g1[k] + 0.9 * g1[k]) for k in w0}
    torch.testing.assert_close(tall.detach(), w1["tall"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(wide.detach(), w1["wide"], rtol=1e-4, atol=1e-6)
    _step(model, opt, seed=1)
    g2 = tall.grad.clone()
    assert not torch.allclose(g2 / g2.norm(), g1["tall"] / g1["tall"].norm(), atol=1e-2)
    nesterov = g2 + 0.9 * (0.9 * g1["tall"] + g2)
    torch.testing.assert_close(tall.detach(), w1["tall"] * decay + step["tall"] * orthogonalize(nesterov),
                               rtol=1e-4, atol=1e-6)


def test_an_unknown_optimizer_name_is_refused() -> None:
    with pytest.raises(ValueError, match="adamw or muon"):
        build_optimizer(_model(), lr=1e-3, name="sgd")


@pytest.mark.slow
def test_gpt2_train_with_muon_learns_and_resumes_bit_for_bit(tmp_path: Path, one_thread: None) -> None:
    data = make_char_data(tmp_path / "data")
    args = tiny_args(data, tmp_path / "run", steps=10, **{"optim.name": "muon"})
    main(tiny_args(data, tmp_path / "whole", steps=10, **{"optim.name": "muon"}))  # `gpt2 train`, in-process
    losses = train_losses(tmp_path / "whole")
    assert losses[10] < losses[1] - 0.3  # it learns (steps count from 1)
    main([*args, "--train.stop_after_steps=4"])
    main([*args, "--resume=true"])
    assert train_losses(tmp_path / "run") == losses  # exact float equality at every step


def test_resume_with_another_optimizer_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                              one_thread: None) -> None:
    data = make_char_data(tmp_path / "data")
    out = tmp_path / "run"
    args = tiny_args(data, out, steps=6)  # AdamW
    main([*args, "--train.stop_after_steps=2"])
    config = out / "latest" / "train_config.json"
    saved = json.loads(config.read_text())
    del saved["optim"]["name"], saved["train"]["max_passes"]  # as a version before both existed saved it
    config.write_text(json.dumps(saved))
    refused = fails_in_one_line([*args, "--optim.name=muon", "--resume=true"], capsys)
    assert "--optim.name muon (saved adamw)" in refused
    forced = fails_in_one_line([*args, "--optim.name=muon", "--resume=true", "--allow_changes=true"], capsys)
    assert forced.startswith("gpt2: error: --resume: the checkpoint's optimizer state is for another "
                             "--optim.name")
    main([*args, "--resume=true"])  # the old run still continues as it was
    assert max(train_losses(out)) == 6
