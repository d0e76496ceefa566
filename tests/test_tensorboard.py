"""TensorBoard logging, when tensorboard is installed (it is in the dev extras)."""

from pathlib import Path

import pytest

from gpt2.cli import main
from train_helpers import make_char_data, tiny_args, train_losses

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def test_a_run_resumed_twice_writes_one_event_file_with_the_scalars_of_metrics(tmp_path: Path, one_thread):
    """`gpt2 train` (in this process: three torch imports would dominate), stopped after steps 2
    and 4 and resumed: one event file whose train_loss is metrics.jsonl's, step for step."""
    data = make_char_data(tmp_path / "data")
    out = tmp_path / "run"
    for extra in ([], ["--resume=true"], ["--resume=true"]):
        main([*tiny_args(data, out, steps=6, **{"train.stop_after_steps": 2}), *extra])
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    events = event_accumulator.EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"train_loss", "lr", "val_loss"} <= set(events.Tags()["scalars"])
    logged = {e.step: e.value for e in events.Scalars("train_loss")}
    expected = train_losses(out)  # metrics.jsonl, the same rows
    assert sorted(logged) == sorted(expected) == list(range(1, 7))
    assert all(abs(logged[s] - expected[s]) < 1e-6 for s in expected)
