"""Text from outside is never a traceback: any bytes as a prompt (argument, file, stdin, a line of
an interactive session), files that are not text files, and values YAML would read as something else
(`--prompt null` is the prompt "null")."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2.cli import main
from gpt2.errors import GPT2Error
from gpt2.text_input import utf8_text
from train_helpers import TEXT, fails_in_one_line, make_char_data, tiny_args

YAML_LOOKALIKES = ["null", "~", "NULL", " null", "true", "[a]", "{a: 1}", "1e5", "123"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # every character of the YAML look-alike prompts is in the char vocabulary
    data = make_char_data(tmp_path_factory.mktemp("data"), TEXT + " ".join(YAML_LOOKALIKES) * 3)
    out = tmp_path_factory.mktemp("run") / "run"
    main(tiny_args(data, out, steps=2, **{"eval.sample_tokens": 0}))
    return out / "latest"


def _generate(checkpoint: Path, *extra: str) -> list[str]:
    return ["generate", "--checkpoint", str(checkpoint), "--max_new_tokens", "3", "--seed", "1",
            "--device", "cpu", "--dtype", "float32", *extra]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_any_bytes_are_text_or_a_one_line_error(raw: bytes) -> None:
    """What Python makes of any bytes in an argument or in stdin (surrogateescape) either encodes
    or is refused in one line naming the byte."""
    text = os.fsdecode(raw) if raw else ""
    try:
        assert utf8_text(text, "--prompt").encode("utf-8") == raw
    except GPT2Error as err:
        assert "\n" not in str(err) and "byte 0x" in str(err)
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")


@pytest.mark.parametrize("prompt", ["ROMEO:\udcff", "\udc80", "a\udcc3\udca9b", "\ud800"])
def test_a_prompt_that_is_not_utf8_is_one_line(prompt: str, checkpoint: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    assert "not valid UTF-8" in fails_in_one_line(_generate(checkpoint, "--prompt", prompt), capsys)


@pytest.mark.parametrize("kind", ["/dev/zero", "a folder", "a fifo", "missing", "not utf-8", "too big"])
def test_a_prompt_file_that_is_not_a_text_file_is_one_line(kind: str, checkpoint: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    path = {"/dev/zero": Path("/dev/zero"), "a folder": tmp_path}.get(kind, tmp_path / "p.txt")
    if kind == "a fifo":
        os.mkfifo(path)
    elif kind == "not utf-8":
        path.write_bytes(b"ROMEO:\xff\n")
    elif kind == "too big":
        with open(path, "wb") as f:
            f.truncate(17 << 20)  # sparse
    assert "--prompt_file" in fails_in_one_line(_generate(checkpoint, "--prompt_file", str(path)), capsys)


def _stdin(data: bytes) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")


def test_a_bad_line_does_not_end_an_interactive_session(checkpoint: Path, capsys: pytest.CaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", _stdin(b"First\n\xff\xfeRO\nFirst\nzz\x00\nFirst\n"))
    main(_generate(checkpoint, "--interactive", "true"))
    captured = capsys.readouterr()
    errors = [line for line in captured.err.split("> ") if "error" in line]
    assert len(errors) == 2 and "not valid UTF-8 text (byte 0xff" in errors[0]
    assert len([line for line in captured.out.splitlines() if line]) == 3  # the three good prompts
    assert "Traceback" not in captured.err


def test_bytes_piped_to_stdin_that_are_not_utf8_are_one_line(checkpoint: Path, capsys: pytest.CaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", _stdin(b"\xff\xfeFirst"))
    assert "piped to stdin is not valid UTF-8" in fails_in_one_line(_generate(checkpoint), capsys)


@pytest.mark.parametrize("prompt", YAML_LOOKALIKES)
def test_a_prompt_that_looks_like_yaml_is_text(prompt: str, checkpoint: Path, capsys: pytest.CaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The output echoes the prompt: had `null` become None, the piped stdin would be the prompt."""
    monkeypatch.setattr(sys, "stdin", _stdin(b"piped"))  # must not be read: the prompt was given
    main(_generate(checkpoint, "--prompt", prompt))
    out = capsys.readouterr().out
    assert out.startswith(prompt) and len(out) > len(prompt)


def test_a_left_out_or_config_file_null_prompt_is_none(checkpoint: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """None still means "no prompt given" (stdin is read), left out or `null` in a YAML file."""
    config = tmp_path / "generate.yaml"
    config.write_text("prompt: null\n")
    for extra in ([], ["--config", str(config)]):
        monkeypatch.setattr(sys, "stdin", _stdin(b"piped"))
        main(_generate(checkpoint, *extra))
        assert capsys.readouterr().out.startswith("piped")


@pytest.mark.parametrize(("argv", "key"), [
    (["generate", "--checkpoint", "c", "--prompt"], "prompt"),
    (["generate", "--checkpoint", "c", "--stop"], "stop"),
    (["generate", "--checkpoint", "c", "--tokenizer"], "tokenizer"),
    (["chat", "--checkpoint", "c", "--system"], "system"),
    (["serve", "--checkpoint", "c", "--api_key"], "api_key"),
    (["train", "--eval.prompt"], "eval.prompt"),
])
@pytest.mark.parametrize("value", ["null", "~", "Null"])
def test_every_text_option_takes_null_as_text(argv: list[str], key: str, value: str,
                                              capsys: pytest.CaptureFixture) -> None:
    """Any option whose type takes text (`str | None`, `list[str] | str | None`, in a command or an
    options group) keeps a YAML null as written; an `int | None` option still reads it as null."""
    with pytest.raises(SystemExit):
        main([*argv, value, *(["--seed", "null"] if argv[0] == "generate" else []), "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    for part in key.split("."):
        config = config[part]
    assert config == value
