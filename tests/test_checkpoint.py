"""Checkpoint directories: round trip, atomic replacement, and clear errors on bad files."""

import json
import os

import pytest
import torch

from conftest import kill_after, tiny_config
from gpt2 import GPT2
from gpt2.checkpoint import (
    CheckpointError,
    load_training_state,
    read_config,
    save_checkpoint,
)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return GPT2(tiny_config(**kw)).eval()


def _same_weights(a: GPT2, b: GPT2) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip_with_training_state_and_json(tmp_path):
    model = _model()
    state = {"step": 7, "rng": torch.get_rng_state(), "optimizer": {"lr": 1e-3, "m": torch.ones(3)}}
    save_checkpoint(tmp_path / "ck", model, training_state=state, json_files={"run.json": {"a": 1}})
    loaded = GPT2.from_pretrained(tmp_path / "ck")
    assert _same_weights(model, loaded)
    assert loaded.lm_head.weight is loaded.tok_emb.weight
    assert read_config(tmp_path / "ck") == model.cfg
    restored = load_training_state(tmp_path / "ck")
    assert restored["step"] == 7 and torch.equal(restored["rng"], state["rng"])
    assert json.loads((tmp_path / "ck" / "run.json").read_text()) == {"a": 1}
    files = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert files == ["config.json", "gpt2_checkpoint.json", "model.safetensors", "run.json",
                     "training_state.pt"]


def test_load_in_other_dtype(tmp_path):
    _model().save_pretrained(tmp_path / "ck")
    model = GPT2.from_pretrained(tmp_path / "ck", dtype=torch.bfloat16)
    assert model.tok_emb.weight.dtype is torch.bfloat16
    with pytest.raises(ValueError, match="give a torch.dtype"):  # "auto" is the runtime's to resolve
        GPT2.from_pretrained(tmp_path / "ck", dtype="auto")


