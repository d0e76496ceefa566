"""The training loop does not wait on the host: one collective per step, host reads of the loss
only at log / evaluation / save steps, the next batch fetched early, and MFU in the metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from gpt2 import GPT2, GPT2Config
from gpt2.training import RunConfig, Trainer
from gpt2.training.config import CheckpointSection, EvalSection, OptimSection, SystemSection, TrainSection
from gpt2.training.distributed import DistInfo, StepSignals
from gpt2.training.mfu import flops_per_step, flops_per_token, gpu_peak_flops, matmul_params, peak_flops
from gpt2.training.prefetch import Prefetcher
from gpt2.training.step_stats import LossReader, Throughput

VOCAB, T, B = 40, 16, 4


class Batches:
    """Deterministic batches: batch k is a pure function of k (like RandomWindowLoader)."""

    def __init__(self, device: str = "cpu") -> None:
        self.step, self.device = 0, device

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.step)
        self.step += 1
        ids = torch.randint(0, VOCAB, (B, T + 1), generator=gen).to(self.device, non_blocking=True)
        return ids[:, :-1], ids[:, 1:]

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]


def _model() -> GPT2:
    torch.manual_seed(0)
    return GPT2(GPT2Config(vocab_size=VOCAB, context_length=T, emb_dim=32, n_heads=2, n_layers=1,
                           drop_rate=0.0))


def _trainer(out: Path, steps: int = 10, info: DistInfo | None = None, log_interval: int = 4,
             device: str = "cpu", dtype: str = "float32") -> Trainer:
    model = _model().to(device)
    train = TrainSection(max_steps=steps, batch_size=B, out_dir=str(out), log_interval=log_interval)
    cfg = RunConfig(train=train,
                    optim=OptimSection(impl="fused", warmup_steps=2),  # fused: no .item() inside AdamW
                    eval=EvalSection(interval=0, batches=1, final_full=False, sample_tokens=0),
                    checkpoint=CheckpointSection(keep_best=False),
                    system=SystemSection(device=device, dtype=dtype, progress=False))
    val = Batches(device)
    return Trainer(cfg, model, Batches(device), lambda n: [val.next_batch() for _ in range(n or 1)],
                   info=info)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_the_host_reads_tensors_only_at_log_eval_and_save_steps(tmp_path: Path, one_thread: None,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = _trainer(tmp_path / "run")
    monkeypatch.setattr(GPT2, "_checks_ids", staticmethod(lambda idx: False))  # as on CUDA
    reads: list[int] = []
    for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def spy(self: torch.Tensor, *args: Any, _original: Any = original) -> Any:
            reads.append(trainer.progress.step)
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, spy)
    trainer.fit()
    monkeypatch.undo()
    # warm-up ends at step 3 (one read starts the steady-state clock); logs at 4 and 8; step 10 is
    # the last: log, evaluation, save. No other step converts a tensor to a Python number.
    assert set(reads) == {3, 4, 8, 10}
    assert reads.count(4) == reads.count(8) == 1  # one read of all the steps since the last


def test_logged_losses_equal_the_reference_and_rows_carry_mfu(tmp_path: Path, one_thread: None) -> None:
    """Every step's loss read in bulk equals the loss computed step by step in the plain way."""
    _trainer(tmp_path / "run", steps=8, log_interval=1).fit()
    trainer = _trainer(tmp_path / "plain", steps=8)
    rows = [r for r in _rows(tmp_path / "run") if "train_loss" in r]
    assert [r["step"] for r in rows] == list(range(1, 9))
    for step in range(1, 9):  # the same steps, read one at a time
        loss, _ = trainer.train_step(trainer._lr())
        trainer.progress.step += 1
        assert loss.item() == rows[step - 1]["train_loss"]
    steady = [r for r in rows if "mfu" in r]
    assert [r["step"] for r in steady] == list(range(4, 9))  # warm-up (steps 1-3) is left out
    assert all(0 < r["mfu"] < 2 and r["tokens_per_s"] > 0 and r["ms_per_step"] > 0 for r in steady)
    summary = [r for r in _rows(tmp_path / "run") if "steady_mfu" in r]
    assert len(summary) == 1 and summary[0]["steady_tokens_per_s"] > 0


