"""What a finished `gpt2 train` run is used for: `gpt2 eval` on it (the same loss as its own
validation, text files, its tokenizer) and new runs initialised from it (or from a Hugging Face
model), with the errors each catches first."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from gpt2 import GPT2
from gpt2.cli import main
from train_helpers import TEXT, fails, tiny_args


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

def test_loaded_model_refuses_shape_overrides(run: tuple[Path, str], data: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    init = {"model.init": run[0] / "latest"}
    shape = {"model.n_layers": 4, "model.emb_dim": 64}
    err = fails(tiny_args(data, tmp_path / "a", **init, **shape), capsys)
    assert "--model.emb_dim 64, --model.n_layers 4 cannot change the model" in err
    assert "(it has emb_dim 32, n_layers 2)" in err
    err = fails(tiny_args(data, tmp_path / "b", **init, **{"model.context_length": 16}), capsys)
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
    err = fails(tiny_args(data, tmp_path / "out", **{"model.init": init}), capsys)
    assert "tokenizer differs" in err

def test_eval_names_the_file_and_offset_of_a_bad_byte(run: tuple[Path, str], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    text = tmp_path / "latin1.txt"
    text.write_bytes("First Citizen: caf\u00e9".encode("latin-1"))
    err = fails(["eval", "--checkpoint", str(run[0] / "latest"), "--data", str(text), "--device", "cpu"],
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
    err = fails(["eval", "--checkpoint", str(bare), "--data", str(text), "--device", "cpu"], capsys)
    assert "holds no tokenizer" in err and "vocab_size 34" in err
