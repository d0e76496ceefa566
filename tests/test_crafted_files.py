"""Crafted or damaged metadata and weights: every JSON file of a checkpoint x {wrong type,
missing key, extra nesting, absurd value}, safetensors headers that lie, tensors of the wrong
shape, dtype or value, training states without their parts. `gpt2 verify` refuses each in one
line (it means "this loads"), and so does the command that would use the file."""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gpt2.cli import main
from gpt2.files import sha256_file
from train_helpers import fails_in_one_line, tiny_args


@pytest.fixture(scope="module")
def checkpoint(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    main(tiny_args(data, out, steps=2, **{"eval.sample_tokens": 0}))
    return out / "latest"


def _remanifest(ckpt: Path) -> None:
    """What a crafter would do: make the manifest agree with the altered files."""
    manifest = json.loads((ckpt / "gpt2_checkpoint.json").read_text())
    manifest["files"] = {str(p.relative_to(ckpt)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                         for p in sorted(ckpt.rglob("*")) if p.is_file() and p.name != "gpt2_checkpoint.json"}
    (ckpt / "gpt2_checkpoint.json").write_text(json.dumps(manifest))


def _json(name: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    def mutate(ckpt: Path) -> None:
        data = json.loads((ckpt / name).read_text())
        (ckpt / name).write_text(json.dumps(change(data)))
        if name != "gpt2_checkpoint.json":
            _remanifest(ckpt)
    return mutate


def _set(data: dict, **values: object) -> dict:
    return {**data, **values}


def _drop(data: dict, key: str) -> dict:
    return {k: v for k, v in data.items() if k != key}


def _weights(change: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], None]:
    def mutate(ckpt: Path) -> None:
        tensors = load_file(ckpt / "model.safetensors")
        change(tensors)
        save_file(tensors, ckpt / "model.safetensors", metadata={"format": "pt"})
        _remanifest(ckpt)
    return mutate


def _lying_header(kind: str) -> Callable[[Path], None]:
    def mutate(ckpt: Path) -> None:
        raw = (ckpt / "model.safetensors").read_bytes()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        if kind == "length":
            raw = struct.pack("<Q", 10**12) + raw[8:]
        else:
            first = next(k for k in header if k != "__metadata__")
            if kind == "offsets":
                header[first]["data_offsets"][1] += 10**9
            else:  # shape
                header[first]["shape"] = [10**6, 10**6]
            blob = json.dumps(header).encode().ljust(n)
            raw = raw[:8] + blob[:n] if len(blob) <= n else struct.pack("<Q", len(blob)) + blob + raw[8 + n:]
        (ckpt / "model.safetensors").write_bytes(raw)
        _remanifest(ckpt)
    return mutate


def _state(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def mutate(ckpt: Path) -> None:
        state = torch.load(ckpt / "training_state.pt", weights_only=True)
        torch.save(change(state), ckpt / "training_state.pt")
        _remanifest(ckpt)
    return mutate


FIRST = "transformer.h.0.attn.c_attn.weight"
CRAFTED: dict[str, Callable[[Path], None]] = {
    # config.json
    "config: n_layer 1000000": _json("config.json", lambda d: _set(d, n_layer=1_000_000)),
    "config: vocab 10^12": _json("config.json", lambda d: _set(d, vocab_size=10**12)),
    "config: n_embd shape mismatch": _json("config.json", lambda d: _set(d, n_embd=64)),
    "config: n_layer wrong type": _json("config.json", lambda d: _set(d, n_layer="2")),
    "config: n_layer float": _json("config.json", lambda d: _set(d, n_layer=2.5)),
    "config: missing n_embd": _json("config.json", lambda d: _drop(d, "n_embd")),
    "config: extra nesting": _json("config.json", lambda d: {"config": d}),
    "config: a list": _json("config.json", lambda d: [d]),
    "config: epsilon Infinity": _json("config.json", lambda d: _set(d, layer_norm_epsilon=float("inf"))),
    "config: epsilon NaN": _json("config.json", lambda d: _set(d, layer_norm_epsilon=float("nan"))),
    "config: n_layer fewer than the weights": _json("config.json", lambda d: _set(d, n_layer=1)),
    # gpt2_checkpoint.json (the manifest)
    "manifest: unknown version": _json("gpt2_checkpoint.json", lambda d: _set(d, version=99)),
    "manifest: version a string": _json("gpt2_checkpoint.json", lambda d: _set(d, version="1")),
    "manifest: version 0": _json("gpt2_checkpoint.json", lambda d: _set(d, version=0)),
    "manifest: files a list": _json("gpt2_checkpoint.json", lambda d: _set(d, files=list(d["files"]))),
    "manifest: missing files": _json("gpt2_checkpoint.json", lambda d: _drop(d, "files")),
    "manifest: extra nesting": _json("gpt2_checkpoint.json", lambda d: {"manifest": d}),
    "manifest: an entry a string": _json("gpt2_checkpoint.json",
                                         lambda d: _set(d, files={**d["files"], "config.json": "x"})),
    "manifest: bytes a string": _json("gpt2_checkpoint.json", lambda d: _set(d, files={
        **d["files"], "config.json": {**d["files"]["config.json"], "bytes": "12"}})),
    # model.safetensors
    "weights: header length lies": _lying_header("length"),
    "weights: offsets past the end": _lying_header("offsets"),
    "weights: header shape lies": _lying_header("shape"),
    "weights: wrong shape": _weights(lambda t: t.__setitem__(FIRST, torch.zeros(3, 3))),
    "weights: int8 tensor": _weights(lambda t: t.__setitem__(FIRST, t[FIRST].to(torch.int8))),
    "weights: NaN": _weights(lambda t: t[FIRST].__setitem__((0, 0), float("nan"))),
    "weights: inf": _weights(lambda t: t[FIRST].__setitem__((0, 0), float("inf"))),
    "weights: a tensor missing": _weights(lambda t: t.pop(FIRST)),
    "weights: an extra tensor": _weights(lambda t: t.__setitem__("transformer.extra", torch.zeros(2))),
    # training_state.pt
    "state: no optimizer": _state(lambda s: _drop(s, "optimizer")),
    "state: step -5": _state(lambda s: _set(s, step=-5)),
    "state: step a string": _state(lambda s: _set(s, step="5")),
    "state: no loader": _state(lambda s: _drop(s, "loader")),
    "state: a list": _state(lambda s: [s]),
    "state: optimizer without groups": _state(lambda s: _set(s, optimizer={"state": {}})),
}


@pytest.mark.parametrize("case", CRAFTED)
def test_a_crafted_checkpoint_fails_verify_and_use_in_one_line(case: str, checkpoint: Path, data: Path,
                                                                tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    ckpt = run / "latest"
    shutil.copytree(checkpoint, ckpt)
    CRAFTED[case](ckpt)
    fails_in_one_line(["verify", "--dir", str(ckpt)], capsys)
    if case.startswith("state"):
        use = [*tiny_args(data, run, steps=4, **{"eval.sample_tokens": 0}), "--resume=true"]
    else:
        use = ["generate", "--checkpoint", str(ckpt), "--prompt", "a", "--max_new_tokens", "2", "--device",
               "cpu", "--seed", "1"]
    fails_in_one_line(use, capsys)


def test_the_uncrafted_checkpoint_verifies(checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    main(["verify", "--dir", str(checkpoint)])
    assert "checkpoint OK" in capsys.readouterr().out


def _split(meta: dict, split: str, **values: object) -> dict:
    return _set(meta, splits={**meta["splits"], split: {**meta["splits"][split], **values}})


META: dict[str, Callable[[dict], object]] = {
    "splits an empty list": lambda m: _set(m, splits=[]),
    "splits missing": lambda m: _drop(m, "splits"),
    "train split a list": lambda m: _set(m, splits={**m["splits"], "train": []}),
    "val split missing": lambda m: _set(m, splits={"train": m["splits"]["train"]}),
    "shards not a list": lambda m: _split(m, "train", shards={}),
    "a shard a string": lambda m: _split(m, "val", shards=["x"]),
    "tokens negative": lambda m: _split(m, "val", tokens=-5),
    "tokenizer a list": lambda m: _set(m, tokenizer=[]),
    "vocab_size a string": lambda m: _set(m, vocab_size="65"),
    "extra nesting": lambda m: {"meta": m},
}


@pytest.mark.parametrize("case", META)
def test_a_crafted_meta_json_fails_verify_and_train_in_one_line(case: str, data: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "data"
    shutil.copytree(data, folder)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps(META[case](meta)))
    assert "meta.json" in fails_in_one_line(["verify", "--dir", str(folder)], capsys)
    fails_in_one_line(tiny_args(folder, tmp_path / "run"), capsys)
    assert not (tmp_path / "run").exists()


def _laughs(depth: int) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, depth)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("name", "text"), [
    ("optim a list", "optim: [1, 2, 3]\n"),
    ("optim a number", "optim: 3\n"),
    ("train a string", "train: fast\n"),
    ("sampling a list", "eval:\n  sampling: [0.8]\n"),
    ("billion laughs", _laughs(9)),
    ("laughs inside a section", "optim:\n  " + _laughs(8).replace("\n", "\n  ").rstrip() + "\n"),
    ("top level a list", "- optim\n- train\n"),
])
def test_a_crafted_config_file_is_one_line_at_once(name: str, text: str, data: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    import time

    config = tmp_path / "run.yaml"
    config.write_text(text)
    start = time.monotonic()
    fails_in_one_line(["train", "--config", str(config), "--data.dir", str(data), "--train.out_dir",
                       str(tmp_path / "run")], capsys)
    assert time.monotonic() - start < 10 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("glob", ["/etc/*", "../../etc/host*", "**/../../*", "~/*", "", "sub/../../*",
                                  "..", "C:/Windows/*"])
def test_prepare_globs_stay_inside_the_input_folder(glob: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("hello\n" * 100)
    args = ["prepare", "--input", str(folder), "--glob", glob, "--out", str(tmp_path / "out")]
    err = fails_in_one_line(args, capsys)
    assert "--glob" in err and not (tmp_path / "out").exists()
