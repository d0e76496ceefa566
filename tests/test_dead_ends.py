"""No dead ends between commands: what `gpt2 prepare` accepts, `gpt2 train` either trains on or
refuses with advice that changes the outcome (never "re-run prepare" when prepare would say "up to
date"); Ctrl-C in the first moments of a command is quiet."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gpt2.cli import main
from gpt2.data.prepare import PrepareOptions, prepare
from gpt2.errors import GPT2Error
from train_helpers import ROOT, VENV_BIN, fails_in_one_line, make_char_data, tiny_args

CORPORA = {  # name: (file name, bytes)
    "two lines": ("c.txt", b"hello world\nsecond line\n"),
    "one line": ("c.txt", b"one line only\n"),
    "two characters": ("c.txt", b"ab"),
    "one record": ("c.jsonl", b'{"text": "only one record here"}\n'),
    "two records": ("c.jsonl", b'{"text": "first record"}\n{"text": "second record"}\n'),
    "blank lines": ("c.txt", b"\n\n\n\n"),
    "a paragraph and a line": ("c.txt", b"para one\nstill para one\n\nline two\n"),
}


@pytest.mark.parametrize("name", CORPORA)
def test_a_tiny_corpus_is_split_or_refused_and_train_says_what_helps(name: str, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    file, raw = CORPORA[name]
    corpus = tmp_path / file
    corpus.write_bytes(raw)
    out = tmp_path / "data"
    try:
        meta = prepare([str(corpus)], out, "char", options=PrepareOptions(workers=1, progress=False))
    except GPT2Error as err:  # only a corpus that cannot be split, saying what to do
        assert "single record" in str(err) and "add more text" in str(err) and not out.exists()
        return
    assert meta.splits["val"].tokens > 0 and meta.splits["train"].tokens > 0
    err = fails_in_one_line(tiny_args(out, tmp_path / "run", **{"model.context_length": 32}), capsys)
    assert "re-run" not in err and ("more text" in err or "smaller" in err)
    again = prepare([str(corpus)], out, "char", options=PrepareOptions(workers=1, progress=False))
    assert again == meta  # up to date, and consistent with what train was told


def test_an_old_data_set_without_validation_is_prepared_again(tmp_path: Path) -> None:
    """A folder left by a version that gave a tiny corpus no validation split is not 'up to date'."""
    import json

    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world\nsecond line\n")
    out = tmp_path / "data"
    meta = prepare([str(corpus)], out, "char", options=PrepareOptions(workers=1, progress=False))
    old = meta.to_json()
    old["splits"]["val"] = {"shards": [], "tokens": 0}
    (out / "meta.json").write_text(json.dumps(old))
    assert prepare([str(corpus)], out, "char", options=PrepareOptions(workers=1, progress=False)) == meta


@pytest.mark.slow
@pytest.mark.parametrize("command", ["generate", "train", "prepare"])
def test_ctrl_c_in_the_first_moments_of_a_command_is_quiet(command: str, tmp_path: Path) -> None:
    data = make_char_data(tmp_path / "data")
    args = {"train": tiny_args(data, tmp_path / "run", steps=50),
            "prepare": ["prepare", "--input", str(ROOT / "README.md"), "--out", str(tmp_path / "p"),
                        "--tokenizer", "char"]}
    if command == "generate":
        main(tiny_args(data, tmp_path / "ck", steps=1, **{"eval.sample_tokens": 0}))
        args[command] = ["generate", "--checkpoint", str(tmp_path / "ck" / "latest"), "--prompt", "First"]
    for _ in range(3):
        proc = subprocess.Popen([str(VENV_BIN / "gpt2"), *args[command]], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT)
        time.sleep(random.uniform(0.05, 1.5))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err
        assert proc.returncode in (0, 130, -signal.SIGINT), err
        if proc.returncode == 130:
            assert err.strip().splitlines()[-1].startswith("gpt2: interrupted"), err


DEFERRED = """
import importlib.machinery, signal, sys, time, types
from gpt2.signals import interrupt_on_stop_signals
torch = types.ModuleType("torch")  # stands for torch while its import runs (C++ calls Python)
torch.__spec__ = importlib.machinery.ModuleSpec("torch", None)
torch.__spec__._initializing = True
sys.modules["torch"] = torch
interrupt_on_stop_signals()
signal.raise_signal(signal.SIGINT)
time.sleep(0.3)  # sent again every 50 ms meanwhile, and still held
print("held", flush=True)
torch.__spec__._initializing = False  # the import is done
try:
    time.sleep(2)
    print("not raised")
except KeyboardInterrupt:
    print("raised")
"""


def test_ctrl_c_during_the_torch_import_waits_for_the_import_to_finish() -> None:
    """A KeyboardInterrupt raised inside torch's import can surface in C++ and abort the process
    (exit -6): the handler holds it until the import is done, then raises it."""
    proc = subprocess.run([str(VENV_BIN / "python"), "-c", DEFERRED], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.stdout.split() == ["held", "raised"], proc.stdout + proc.stderr
