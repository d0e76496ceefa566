"""AdamW parameter groups, the three AdamW kernels, and the warmup-cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch

from gpt2 import GPT2, GPT2Config
from gpt2.training.optim import adamw_reference_step, build_optimizer, lr_at, param_groups, set_lr


def _model() -> GPT2:
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=50, context_length=16, emb_dim=16, n_heads=2, n_layers=2, drop_rate=0.0)
    return GPT2(cfg)


def test_groups_split_matrices_from_biases_and_gains() -> None:
    model = _model()
    decay, no_decay = param_groups(model, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    ids = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert len(ids) == len(set(ids))  # the tied embedding / head weight appears once
    assert set(ids) == {id(p) for p in model.parameters()}
    assert id(model.tok_emb.weight) in {id(p) for p in decay["params"]}
    assert id(model.blocks[0].norm1.weight) in {id(p) for p in no_decay["params"]}


def _train(impl: str) -> list[torch.Tensor]:
    """Three AdamW steps with torch's kernel `impl`, or the written-out reference ("reference")."""
    model = _model()
    opt = build_optimizer(model, lr=1e-2, weight_decay=0.1, impl="loop" if impl == "reference" else impl)
    state: dict[int, dict] = {}
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randint(0, 50, (2, 16), generator=gen)
        loss = model(x).logsumexp(-1).mean()
        opt.zero_grad()
        loss.backward()
        if impl == "reference":
            adamw_reference_step(param_groups(model, 0.1), state, lr=1e-2)
        else:
            opt.step()
    return [p.detach().clone() for p in model.parameters()]


def test_every_adamw_kernel_agrees_with_the_written_out_step() -> None:
    reference = _train("reference")
    assert not torch.equal(reference[0], _model().tok_emb.weight)  # the steps moved the weights
    for impl in ("loop", "foreach", "fused"):
        for got, want in zip(_train(impl), reference, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)  # lr 1e-2: steps of ~1e-2


def test_weight_decay_only_touches_the_decay_group() -> None:
    model = _model()
    opt = build_optimizer(model, lr=0.1, weight_decay=0.5, impl="loop")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only decay can move a parameter
    opt.step()
    for name, p in model.named_parameters():
        moved = not torch.equal(p, before[name])
        assert moved == (p.dim() >= 2 and bool(before[name].abs().sum() > 0)), name


def test_unknown_impl_is_rejected() -> None:
    with pytest.raises(ValueError, match="optim.impl"):
        build_optimizer(_model(), lr=1e-3, impl="turbo")


def test_schedule_warmup_then_cosine() -> None:
    lr, warm, total, low = 1e-3, 10, 110, 1e-4
    lrs = [lr_at(s, lr, warm, total, low) for s in range(total + 5)]
    assert lrs[0] == pytest.approx(lr / warm)
    assert lrs[warm - 1] == pytest.approx(lr)  # peak at the end of warmup
    assert all(a < b for a, b in zip(lrs[:warm - 1], lrs[1:warm], strict=True))  # rises linearly
    assert lrs[warm] == pytest.approx(lr)
    assert all(a >= b for a, b in zip(lrs[warm:total], lrs[warm + 1:total + 1], strict=True))  # decays
    mid = warm + (total - warm) // 2
    assert lrs[mid] == pytest.approx(low + 0.5 * (lr - low))  # the cosine's midpoint
    assert lrs[total] == low and lrs[-1] == low  # min_lr is reached at step max_steps,
    assert lrs[total - 1] > low  # so the last step trained (max_steps - 1) runs slightly above it
    assert all(math.isfinite(v) and v > 0 for v in lrs)


def test_schedule_without_warmup_starts_at_peak() -> None:
    assert lr_at(0, 1e-3, 0, 100, 0.0) == pytest.approx(1e-3)


def test_set_lr_sets_every_group() -> None:
    opt = build_optimizer(_model(), lr=1.0, impl="foreach")
    set_lr(opt, 0.25)
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25]


def test_set_lr_gives_muon_groups_their_own_rate() -> None:
    opt = build_optimizer(_model(), lr=1e-3, name="muon", muon_lr=0.02)
    set_lr(opt, 0.5e-3, 0.01)  # halfway down the schedule: both rates halved
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.5e-3, 0.5e-3])
    set_lr(opt, 0.25e-3)  # no Muon rate given: every group takes lr
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.25e-3] * 3)
