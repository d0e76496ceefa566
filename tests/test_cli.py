"""The `gpt2` command itself: subcommands listed, and user mistakes as one line, no traceback."""

import subprocess
import sys

import pytest

from gpt2.cli import main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpt2", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_subcommand():
    out = run("--help")
    assert out.returncode == 0
    for name in ("info", "prepare", "tokenizer", "train", "eval", "generate", "serve"):
        assert name in out.stdout


def test_info_prints_parameter_count(capsys):
    main(["info", "--preset", "gpt2-medium"])
    assert "354,823,168" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["info", "--preset", "gpt5"], "unknown preset 'gpt5'"),
        (["info", "--checkpoint", "{missing}"], "config.json: not found"),
        # The file system refuses: a file where a folder must go (an OSError, not a ValueError).
        (["prepare", "--input", "{text}", "--out", "{text}/sub", "--tokenizer", "char"], "Not a directory"),
    ],
)
def test_mistakes_are_one_line_errors(tmp_path, args, message):
    text = tmp_path / "a.txt"
    text.write_text("hello world\n" * 50)
    args = [a.format(missing=tmp_path / "nope", text=text) for a in args]
    out = run(*args)
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("gpt2: error:")]
    assert len(errors) == 1 and message in errors[0], out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("args, message", [
    (["train", "--bogus", "1"], "unrecognized arguments: --bogus 1"),
    (["train", "--optim.lr", "nan"], "--optim.lr: expected a float, got nan"),
    (["train", "--train.batch_size", "abc"], "--train.batch_size: expected a int, got abc"),
    (["prepare", "--input", "x", "--out", "y", "--workers", "abc"], "--workers: expected int or null"),
    (["train", "--config", "{missing}"], "--config: File does not exist"),
    (["train", "--config", "{bad_yaml}"], "Problems parsing config"),
    (["generate", "--checkpoint", "x", "--max_new_tokens", "abc"],
     "--max_new_tokens: expected a int, got abc"),
    ([], "expected \"subcommand\" to be one of"),
])
def test_command_line_mistakes_are_one_line(tmp_path, capsys, args, message):
    """Parser errors name the option and the fix in one line, not a usage dump."""
    (tmp_path / "bad.yaml").write_text("a: [\n")
    args = [a.format(missing=tmp_path / "nope.yaml", bad_yaml=tmp_path / "bad.yaml") for a in args]
    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err
    assert stop.value.code == 1 and err.count("\n") == 1 and err.startswith("gpt2: error: "), err
    assert message in err and "--help" in err


def test_verify_reports_a_good_checkpoint_and_names_a_corrupt_file(tmp_path, capsys):
    import torch

    from gpt2 import GPT2, GPT2Config

    torch.manual_seed(0)
    GPT2(GPT2Config(vocab_size=20, context_length=8, emb_dim=8, n_heads=2, n_layers=1)).save_pretrained(
        tmp_path / "ck")
    main(["verify", "--dir", str(tmp_path / "ck")])
    assert "checkpoint OK: 2 files verified" in capsys.readouterr().out
    weights = tmp_path / "ck" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(SystemExit):
        main(["verify", "--dir", str(tmp_path / "ck")])
    assert "model.safetensors: sha256 does not match the manifest" in capsys.readouterr().err


@pytest.mark.parametrize("delay", [0.3, 1.0])
def test_ctrl_c_while_starting_up_is_quiet(delay):
    """Ctrl-C during the first seconds (imports) ends the command without a traceback."""
    import signal
    import time
    from pathlib import Path

    script = Path(sys.executable).with_name("gpt2")
    proc = subprocess.Popen([str(script), "info", "--preset", "gpt2"], stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the command finished before the signal arrived")
    assert proc.returncode == 130 and "Traceback" not in err and "gpt2: interrupted" in err


def test_a_device_file_is_not_read_as_text(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "--input", "/dev/zero", "--out", str(tmp_path / "out")])
    assert "input /dev/zero is not a regular file or a folder" in capsys.readouterr().err
