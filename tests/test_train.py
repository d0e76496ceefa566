"""`gpt2 train` / `gpt2 eval` end to end on a tiny char corpus, and the errors caught before training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from gpt2 import GPT2
from gpt2.checkpoint import load_training_state
from gpt2.cli import main
from train_helpers import TEXT, make_char_data, run_gpt2, tiny_args, train_losses


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_char_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One finished 12-step run in a real `gpt2 train` process: (run folder, stdout)."""
    out = tmp_path_factory.mktemp("run")
    result = run_gpt2(tiny_args(data, out, steps=12, **{"eval.interval": 4}))
    assert result.returncode == 0, result.stderr
    return out, result.stdout


def _fails(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """Run `gpt2 ...` in this process; expect exit code 1 and return the one error line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("gpt2: error:") and "\n" not in err and "Traceback" not in err
    return err


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


def test_eval_matches_the_final_validation_loss(run: tuple[Path, str], data: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    out, _ = run
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    final = rows[-1]["full_val_loss"]
    main(["eval", "--checkpoint", str(out / "latest"), "--data", str(data), "--device", "cpu",
          "--dtype", "float32", "--json_output", "true"])
    result = json.loads(capsys.readouterr().out)
    assert result["loss"] == pytest.approx(final, abs=1e-5)
    # bits per byte, logged by training and reported by eval, agree: the same text, the same windows
    assert result["bits_per_byte"] == pytest.approx(rows[-1]["full_val_bits_per_byte"], abs=1e-5)
    assert any("val_bits_per_byte" in r for r in rows)
    assert result["perplexity"] == pytest.approx(torch.tensor(result["loss"]).exp())


def test_eval_on_a_text_file_equals_eval_on_its_shards(run: tuple[Path, str], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    """One windower: a text file is encoded and windowed exactly as `gpt2 prepare` + shards."""
    from gpt2.data.prepare import PrepareOptions, prepare

    ckpt = str(run[0] / "latest")
    text = tmp_path / "held_out.txt"
    text.write_text(TEXT[:500])
    prepare([str(text)], tmp_path / "shards", tokenizer=ckpt, options=PrepareOptions(val_ratio=0, workers=1,
                                                                                    progress=False))
    results = []
    for data, split in ((text, "val"), (tmp_path / "shards", "train")):
        main(["eval", "--checkpoint", ckpt, "--data", str(data), "--split", split, "--device", "cpu",
              "--dtype", "float32", "--threads", "1", "--context_length", "16", "--json_output", "true"])
        results.append(json.loads(capsys.readouterr().out))
    assert results[0] == results[1] and results[0]["tokens"] == 500 // 16 * 16  # 500 chars + end-of-text


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
    err = _fails(tiny_args(data, tmp_path, **extra), capsys)
    assert message in err
    assert not (tmp_path / "latest").exists()


def test_missing_or_mismatched_shards(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert "gpt2 prepare" in _fails(tiny_args(tmp_path / "nowhere", tmp_path / "o1"), capsys)
    broken = shutil.copytree(data, tmp_path / "broken")
    (broken / "val_000.bin").unlink()
    assert "val_000.bin" in _fails(tiny_args(broken, tmp_path / "o2"), capsys)
    other = make_char_data(tmp_path / "other", text="completely different letters: xyz " * 50)
    shutil.rmtree(broken / "tokenizer")
    shutil.copytree(other / "tokenizer", broken / "tokenizer")
    shutil.copy(data / "val_000.bin", broken / "val_000.bin")
    assert "different tokenizer" in _fails(tiny_args(broken, tmp_path / "o3"), capsys)


def test_resume_without_checkpoint_and_tokenizer_mismatch(run: tuple[Path, str], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    other = make_char_data(tmp_path / "other", text=TEXT.upper())
    err = _fails([*tiny_args(other, tmp_path / "fresh"), "--resume=true"], capsys)
    assert "no checkpoint" in err
    err = _fails(tiny_args(other, tmp_path / "ft", **{"model.init": run[0] / "latest"}), capsys)
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


def test_init_from_our_checkpoint_and_from_hugging_face(run: tuple[Path, str], data: Path,
                                                        tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    main(tiny_args(data, tmp_path / "ours", steps=2, **{"model.init": run[0] / "latest"}))
    start = GPT2.from_pretrained(run[0] / "latest")
    tuned = GPT2.from_pretrained(tmp_path / "ours" / "latest")
    assert tuned.cfg == start.cfg and not torch.equal(tuned.tok_emb.weight, start.tok_emb.weight)

    hf_dir = tmp_path / "hf"
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=48, n_positions=32, n_embd=32, n_layer=2, n_head=2)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(hf_dir)
    main(tiny_args(data, tmp_path / "hf_run", steps=2, **{"model.init": hf_dir, "model.drop_rate": 0.0}))
    tuned = GPT2.from_pretrained(tmp_path / "hf_run" / "latest")
    assert tuned.cfg.vocab_size == 48 and tuned.cfg.drop_rate == 0.0
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf_run" / "latest")
    torch.testing.assert_close(back.transformer.wte.weight, tuned.tok_emb.weight)


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


@pytest.mark.parametrize("config", sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_configs_parse(config: Path, capsys: pytest.CaptureFixture) -> None:
    """Every file in configs/ names only real options with valid values."""
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "optim:" in printed and "max_steps:" in printed


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


def test_loaded_model_refuses_shape_overrides(run: tuple[Path, str], data: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    init = {"model.init": run[0] / "latest"}
    shape = {"model.n_layers": 4, "model.emb_dim": 64}
    err = _fails(tiny_args(data, tmp_path / "a", **init, **shape), capsys)
    assert "--model.emb_dim 64, --model.n_layers 4 cannot change the model" in err
    assert "(it has emb_dim 32, n_layers 2)" in err
    err = _fails(tiny_args(data, tmp_path / "b", **init, **{"model.context_length": 16}), capsys)
    assert "--model.context_length 16" in err and "--train.context_length" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_loaded_model_takes_dropout_and_attention_path(run: tuple[Path, str], tmp_path: Path) -> None:
    from gpt2.attention import MultiHeadAttention, explicit_attention
    from gpt2.tokenizers import load_tokenizer
    from gpt2.training.config import ModelSection, RunConfig
    from gpt2.training.launch import build_model
    from gpt2.training.plan import model_config

    source = str(run[0] / "latest")
    cfg = RunConfig(model=ModelSection(init=source, n_layers=2, drop_rate=0.3, attention="explicit"))
    model_cfg = model_config(cfg, source, load_tokenizer(source))
    model = build_model(model_cfg, source, torch.device("cpu"))
    assert model.cfg == model_cfg and model.training
    assert model.cfg.drop_rate == 0.3 and model.cfg.attention == "explicit"
    assert all(m.p == 0.3 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    attention = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    assert attention and all(m.attn_dropout == 0.3 and m.attend is explicit_attention for m in attention)
    torch.testing.assert_close(model.state_dict(), GPT2.from_pretrained(source).state_dict())  # same weights


def _bpe_tokenizer_files(directory: Path) -> None:
    """Replace a checkpoint's tokenizer by GPT-2's vocab.json + merges.txt, as a Hugging Face
    directory holds it (no gpt2_tokenizer.json)."""
    from gpt2.tokenizers import GPT2BPETokenizer

    for name in ("gpt2_tokenizer.json", "gpt2_checkpoint.json", "char_vocab.json"):
        (directory / name).unlink(missing_ok=True)
    for name, data in GPT2BPETokenizer()._files().items():
        (directory / name).write_bytes(data)


def test_init_checks_a_hugging_face_style_tokenizer(run: tuple[Path, str], data: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    init = shutil.copytree(run[0] / "latest", tmp_path / "hf_tok")
    _bpe_tokenizer_files(init)
    err = _fails(tiny_args(data, tmp_path / "out", **{"model.init": init}), capsys)
    assert "tokenizer differs" in err


def test_eval_names_the_file_and_offset_of_a_bad_byte(run: tuple[Path, str], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    text = tmp_path / "latin1.txt"
    text.write_bytes("First Citizen: caf\u00e9".encode("latin-1"))
    err = _fails(["eval", "--checkpoint", str(run[0] / "latest"), "--data", str(text), "--device", "cpu"],
                 capsys)
    assert str(text) in err and "byte 18 is not valid UTF-8 (0xe9)" in err


def test_eval_finds_the_tokenizer_as_generate_does(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from gpt2 import GPT2, GPT2Config
    from gpt2.checkpoint import save_checkpoint
    from gpt2.tokenizers import GPT2BPETokenizer

    torch.manual_seed(0)
    model = GPT2(GPT2Config(vocab_size=50257, context_length=16, emb_dim=8, n_heads=2, n_layers=1))
    save_checkpoint(tmp_path / "bare", model)  # no tokenizer: GPT-2's vocab size, so GPT-2's BPE
    text = tmp_path / "text.txt"
    text.write_text("Hello world, hello again. " * 4)
    args = ["--data", str(text), "--device", "cpu", "--json_output", "true"]
    main(["eval", "--checkpoint", str(tmp_path / "bare"), *args])
    captured = capsys.readouterr()
    assert "GPT-2's BPE is used" in captured.err
    # the text's ids and end-of-text, in whole windows of the model's 16 positions
    assert json.loads(captured.out)["tokens"] == len(GPT2BPETokenizer().encode(text.read_text())) // 16 * 16
    hf = shutil.copytree(tmp_path / "bare", tmp_path / "hf")
    _bpe_tokenizer_files(hf)  # vocab.json + merges.txt only
    main(["eval", "--checkpoint", str(hf), *args])
    assert json.loads(capsys.readouterr().out)["tokens"] == json.loads(captured.out)["tokens"]


def test_eval_resolves_the_tokenizer_before_reading_weights(run: tuple[Path, str], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run[0] / "latest" / "config.json", bare / "config.json")  # vocab 34, no tokenizer, no weights
    text = tmp_path / "t.txt"
    text.write_text(TEXT[:200])
    err = _fails(["eval", "--checkpoint", str(bare), "--data", str(text), "--device", "cpu"], capsys)
    assert "holds no tokenizer" in err and "vocab_size 34" in err


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


def test_a_new_run_never_silently_replaces_another(data: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    main(tiny_args(data, out, steps=2))
    before = (out / "latest" / "model.safetensors").read_bytes()
    err = _fails(tiny_args(data, out, steps=2, **{"train.seed": 99}), capsys)
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
    _fails([*tiny_args(data, out, steps=4, **{"optim.lr": 1e30, "optim.grad_clip": 0}), "--overwrite=true"],
           capsys)
    assert (out / "latest" / "model.safetensors").read_bytes() == before


def test_resume_refuses_changes_that_alter_the_result_and_says_where_it_resumed(
        data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    main(tiny_args(data, out, steps=4, **{"train.stop_after_steps": 2}))
    capsys.readouterr()
    err = _fails([*tiny_args(data, out, steps=4, **{"optim.lr": 1e-3}), "--resume=true"], capsys)
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
    err = _fails([*tiny_args(data, tmp_path / "out"), f"--{option}={value}"], capsys)
    assert message in err and not (tmp_path / "out").exists()


def test_a_new_run_that_fails_before_its_first_checkpoint_leaves_nothing(
        data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    _fails(tiny_args(data, out, steps=4, **{"optim.lr": 1e30, "optim.grad_clip": 0}), capsys)
    assert not out.exists()  # no metrics.jsonl or tensorboard/ that would look like a run
