"""Every numeric option of every command x {nan, inf, -inf, negative, huge}: refused where it
enters (the options dataclass), in one line, or accepted as a usable value; the same from a
YAML or TOML config file; sizes that cannot fit are refused with the figure before any work."""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path

import pytest

from gpt2.commands.generate import GenerateOptions
from gpt2.config import GPT2Config
from gpt2.data.options import PrepareOptions, SentencePieceOptions
from gpt2.errors import GPT2Error
from gpt2.generation.options import SamplingOptions
from gpt2.limits import check_fits
from gpt2.training.config import (
    CheckpointSection,
    EvalSection,
    OptimSection,
    SystemSection,
    TrainSection,
)
from train_helpers import fails_in_one_line, make_char_data, tiny_args

OPTIONS = [OptimSection, TrainSection, EvalSection, CheckpointSection, SystemSection, SamplingOptions,
           GenerateOptions, PrepareOptions, SentencePieceOptions, GPT2Config]
REQUIRED = {GenerateOptions: {"checkpoint": "ckpt"}}
BAD = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "negative": -1, "huge": 2**64}
NEGATIVE_OK: set[str] = set()  # no numeric option of this package means anything below zero


def _numeric_fields(cls: type) -> list[tuple[type, str, type]]:
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        kinds = set(typing.get_args(hints[f.name])) or {hints[f.name]}
        number = next((k for k in (float, int) if k in kinds), None)
        if number is not None and hints[f.name] is not bool:
            found.append((cls, f.name, number))
    return found


FIELDS = [field for cls in OPTIONS for field in _numeric_fields(cls)]
CASES = [(cls, name, kind, label) for cls, name, kind in FIELDS for label in BAD
         if not (kind is int and label in ("nan", "inf", "-inf"))]  # ints cannot hold them


def test_the_table_covers_every_numeric_option() -> None:
    assert len(FIELDS) >= 45 and len(CASES) >= 150


@pytest.mark.parametrize(("cls", "name", "kind", "label"), CASES,
                         ids=[f"{c.__name__}.{n}={lab}" for c, n, _, lab in CASES])
def test_every_numeric_option_refuses_what_breaks_it(cls: type, name: str, kind: type, label: str) -> None:
    value = BAD[label] if kind is float or label not in ("nan", "inf", "-inf") else BAD[label]
    value = float(value) if kind is float and label == "huge" else value
    try:
        built = cls(**{**REQUIRED.get(cls, {}), name: value})
    except GPT2Error as err:
        assert "\n" not in str(err)
        return
    # accepted: only a value that is a usable number
    assert label not in ("nan", "inf", "-inf"), f"{cls.__name__}.{name} accepted {value}"
    assert label != "negative" or name in NEGATIVE_OK, f"{cls.__name__}.{name} accepted {value}"
    got = getattr(built, name)
    assert math.isfinite(got) and abs(got) <= 2**63 - 1 or kind is float


@pytest.mark.parametrize(("option", "value", "message"), [
    ("optim.min_lr", "0.1", "--optim.min_lr 0.1 is above --optim.lr"),
    ("train.seed", "-5", "--train.seed must be an integer from 0 to 2**63 - 1"),
    ("train.seed", str(2**63), "--train.seed must be an integer from 0 to 2**63 - 1"),
    ("train.max_passes", ".nan", "finite"),
    ("system.device", "meta", "--device 'meta'"),
    ("system.threads", "1000000", "--threads 1,000,000 is more than 4 x"),
    ("train.out_dir", "", "--train.out_dir is empty"),
    ("train.out_dir", "  ", "--train.out_dir is empty"),
    ("eval.sampling.temperature", "1e-40", "temperature must be 0 (greedy) or from 0.01"),
    ("eval.sampling.top_p", "1e-300", "top_p must be from 1e-06 to 1"),
    ("eval.sampling.repetition_penalty", "1e-300", "repetition_penalty must be from 0.01"),
    ("model.layer_norm_epsilon", "1e309", "layer_norm_epsilon"),
    ("model.n_layers", "1000000", "GPT2Config.n_layers 1,000,000 is more than 4,096"),
    ("model.vocab_size", "1000000000", "needs about"),
    ("model.emb_dim", "65536", "needs about"),
    ("train.batch_size", "10000000", "needs about"),
])
def test_train_refuses_numbers_that_break_it_before_any_work(
        option: str, value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_char_data(tmp_path / "data")
    out = tmp_path / "out"
    args = tiny_args(data, out, **{"model.n_heads": 2}) + [f"--{option}={value}"]
    assert message in fails_in_one_line(args, capsys)
    assert not out.exists()


@pytest.mark.parametrize(("text", "name"), [
    ("optim:\n  lr: .inf\n", "yaml"), ("optim:\n  lr: .nan\n", "yaml"),
    ("train:\n  max_passes: -.inf\n", "yaml"), ("[optim]\nlr = inf\n", "toml"),
    ("[optim]\nlr = nan\n", "toml"), ("[train]\nmax_seconds = -inf\n", "toml"),
    ("[model]\nlayer_norm_epsilon = inf\n", "toml"),
])
def test_a_config_file_is_checked_like_the_command_line(text: str, name: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / f"run.{name}"
    config.write_text(text)
    data = make_char_data(tmp_path / "data")
    out = tmp_path / "out"
    given = {line.split("=")[0].split(":")[0].strip() for line in text.splitlines()[1:]}
    args = [a for a in tiny_args(data, out)[1:] if a.split("=")[0].rsplit(".", 1)[-1] not in given]
    err = fails_in_one_line(["train", "--config", str(config), *args], capsys)
    assert "finite" in err or "layer_norm_epsilon" in err or "expected" in err
    assert not out.exists()


def test_memory_refusals_give_the_figure() -> None:
    with pytest.raises(GPT2Error, match=r"needs about 1\.0 GiB of memory, but this machine has 512\.0 MiB"):
        check_fits("a thing", 2**30, "use less", available=2**29)
    check_fits("a thing", 2**29, "use less", available=2**30)  # fits: no error
