"""`gpt2 train` / `gpt2 eval` end to end on a tiny char corpus, and the errors caught before training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from gpt2 import GPT2
from gpt2.checkpoint import load_training_state
from gpt2.cli import main
from train_helpers import TEXT, fails, make_char_data, tiny_args, train_losses


def test_run_writes_checkpoints_metrics_plot_and_summary(run: tuple[Path, str]) -> None:
    out, stdout = run
    for name in ("latest", "best"):
        model = GPT2.from_pretrained(out / name)
        assert model.cfg.n_layers == 2 and model.cfg.vocab_size == 34  # 33 chars + <|endoftext|>
    assert load_training_state(out / "latest")["step"] == 12
    for name in ("gpt2_tokenizer.json", "train_config.json"):
        assert (out / "latest" / name).exists()
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val_loss" in r]
    assert [r["step"] for r in val] == [4, 8, 12]
    assert all(r["val_perplexity"] == pytest.approx(torch.tensor(r["val_loss"]).exp().item(), rel=1e-6)
               for r in val)
    assert all(isinstance(r["sample"], str) and r["sample"] for r in val)
    losses = train_losses(out)
    assert sorted(losses) == list(range(1, 13)) and losses[12] < losses[1]
    assert any("full_val_loss" in r for r in rows)
    for label in ("best val loss", "val loss (whole split)", "tokens seen", "wall time", "checkpoint"):
        assert label in stdout


def test_help_documents_every_option(capsys: pytest.CaptureFixture) -> None:
    from dataclasses import fields

    from gpt2.training.config import RunConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for section in fields(RunConfig):
        for f in fields(section.default_factory()):
            assert f"--{section.name}.{f.name}" in text
    assert "--resume" in text and "--config" in text


def test_config_file_and_overrides(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("optim:\n  lr: 0.5\ntrain:\n  max_steps: 2\n  batch_size: 2\n")
    args = [a for a in tiny_args(data, tmp_path / "out") if "max_steps" not in a and "batch" not in a]
    main([args[0], "--config", str(config), *args[1:], "--optim.lr=0.002"])
    saved = json.loads((tmp_path / "out" / "latest" / "train_config.json").read_text())
    assert saved["optim"]["lr"] == 0.002  # the command line wins over the file
    assert saved["train"]["max_steps"] == 2 and saved["train"]["batch_size"] == 2


def test_toml_config_file(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("tomllib")
    config = tmp_path / "run.toml"
    config.write_text('[optim]\nlr = 2.5e-3\n\n[eval]\nprompt = "All: "\n')
    args = tiny_args(data, tmp_path / "out", steps=2)
    main([args[0], "--config", str(config), *[a for a in args[1:] if "optim.lr" not in a]])
    saved = json.loads((tmp_path / "out" / "latest" / "train_config.json").read_text())
    assert saved["optim"]["lr"] == 2.5e-3 and saved["eval"]["prompt"] == "All: "
    main([*args, "--eval.prompt=A = b", "--eval.sample_tokens=0", "--overwrite=true"])  # never read as TOML
    saved = json.loads((tmp_path / "out" / "latest" / "train_config.json").read_text())
    assert saved["eval"]["prompt"] == "A = b"


@pytest.mark.parametrize(("extra", "message"), [
    ({"train.context_length": 64}, "longer than the model's context_length"),
    ({"train.batch_size": 6, "train.grad_accum_steps": 4}, "not divisible"),
    ({"system.dtype": "fp16"}, "fp16 needs a CUDA GPU"),
    ({"model.vocab_size": 10}, "tokenizer has 34 ids"),
    ({"model.init": "/nonexistent/ckpt"}, "no such directory"),
    ({"eval.prompt": "Q~"}, "--eval.prompt 'Q~' cannot be encoded"),
])
def test_inconsistent_settings_fail_before_training(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                    extra: dict, message: str) -> None:
    err = fails(tiny_args(data, tmp_path, **extra), capsys)
    assert message in err
    assert not (tmp_path / "latest").exists()


def test_missing_or_mismatched_shards(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert "gpt2 prepare" in fails(tiny_args(tmp_path / "nowhere", tmp_path / "o1"), capsys)
    broken = shutil.copytree(data, tmp_path / "broken")
    (broken / "val_000.bin").unlink()
    assert "val_000.bin" in fails(tiny_args(broken, tmp_path / "o2"), capsys)
    other = make_char_data(tmp_path / "other", text="completely different letters: xyz " * 50)
    shutil.rmtree(broken / "tokenizer")
    shutil.copytree(other / "tokenizer", broken / "tokenizer")
    shutil.copy(data / "val_000.bin", broken / "val_000.bin")
    assert "different tokenizer" in fails(tiny_args(broken, tmp_path / "o3"), capsys)


def test_resume_without_checkpoint_and_tokenizer_mismatch(run: tuple[Path, str], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    other = make_char_data(tmp_path / "other", text=TEXT.upper())
    err = fails([*tiny_args(other, tmp_path / "fresh"), "--resume=true"], capsys)
    assert "no checkpoint" in err
    err = fails(tiny_args(other, tmp_path / "ft", **{"model.init": run[0] / "latest"}), capsys)
    assert "tokenizer differs" in err


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    main(tiny_args(data, tmp_path, steps=20, **{"train.stop_after_steps": 3}))
    capsys.readouterr()
    manifest = (tmp_path / "latest" / "gpt2_checkpoint.json").read_text()
    with pytest.raises(SystemExit):
        main([*tiny_args(data, tmp_path, steps=20, **{"optim.lr": 1e30, "optim.grad_clip": 0}),
              "--resume=true", "--allow_changes=true"])
    lines = capsys.readouterr().err.strip().splitlines()
    note, err = lines[0], lines[-1]  # the changes first, the one error line last
    assert "changed for this resume: --optim.grad_clip 0.0 (saved 1.0)" in note
    assert "loss became" in err and "at step" in err and "lower --optim.lr" in err and "float32" in err
    assert (tmp_path / "latest" / "gpt2_checkpoint.json").read_text() == manifest  # untouched
    assert load_training_state(tmp_path / "latest")["step"] == 3


@pytest.mark.parametrize("config", sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_configs_parse(config: Path, capsys: pytest.CaptureFixture) -> None:
    """Every file in configs/ names only real options with valid values."""
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "optim:" in printed and "max_steps:" in printed


def test_a_new_run_never_silently_replaces_another(data: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    main(tiny_args(data, out, steps=2))
    before = (out / "latest" / "model.safetensors").read_bytes()
    err = fails(tiny_args(data, out, steps=2, **{"train.seed": 99}), capsys)
    assert "holds a run already" in err and "--resume true" in err and "--overwrite true" in err
    assert (out / "latest" / "model.safetensors").read_bytes() == before  # untouched
    main([*tiny_args(data, out, steps=2, **{"train.seed": 99}), "--overwrite=true"])
    assert (out / "latest" / "model.safetensors").read_bytes() != before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # the old run is gone


def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(data: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    main(tiny_args(data, out, steps=2))
    before = (out / "latest" / "model.safetensors").read_bytes()
    # diverges at once (lr 1e9 -> inf loss) before any checkpoint of the new run exists
    diverging = tiny_args(data, out, steps=4, **{"optim.lr": 1e30, "optim.grad_clip": 0})
    fails([*diverging, "--overwrite=true"], capsys)
    assert (out / "latest" / "model.safetensors").read_bytes() == before


def test_resume_refuses_changes_that_alter_the_result_and_says_where_it_resumed(
        data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    main(tiny_args(data, out, steps=4, **{"train.stop_after_steps": 2}))
    capsys.readouterr()
    err = fails([*tiny_args(data, out, steps=4, **{"optim.lr": 1e-3}), "--resume=true"], capsys)
    assert "--optim.lr 0.001 (saved 0.003)" in err and "--allow_changes true" in err
    main([*tiny_args(data, out, steps=4, **{"eval.sample_tokens": 0}), "--resume=true"])
    err = capsys.readouterr().err
    assert "resumed from" in err and "at step 2 of 4" in err and "--eval.sample_tokens 0 (saved 8)" in err
    rows = (out / "metrics.jsonl").read_text()
    main([*tiny_args(data, out, steps=4), "--resume=true"])  # finished: says so, writes nothing
    assert "already finished at step 4" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_text() == rows


def test_resume_keeps_the_saved_seed(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    main(tiny_args(data, out, steps=4, **{"train.stop_after_steps": 2}))
    main([*tiny_args(data, out, steps=4, **{"train.seed": 8}), "--resume=true", "--allow_changes=true"])
    assert "continues with its saved seed 7" in capsys.readouterr().err
    saved = json.loads((out / "latest" / "train_config.json").read_text())
    assert saved["train"]["seed"] == 7  # the record tells the truth


@pytest.mark.parametrize(("option", "value", "message"), [
    ("eval.sampling.temperature", "-1", "temperature must be"),
    ("eval.sampling.top_k", "-3", "top_k must be"),
    ("eval.batches", "0", "--eval.batches must be positive"),
    ("checkpoint.interval", "-1", "--checkpoint.interval must be >= 0"),
    ("train.max_seconds", "-1", "--train.max_seconds must be >= 0"),
    ("train.stop_after_steps", "-1", "--train.stop_after_steps must be >= 0"),
    ("train.grad_accum_steps", "0", "--train.grad_accum_steps must be positive"),
    ("train.log_interval", "0", "--train.log_interval must be positive"),
    ("optim.warmup_steps", "-5", "--optim.warmup_steps must be >= 0"),
    ("eval.batch_size", "0", "--eval.batch_size must be positive"),
    ("system.threads", "-1", "--threads must be 0"),
    ("system.dtype", "fp8", "unknown dtype 'fp8'"),
])
def test_every_setting_is_checked_before_any_work(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                  option: str, value: str, message: str) -> None:
    err = fails([*tiny_args(data, tmp_path / "out"), f"--{option}={value}"], capsys)
    assert message in err and not (tmp_path / "out").exists()


def test_a_new_run_that_fails_before_its_first_checkpoint_leaves_nothing(
        data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    fails(tiny_args(data, out, steps=4, **{"optim.lr": 1e30, "optim.grad_clip": 0}), capsys)
    assert not out.exists()  # no metrics.jsonl or tensorboard/ that would look like a run
