"""The same checks on every device at hand: CPU always, CUDA when there is a GPU (skipped
otherwise). The CUDA graph decoder, the low-precision loss, the training loop with autocast
(and fp16 with its GradScaler) and the skipped id check run here on real hardware."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from gpt2 import GPT2
from gpt2.generation import SamplingOptions
from gpt2.generation.decode import generate_stream
from gpt2.loss import cross_entropy_loss, cross_entropy_reference
from test_hot_loop import _trainer

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=CUDA)]


def _decoders(device: str) -> list[str]:
    return ["dynamic", "static", "cuda_graph"] if device == "cuda" else ["dynamic", "static"]


@pytest.mark.parametrize("device", DEVICES)
def test_every_decoder_gives_the_same_greedy_tokens_in_float32(device: str) -> None:
    torch.manual_seed(0)
    model = GPT2(tiny_config(n_layers=3)).to(device).eval()
    idx = torch.randint(0, model.cfg.vocab_size, (2, 5), device=device)
    mask = torch.ones(2, 5, dtype=torch.long, device=device)
    mask[1, :2] = 0
    runs = {name: list(generate_stream(model, idx, 40, SamplingOptions(temperature=0), attention_mask=mask,
                                       decoder=name, window_stride=4))
            for name in _decoders(device)}  # 5 + 40 > context 32: the window slides too
    reference = runs.pop("dynamic")
    for steps in runs.values():
        assert len(steps) == len(reference)
        for a, b in zip(reference, steps, strict=True):
            assert torch.equal(a.tokens, b.tokens)
            torch.testing.assert_close(a.logits, b.logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_loss_agrees_with_the_definition(device: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    logits = (3 * torch.randn(4, 9, 1000, device=device)).to(dtype).requires_grad_()
    targets = torch.randint(0, 1000, (4, 9), device=device)
    targets[0, :3] = -100
    fast = cross_entropy_loss(logits, targets)
    (grad_fast,) = torch.autograd.grad(fast, logits)
    ref = cross_entropy_reference(logits, targets)
    (grad_ref,) = torch.autograd.grad(ref, logits)
    assert fast.dtype == torch.float32 and grad_fast.dtype == dtype
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_fast.float(), grad_ref.float(), rtol=2e-2, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_the_id_range_is_checked_in_forward_on_the_cpu_only(device: str) -> None:
    idx = torch.zeros(1, 3, dtype=torch.long, device=device)
    assert GPT2._checks_ids(idx) == (device == "cpu")


@pytest.mark.parametrize("dtype", ["float32", *(pytest.param(d, marks=CUDA) for d in ("bf16", "fp16"))])
def test_training_on_the_device_reports_speed(tmp_path: Path, dtype: str) -> None:
    """A few steps of the engine on the GPU (fp16: with the GradScaler), or float32 on the CPU."""
    device = "cpu" if dtype == "float32" else "cuda"
    summary = _trainer(tmp_path / "run", steps=8, log_interval=2, device=device, dtype=dtype).fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows if "train_loss" in r]
    assert len(losses) == 4 and all(loss == loss for loss in losses) and losses[-1] < losses[0]
    assert summary["tokens_per_s"] > 0 and summary["ms_per_step"] > 0
    assert [r["step"] for r in rows if "tokens_per_s" in r] == [4, 6, 8]  # after warm-up (3 steps)
