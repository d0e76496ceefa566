"""The training engine in-process (`gpt2.training.Trainer`), without `gpt2 train`'s launch: any
batch source, `auto` refused until resolved, metrics and progress bar closed on an error; the
autocast and mean-loss helpers it uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from train_helpers import TEXT


class TensorBatches:
    """A batch source over one token tensor: the engine needs only next_batch and its state."""

    def __init__(self, ids: torch.Tensor, batch_size: int, context_length: int) -> None:
        self.ids, self.B, self.T, self.step = ids, batch_size, context_length, 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.step)
        starts = torch.randint(0, self.ids.numel() - self.T - 1, (self.B,), generator=gen)
        self.step += 1
        x = torch.stack([self.ids[s:s + self.T] for s in starts])  # (B, T)
        return x, torch.stack([self.ids[s + 1:s + 1 + self.T] for s in starts])

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]


def _engine(out: Path, batches: type = TensorBatches) -> Any:
    """A Trainer of a 1-layer char model, 8 steps on TEXT drawn by `batches`."""
    from gpt2 import GPT2, GPT2Config
    from gpt2.tokenizers import get_tokenizer
    from gpt2.training import RunConfig, Trainer
    from gpt2.training.config import EvalSection, SystemSection, TrainSection

    tok = get_tokenizer("char", text=TEXT)
    ids = torch.tensor(tok.encode(TEXT))
    torch.manual_seed(0)
    model = GPT2(GPT2Config(vocab_size=tok.vocab_size, context_length=16, emb_dim=32, n_heads=2, n_layers=1))
    cfg = RunConfig(train=TrainSection(max_steps=8, batch_size=4, out_dir=str(out), log_interval=1),
                    eval=EvalSection(interval=4, batches=2, sample_tokens=5),
                    system=SystemSection(device="cpu", dtype="float32", progress=False))
    val = TensorBatches(ids[-400:], 4, 16)
    return Trainer(cfg, model, batches(ids[:-400], 4, 16),
                   lambda n: [val.next_batch() for _ in range(n or 5)], tokenizer=tok)


def test_a_trainer_never_reads_auto_as_float32(tmp_path: Path) -> None:
    """Built without gpt2 train's launch, a Trainer refuses dtype auto instead of guessing."""
    from gpt2.training import RunConfig, Trainer
    from gpt2.training.config import SystemSection

    trainer = _engine(tmp_path)  # float32, given
    auto = RunConfig(train=trainer.cfg.train, system=SystemSection(device="cpu", progress=False))
    with pytest.raises(ValueError, match="dtype 'auto' is not resolved yet"):
        Trainer(auto, trainer.raw_model, trainer.train_batches, lambda n: [])
    assert Trainer(auto, trainer.raw_model, trainer.train_batches, lambda n: [],
                   amp_dtype=torch.bfloat16).amp_dtype is torch.bfloat16


def test_trainer_engine_on_any_batch_source(tmp_path: Path) -> None:
    trainer = _engine(tmp_path)
    summary = trainer.fit()
    assert summary["steps"] == 8 and summary["tokens_seen"] == 8 * 4 * 16
    assert summary["final_val_loss"] < 4.0 and (tmp_path / "latest").is_dir()
    assert len(trainer.progress.history) == 2


class FailingBatches(TensorBatches):
    """Raises at the fourth batch, as a data error or a second Ctrl-C would mid-run."""

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.step == 3:
            raise KeyboardInterrupt
        return super().next_batch()


def test_fit_closes_the_metrics_log_and_progress_bar_on_an_error(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from gpt2.training import engine

    closed = []
    monkeypatch.setattr(engine.MetricsLog, "close", lambda self: closed.append("metrics"))
    make_bar = engine.progress_bar

    def spied_bar(*args: Any) -> Any:
        bar = make_bar(*args)
        close = bar.close
        bar.close = lambda: (closed.append("bar"), close())
        return bar

    monkeypatch.setattr(engine, "progress_bar", spied_bar)
    trainer = _engine(tmp_path, FailingBatches)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert trainer.progress.step == 3
    assert "metrics" in closed and "bar" in closed


def test_autocast_and_mean_loss_helpers() -> None:
    from gpt2 import GPT2, GPT2Config
    from gpt2.loss import cross_entropy_loss, mean_loss
    from gpt2.runtime.device import autocast

    cpu = torch.device("cpu")
    with autocast(cpu, "float32"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(cpu, "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        autocast(cpu, "fp8")
    torch.manual_seed(0)
    model = GPT2(GPT2Config(vocab_size=20, context_length=8, emb_dim=8, n_heads=2, n_layers=1)).eval()
    batches = [(torch.randint(0, 20, (b, 8)), torch.randint(0, 20, (b, 8))) for b in (3, 1)]
    loss, tokens = mean_loss(model, batches)
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    assert tokens == 32 and loss == pytest.approx(cross_entropy_loss(model(x), y).item(), rel=1e-5)
    loss, tokens = mean_loss(model, [])
    assert tokens == 0 and loss != loss  # nan
