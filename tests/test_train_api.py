"""The original project's API: train_model / evaluate_model over torch DataLoaders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from gpt2 import GPT2, GPT2Config
from gpt2.data.loaders import create_dataloader_v1
from gpt2.loss import cross_entropy_loss
from gpt2.tokenizers import get_tokenizer
from gpt2.training.trainer import calc_loss_batch, calc_loss_loader, evaluate_model, train_model
from train_helpers import TEXT


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; more only contend on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def setup() -> tuple:
    torch.manual_seed(123)
    tokenizer = get_tokenizer("char", text=TEXT)
    text = TEXT[:3000]
    split = int(0.9 * len(text))
    train_loader = create_dataloader_v1(text[:split], tokenizer, batch_size=4, max_length=32, stride=32)
    val_loader = create_dataloader_v1(text[split:], tokenizer, batch_size=4, max_length=32, stride=32,
                                      shuffle=False, drop_last=False)
    cfg = GPT2Config(vocab_size=tokenizer.vocab_size, context_length=32, emb_dim=32, n_heads=2, n_layers=2,
                     drop_rate=0.1)
    return GPT2(cfg), train_loader, val_loader, tokenizer


def test_train_model_learns_and_reports(setup: tuple, capsys: pytest.CaptureFixture) -> None:
    model, train_loader, val_loader, tokenizer = setup
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    before = evaluate_model(model, train_loader, val_loader, "cpu", eval_iter=5)
    train_losses, val_losses, tokens_seen = train_model(
        model, train_loader, val_loader, optimizer, "cpu", num_epochs=2, eval_freq=5, eval_iter=5,
        start_context="First Citizen:", tokenizer=tokenizer)
    steps = 2 * len(train_loader)
    assert len(train_losses) == len(val_losses) == len(tokens_seen) == -(-steps // 5)
    assert tokens_seen == [s * 4 * 32 + 4 * 32 for s in range(0, steps, 5)]  # eval after steps 0, 5, ...
    assert val_losses[-1] < before[1] - 0.3 and train_losses[-1] < before[0] - 0.3
    out = capsys.readouterr().out
    assert "Ep 1 (Step 000000): Train loss" in out and out.count("First Citizen:") == 2  # a sample per epoch
    assert model.training  # left in training mode, as the original did


def test_evaluate_model_is_deterministic_and_uses_the_shared_loss(setup: tuple) -> None:
    model, train_loader, val_loader, _ = setup
    first = evaluate_model(model, train_loader, val_loader, "cpu", eval_iter=3)
    assert evaluate_model(model, train_loader, val_loader, "cpu", eval_iter=3)[1] == first[1]  # no dropout
    x, y = next(iter(val_loader))
    model.eval()
    with torch.no_grad():
        assert calc_loss_batch(x, y, model, "cpu").item() == cross_entropy_loss(model(x), y).item()


def test_calc_loss_loader_limits_and_empty_loader(setup: tuple) -> None:
    model, _, val_loader, _ = setup
    model.eval()
    with torch.no_grad():
        one = calc_loss_loader(val_loader, model, "cpu", num_batches=1)
        x, y = next(iter(val_loader))
        assert one == pytest.approx(calc_loss_batch(x, y, model, "cpu").item())
        assert torch.isnan(torch.tensor(calc_loss_loader([], model, "cpu")))