def test_overwrite_replaces_whole_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "ck", _model(0), training_state={"step": 1})
    save_checkpoint(tmp_path / "ck", _model(1))  # no training state this time
    assert _same_weights(GPT2.from_pretrained(tmp_path / "ck"), _model(1))
    assert load_training_state(tmp_path / "ck") is None  # nothing stale left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temporary folders left


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path):
    save_checkpoint(tmp_path / "ck", _model(0))

    class Exploding:
        def save(self, directory):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "ck", _model(1), tokenizer=Exploding())
    assert _same_weights(GPT2.from_pretrained(tmp_path / "ck"), _model(0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_kill_during_save_never_leaves_a_broken_checkpoint(tmp_path):
    """SIGKILL a process that saves in a loop; the checkpoint must load every time."""
    save_checkpoint(tmp_path / "ck", _model(0))
    script = (
        f"import sys, torch; sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "from conftest import tiny_config\n"
        "from gpt2 import GPT2\nfrom gpt2.checkpoint import save_checkpoint\n"
        "m = GPT2(tiny_config(n_layers=4, emb_dim=128))\n"
        "print('ready', flush=True)\n"
        f"path = {str(tmp_path / 'ck')!r}\n"
        "while True:\n    save_checkpoint(path, m, training_state={'w': m.state_dict()})\n"
    )
    for delay in (0.05, 0.2, 0.35, 0.5):
        kill_after(script, delay)
        model = GPT2.from_pretrained(tmp_path / "ck")  # recovers an interrupted swap if needed
        assert model.cfg.n_layers in (2, 4)
    save_checkpoint(tmp_path / "ck", _model(0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # killed saves cleaned up


def test_interrupted_swap_is_read_and_then_repaired(tmp_path):
    """A crash between the two renames leaves only `.ck.old`: readers load it without
    touching the disk (a writer may be mid-save), and the next save puts it back."""
    save_checkpoint(tmp_path / "ck", _model(0), training_state={"step": 3})
    os.rename(tmp_path / "ck", tmp_path / ".ck.old")
    assert _same_weights(GPT2.from_pretrained(tmp_path / "ck"), _model(0))
    assert load_training_state(tmp_path / "ck")["step"] == 3
    assert read_config(tmp_path / "ck") == _model(0).cfg
    assert not (tmp_path / "ck").exists()
    save_checkpoint(tmp_path / "ck", _model(1))
    assert _same_weights(GPT2.from_pretrained(tmp_path / "ck"), _model(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_corrupt_training_state_is_caught_by_the_manifest(tmp_path):
    save_checkpoint(tmp_path / "ck", _model(0), training_state={"step": 3})
    GPT2.from_pretrained(tmp_path / "ck")  # the weights are fine: only files actually read are checked
    with open(tmp_path / "ck" / "training_state.pt", "ab") as f:
        f.write(b"x")
    GPT2.from_pretrained(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="training_state.pt: .* bytes, expected"):
        load_training_state(tmp_path / "ck")


def test_malformed_manifest_is_a_clear_error(tmp_path):
    save_checkpoint(tmp_path / "ck", _model(0))
    (tmp_path / "ck" / "gpt2_checkpoint.json").write_text('{"version": 1, "files": {"model.safetensors": 5}}')
    with pytest.raises(CheckpointError, match="json: malformed entry for 'model.safetensors'"):
        GPT2.from_pretrained(tmp_path / "ck")


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        GPT2.from_pretrained(tmp_path / "nope")


def test_truncated_weights_name_the_file(tmp_path):
    _model().save_pretrained(tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model.safetensors: \d+ bytes, expected \d+; the file is tr"):
        GPT2.from_pretrained(tmp_path / "ck")
    (tmp_path / "ck" / "gpt2_checkpoint.json").unlink()  # without the manifest safetensors notices
    with pytest.raises(CheckpointError, match="cannot read the weights .* truncated or corrupt"):
        GPT2.from_pretrained(tmp_path / "ck")


def test_corrupt_bytes_fail_the_checksum(tmp_path):
    _model().save_pretrained(tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors: sha256 does not match"):
        GPT2.from_pretrained(tmp_path / "ck")


def test_corrupt_config_json(tmp_path):
    _model().save_pretrained(tmp_path / "ck")
    (tmp_path / "ck" / "gpt2_checkpoint.json").unlink()
    (tmp_path / "ck" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        GPT2.from_pretrained(tmp_path / "ck")


def test_weights_that_do_not_match_the_config(tmp_path):
    _model().save_pretrained(tmp_path / "ck")
    (tmp_path / "ck" / "gpt2_checkpoint.json").unlink()
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["n_embd"] = 64
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"tensor 'transformer.wte.weight' has shape \(97, 32\) "
                                              r"but config.json implies \(97, 64\)"):
        GPT2.from_pretrained(tmp_path / "ck")


def test_missing_tensor(tmp_path):
    from safetensors.torch import load_file, save_file

    _model().save_pretrained(tmp_path / "ck")
    (tmp_path / "ck" / "gpt2_checkpoint.json").unlink()
    weights = load_file(tmp_path / "ck" / "model.safetensors")
    del weights["transformer.h.1.mlp.c_fc.weight"]
    save_file(weights, tmp_path / "ck" / "model.safetensors")
    with pytest.raises(CheckpointError, match="'transformer.h.1.mlp.c_fc.weight' is missing"):
        GPT2.from_pretrained(tmp_path / "ck")


def test_training_state_with_arbitrary_objects_is_refused(tmp_path):
    """Unrestricted pickle is never used: a pickled object in the state is refused."""
    _model().save_pretrained(tmp_path / "ck")
    torch.save({"evil": Exploding}, tmp_path / "ck" / "training_state.pt")
    with pytest.raises(CheckpointError, match="training_state.pt: cannot load the training state"):
        load_training_state(tmp_path / "ck")


class Exploding:
    pass
