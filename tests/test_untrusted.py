"""Untrusted folders: a crafted checkpoint or data folder never makes us read outside it, read
a device or an endless file, or run code from a pickle. Each case is refused with one line."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
from pathlib import Path

import pytest
import torch

import gpt2.checkpoint
from conftest import tiny_config
from gpt2 import GPT2
from gpt2.cli import main
from gpt2.errors import GPT2Error
from gpt2.tokenizers import CharTokenizer, load_tokenizer
from train_helpers import TEXT, make_char_data, tiny_args

pytestmark = pytest.mark.usefixtures("one_thread")
PINNED = ["--device", "cpu", "--dtype", "float32", "--threads", "1"]  # nothing for `auto` to report


class Payload:
    """Unpickling this would create the marker file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _checkpoint(tmp_path: Path, name: str = "ck") -> Path:
    torch.manual_seed(0)
    model = GPT2(tiny_config(vocab_size=CharTokenizer.from_text(TEXT).vocab_size, n_heads=2))
    from gpt2.checkpoint import save_checkpoint

    return save_checkpoint(tmp_path / name, model, tokenizer=CharTokenizer.from_text(TEXT))


def _shard_weights(ckpt: Path, shard_name: str, target: Path) -> None:
    """Turn a checkpoint into a 'sharded' one whose index names `shard_name`, written at `target`."""
    weights = ckpt / "model.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(weights, target)
    tensors = json.loads(json.dumps(list(__import__("safetensors").safe_open(target, "pt").keys())))
    index = {"metadata": {}, "weight_map": {name: shard_name for name in tensors}}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
    (ckpt / "gpt2_checkpoint.json").unlink()  # as a Hugging Face directory would be: no manifest


