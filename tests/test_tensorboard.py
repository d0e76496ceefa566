"""TensorBoard logging, when tensorboard is installed (it is in the dev extras)."""

from pathlib import Path

import pytest

from train_helpers import make_char_data, run_gpt2, tiny_args, train_losses

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def test_a_run_writes_the_same_scalars_to_tensorboard(tmp_path: Path):
    data = make_char_data(tmp_path / "data")
    out = tmp_path / "run"
    result = run_gpt2(tiny_args(data, out, steps=6))
    assert result.returncode == 0, result.stderr
    events = event_accumulator.EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"train_loss", "lr", "val_loss"} <= set(events.Tags()["scalars"])
    logged = {e.step: e.value for e in events.Scalars("train_loss")}
    expected = train_losses(out)  # metrics.jsonl, the same rows
    assert logged.keys() == expected.keys()
    assert all(abs(logged[s] - expected[s]) < 1e-6 for s in expected)



def test_a_resumed_run_keeps_one_event_file_equal_to_metrics(tmp_path: Path):
    data = make_char_data(tmp_path / "data")
    out = tmp_path / "run"
    for extra in ([], ["--resume=true"], ["--resume=true"]):
        result = run_gpt2([*tiny_args(data, out, steps=6, **{"train.stop_after_steps": 2}), *extra])
        assert result.returncode == 0, result.stderr
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    events = event_accumulator.EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    logged = {e.step: e.value for e in events.Scalars("train_loss")}
    assert logged == pytest.approx(train_losses(out)) and sorted(logged) == list(range(1, 7))
