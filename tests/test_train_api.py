"""The original project's API: train_model / evaluate_model over torch DataLoaders."""

from __future__ import annotations

import pytest
import torch

from gpt2 import GPT2, GPT2Config
from gpt2.data.loaders import create_dataloader_v1
from gpt2.loss import cross_entropy_loss
from gpt2.tokenizers import get_tokenizer
from gpt2.training.trainer import calc_loss_batch, calc_loss_loader, evaluate_model, train_model
from train_helpers import TEXT

pytestmark = pytest.mark.usefixtures("one_thread")


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


class _ListBatches:
    """A BatchSource over a fixed list of batches, in order."""

    def __init__(self, batches: list) -> None:
        self.batches, self.step = batches, 0

    def next_batch(self) -> tuple:
        self.step += 1
        return self.batches[self.step - 1]

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]


def test_trainer_and_train_model_give_identical_weights(tmp_path) -> None:
    """The engine behind `gpt2 train` is the original loop plus bookkeeping: with a constant
    learning rate and no clipping, the same batches give bit-identical weights."""
    from gpt2.training import RunConfig, Trainer
    from gpt2.training.config import CheckpointSection, EvalSection, OptimSection, SystemSection, TrainSection
    from gpt2.training.optim import build_optimizer

    tokenizer = get_tokenizer("char", text=TEXT)
    loader = create_dataloader_v1(TEXT[:3000], tokenizer, batch_size=4, max_length=32, stride=32,
                                  shuffle=False)
    batches = list(loader)
    cfg_model = GPT2Config(vocab_size=tokenizer.vocab_size, context_length=32, emb_dim=32, n_heads=2,
                           n_layers=2, drop_rate=0.0)
    torch.manual_seed(0)
    ours, theirs = GPT2(cfg_model), GPT2(cfg_model)
    theirs.load_state_dict(ours.state_dict())
    run = RunConfig(optim=OptimSection(name="adamw", lr=3e-3, min_lr=3e-3, warmup_steps=0, grad_clip=0.0,
                                       beta2=0.95, impl="foreach"),
                    train=TrainSection(max_steps=len(batches), batch_size=4, out_dir=str(tmp_path)),
                    eval=EvalSection(interval=0, final_full=False, sample_tokens=0),
                    checkpoint=CheckpointSection(keep_best=False),
                    system=SystemSection(device="cpu", dtype="float32", progress=False))
    Trainer(run, ours, _ListBatches(batches), lambda n: batches[:2], tokenizer).fit()
    optimizer = build_optimizer(theirs, lr=3e-3, weight_decay=0.1, impl="foreach")
    train_model(theirs, batches, batches[:2], optimizer, "cpu", num_epochs=1, eval_freq=len(batches),
                eval_iter=1, start_context="Fi", tokenizer=tokenizer)
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(ours.tok_emb.weight, GPT2(cfg_model).tok_emb.weight)