def test_one_collective_per_step(tmp_path: Path, one_thread: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ranks, faked: a real gloo group of one process, and an all_reduce that doubles its
    input as an identical second rank would. Each step makes exactly one collective call, and
    the losses equal a one-process run's."""
    _trainer(tmp_path / "one", steps=6).fit()
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        trainer = _trainer(tmp_path / "two", steps=6, info=DistInfo(rank=0, world_size=2))
        calls: list[int] = []

        def all_reduce(tensor: torch.Tensor, op: Any = None, **kw: Any) -> None:
            calls.append(trainer.progress.step)
            tensor.mul_(2)

        monkeypatch.setattr(dist, "all_reduce", all_reduce)
        trainer.fit()
    finally:
        dist.destroy_process_group()
    assert calls == [1, 2, 3, 4, 5, 6, 6]  # one per step, plus the validation loss at the end
    one = {r["step"]: r["train_loss"] for r in _rows(tmp_path / "one") if "train_loss" in r}
    two = {r["step"]: r["train_loss"] for r in _rows(tmp_path / "two") if "train_loss" in r}
    assert one.keys() == two.keys() and all(math.isclose(one[s], two[s], rel_tol=1e-6) for s in one)


def test_step_signals_stop_every_rank_one_step_later(monkeypatch: pytest.MonkeyPatch) -> None:
    signals = StepSignals(DistInfo(rank=0, world_size=2))
    monkeypatch.setattr(dist, "all_reduce", lambda t, op=None: t.mul_(2))  # the other rank agrees
    loss, stop, late = signals.exchange(torch.tensor(3.0), stop=True, out_of_time=False)
    assert loss.item() == 3.0 and not stop and not late  # step k's flags are read at step k+1
    loss, stop, late = signals.exchange(torch.tensor(5.0), stop=False, out_of_time=True)
    assert loss.item() == 5.0 and stop and not late
    assert StepSignals(DistInfo()).exchange(torch.tensor(1.0), True, False)[1]  # one process: at once


def test_prefetched_batches_keep_the_stream_and_its_state() -> None:
    plain, ahead = Batches(), Prefetcher(Batches())
    for _ in range(3):
        ahead.prefetch()
        assert torch.equal(ahead.next_batch()[0], plain.next_batch()[0])
    ahead.prefetch()  # holds batch 3
    saved = ahead.state_dict()
    assert saved == {"step": 3} and ahead.source.step == 4  # the position before the batch it holds
    resumed = Prefetcher(Batches())
    resumed.load_state_dict(saved)
    assert torch.equal(resumed.next_batch()[0], ahead.next_batch()[0])  # both batch 3
    assert ahead.state_dict() == {"step": 4}


def test_divergence_is_found_at_the_next_read_with_its_step() -> None:
    reader = LossReader()
    for step, loss in enumerate([2.0, math.nan, 1.0], start=1):
        reader.record(step, torch.tensor(loss), torch.tensor(0.5))
    reading = reader.read(torch.device("cpu"))
    assert reading.step == 3 and reading.loss == 1.0 and reading.grad_norm == 0.5
    assert reading.first_bad is not None and reading.first_bad[0] == 2 and math.isnan(reading.first_bad[1])


def test_nan_is_caught_before_a_save_within_a_log_interval(tmp_path: Path, one_thread: None) -> None:
    """log_interval 4, checkpoint every 2 steps: a NaN at step 1 is read before step 2's save."""
    from gpt2.training import TrainingDivergedError

    trainer = _trainer(tmp_path / "run", steps=10)
    trainer.cfg.checkpoint.interval = 2
    trainer.cfg.optim.grad_clip = 0.0
    with torch.no_grad():
        trainer.raw_model.tok_emb.weight[0, 0] = math.inf
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at step 1 .*seen at step 2"):
        trainer.fit()
    assert not (tmp_path / "run" / "latest").exists()


def test_throughput_leaves_out_warm_up_and_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr("gpt2.training.step_stats.time.perf_counter", lambda: now[0])
    speed = Throughput(tokens_per_step=1000, flops_per_token=6.0, world_size=2, peak=1e3, first_step=0,
                       warmup_steps=2)
    now[0] = 5.0  # compilation
    assert speed.due(2) and speed.window(2) is None
    now[0] = 7.0
    figures = speed.window(4)  # 2 steps in 2 s
    assert figures == {"ms_per_step": 1000.0, "tokens_per_s": 1000.0, "mfu": 1000.0 * 6 / 2 / 1e3}
    now[0] = 100.0  # an evaluation
    speed.restart(4)
    now[0] = 102.0
    speed.window(6)
    assert speed.summary()["ms_per_step"] == 1000.0  # 4 steps in 4 s; the evaluation is not counted


def test_flops_formula_and_peaks() -> None:
    small = GPT2Config.from_preset("gpt2")
    assert matmul_params(small) == 12 * 12 * 768**2 + 50257 * 768  # 123.5M: no embeddings of positions
    assert flops_per_token(small, 1024) == 6 * matmul_params(small) + 12 * 12 * 1024 * 768
    assert flops_per_step(small, 16, 1024) == 16 * 1024 * flops_per_token(small, 1024)
    assert gpu_peak_flops("NVIDIA H100 80GB HBM3") == 989e12 and gpu_peak_flops("NVIDIA H200") == 989e12
    assert gpu_peak_flops("NVIDIA H100 PCIe") == 756e12 and gpu_peak_flops("NVIDIA L4") == 121e12
    assert gpu_peak_flops("NVIDIA A100-SXM4-80GB") == 312e12 and gpu_peak_flops("Some GPU") is None
    assert (peak_flops(torch.device("cpu"), torch.float32) or 0) > 1e8  # a measured ceiling


def test_peak_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPT2_PEAK_TFLOPS", "100")
    assert peak_flops(torch.device("cpu")) == 100e12