def _one_line_error(capsys: pytest.CaptureFixture, *args: str) -> str:
    with pytest.raises(SystemExit) as stop:
        main(list(args))
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("gpt2: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.fixture
def opened(monkeypatch) -> list[Path]:
    """Every weight file the loader is asked to read, resolved."""
    paths: list[Path] = []
    real = gpt2.checkpoint.load_file

    def spy(path, *args, **kwargs):
        paths.append(Path(path).resolve())
        return real(path, *args, **kwargs)

    monkeypatch.setattr(gpt2.checkpoint, "load_file", spy)
    return paths


@pytest.mark.parametrize("where", ["dotdot", "absolute", "symlink"])
def test_a_weight_index_cannot_point_outside_the_checkpoint(tmp_path, capsys, opened, where):
    ckpt = _checkpoint(tmp_path)
    outside = tmp_path / "outside" / "x.safetensors"
    name = {"dotdot": "../outside/x.safetensors", "absolute": str(outside), "symlink": "x.safetensors"}[where]
    _shard_weights(ckpt, name, outside)
    if where == "symlink":
        (ckpt / "x.safetensors").symlink_to(outside)
    err = _one_line_error(capsys, "generate", "--checkpoint", str(ckpt), "--prompt", "a", *PINNED)
    assert "model.safetensors.index.json" in err and repr(name) in err
    assert all(p.is_relative_to(ckpt.resolve()) for p in opened)


def test_sharded_checkpoints_inside_the_folder_still_load(tmp_path):
    ckpt = _checkpoint(tmp_path)
    reference = GPT2.from_pretrained(ckpt)
    _shard_weights(ckpt, "model-00001-of-00001.safetensors", ckpt / "model-00001-of-00001.safetensors")
    torch.testing.assert_close(GPT2.from_pretrained(ckpt).state_dict(), reference.state_dict())


def test_transformers_sharded_save_loads(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    hf.save_pretrained(tmp_path / "hf", max_shard_size="40KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").exists()
    ours = GPT2.from_pretrained(tmp_path / "hf")
    idx = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), hf(idx).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("entry", ["../../../../etc/hostname", "/dev/zero", "link", "fifo"])
def test_tokenizer_metadata_cannot_open_arbitrary_paths(tmp_path, entry):
    tok_dir = CharTokenizer.from_text(TEXT).save(tmp_path / "tok")
    meta_path = tok_dir / "gpt2_tokenizer.json"
    meta = json.loads(meta_path.read_text())
    if entry == "link":
        (tok_dir / "link").symlink_to("/dev/zero")
    if entry == "fifo":
        os.mkfifo(tok_dir / "fifo")  # opening it to read would wait forever
    meta["sha256"] = {entry: "0" * 64}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(GPT2Error, match="gpt2_tokenizer.json: entry .* (outside|not a regular|relative)"):
        load_tokenizer(tok_dir)


def test_an_oversized_tokenizer_file_is_refused_before_it_is_read(tmp_path):
    tok_dir = CharTokenizer.from_text(TEXT).save(tmp_path / "tok")
    with open(tok_dir / "char_vocab.json", "r+b") as f:
        f.truncate(300 << 20)  # sparse: costs no disk, but reading it would cost 300 MB
    with pytest.raises(GPT2Error, match="char_vocab.json.*more than"):
        load_tokenizer(tok_dir)


def test_a_shard_list_cannot_point_outside_the_data_folder(tmp_path, capsys):
    data = make_char_data(tmp_path / "data")
    meta = json.loads((data / "meta.json").read_text())
    meta["splits"]["train"]["shards"][0]["file"] = "../elsewhere.bin"
    (data / "meta.json").write_text(json.dumps(meta))
    err = _one_line_error(capsys, *tiny_args(data, tmp_path / "out"))
    assert "meta.json: entry '../elsewhere.bin'" in err and "outside" in err


@pytest.mark.parametrize("command", ["generate", "eval", "train"])
def test_a_pickle_payload_in_pytorch_model_bin_never_runs(tmp_path, capsys, command):
    ckpt = _checkpoint(tmp_path)
    (ckpt / "model.safetensors").unlink()
    (ckpt / "gpt2_checkpoint.json").unlink()
    marker = tmp_path / "pwned"
    with open(ckpt / "pytorch_model.bin", "wb") as f:
        pickle.dump({"transformer.wte.weight": Payload(str(marker))}, f)
    text = tmp_path / "t.txt"
    text.write_text(TEXT[:300])
    args = {"generate": ["generate", "--checkpoint", str(ckpt), "--prompt", "a", *PINNED],
            "eval": ["eval", "--checkpoint", str(ckpt), "--data", str(text), *PINNED],
            "train": tiny_args(make_char_data(tmp_path / "data"), tmp_path / "out", **{"model.init": ckpt}),
            }[command]
    err = _one_line_error(capsys, *args)
    assert "pytorch_model.bin: refused" in err and "safetensors" in err
    assert not marker.exists()


def test_a_pickle_payload_in_the_training_state_never_runs(tmp_path, capsys):
    data = make_char_data(tmp_path / "data")
    main(tiny_args(data, tmp_path / "out", steps=2))
    capsys.readouterr()
    latest = tmp_path / "out" / "latest"
    marker = tmp_path / "pwned"
    torch.save({"step": Payload(str(marker))}, latest / "training_state.pt")
    manifest = json.loads((latest / "gpt2_checkpoint.json").read_text())
    state = latest / "training_state.pt"
    manifest["files"]["training_state.pt"] = {"bytes": state.stat().st_size,
                                              "sha256": gpt2.checkpoint.sha256_file(state)}
    (latest / "gpt2_checkpoint.json").write_text(json.dumps(manifest))
    err = _one_line_error(capsys, *tiny_args(data, tmp_path / "out", steps=2), "--resume", "true")
    assert "training_state.pt: cannot load the training state" in err
    assert not marker.exists()


def test_the_payload_really_runs_under_unrestricted_pickle(tmp_path):
    """The other tests mean something only if the payload works when loaded without weights_only."""
    marker = tmp_path / "pwned"
    blob = pickle.dumps(Payload(str(marker)))
    pickle.loads(blob)  # noqa: S301 - the point of this test
    assert marker.exists() and sys.version_info >= (3, 10)
