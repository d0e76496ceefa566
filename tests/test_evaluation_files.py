"""Task files: bad ones fail in one line naming file and line (before any weights are read, with
the results file untouched), and the made-up Shakespeare task is real, deterministic text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from eval_helpers import char_checkpoint
from gpt2.cli import main
from gpt2.data.corpus import shakespeare_files
from gpt2.errors import GPT2Error
from gpt2.evaluation.make_tasks import make_next_line_task
from gpt2.evaluation.tasks import read_task

GOOD = {"ctx": "A man", "endings": ["sits.", "runs."], "label": 1}
BAD_FILES = [  # (task, lines of the file, what the one-line error must say)
    ("hellaswag", [GOOD, {"ctx": "A man", "endings": ["sits.", "runs."]}], ":2: missing field 'label'"),
    ("hellaswag", [GOOD, GOOD, {**GOOD, "label": 4}], ":3: label 4 is out of range for 2 choices"),
    ("hellaswag", [{**GOOD, "label": -1}], ":1: label -1 is out of range"),
    ("hellaswag", [{**GOOD, "endings": ["sits.", " "]}], ":1: endings[1] must be a non-empty string"),
    ("hellaswag", [{**GOOD, "label": "first"}], ":1: field 'label' must be an integer, got \"first\""),
    ("hellaswag", [{**GOOD, "endings": ["only one"], "label": 0}], ":1: field 'endings' needs at least 2"),
    ("hellaswag", [GOOD, "{not json"], ":2: not a JSON object"),
    ("hellaswag", [[1, 2]], ":1: expected a JSON object, got list"),
    ("choice", [{"context": "", "choices": ["a", "b"], "answer": 0}], ":1: field 'context' is empty"),
    ("choice", [GOOD], ":1: missing field 'context'"),
    ("lambada", [{"text": "oneword"}], ":1: field 'text' needs a context and a last word"),
    ("choice", [], "holds no examples"),
]


def _write(path: Path, lines: list) -> Path:
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("task, lines, message", BAD_FILES)
def test_bad_task_files_fail_in_one_line(tmp_path, task, lines, message):
    path = _write(tmp_path / "bad.jsonl", lines)
    with pytest.raises(GPT2Error) as err:
        read_task(task, path)
    text = str(err.value)
    assert str(path) in text and message in text and "\n" not in text


def test_bytes_that_are_not_utf8_are_named(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + '{"ctx": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(GPT2Error, match=r"latin1.jsonl:2: not UTF-8"):
        read_task("hellaswag", path)


def test_the_cli_names_the_bad_line_and_leaves_results_alone(tmp_path, capsys):
    char_checkpoint(tmp_path / "ckpt", "A man sits. runs.\n")
    results = tmp_path / "results.jsonl"
    results.write_text('{"an": "earlier run"}\n')
    bad = _write(tmp_path / "bad.jsonl", [GOOD, {**GOOD, "label": 2}])
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "--checkpoint", str(tmp_path / "ckpt"), "--task", "hellaswag", "--data", str(bad),
              "--results", str(results), "--device", "cpu"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("gpt2: error:") and f"{bad}:2: label 2 is out of range" in err[-1]
    assert "Traceback" not in "\n".join(err)
    assert results.read_text() == '{"an": "earlier run"}\n'


def test_a_character_the_char_model_never_saw_names_the_line(tmp_path, capsys):
    char_checkpoint(tmp_path / "ckpt", "A man sits. runs.\n")
    path = _write(tmp_path / "t.jsonl", [GOOD, {**GOOD, "endings": ["sits.", "runs!"]}])
    with pytest.raises(SystemExit):
        main(["eval", "--checkpoint", str(tmp_path / "ckpt"), "--task", "hellaswag", "--data", str(path),
              "--device", "cpu", "--dtype", "float32", "--threads", "1"])
    assert f"{path}:2: character '!'" in capsys.readouterr().err


def test_next_line_task_is_real_consecutive_text_and_seeded():
    rows = make_next_line_task(20, seed=1)
    assert rows == make_next_line_task(20, seed=1) and rows != make_next_line_task(20, seed=2)
    plays = "\n".join("\n".join(line.strip() for line in path.read_text(encoding="utf-8", errors="replace")
                                .splitlines()) for path in shakespeare_files())
    for row in rows:
        assert len(row["choices"]) == 4 and len(set(row["choices"])) == 4
        assert row["context"] + row["choices"][row["answer"]] + "\n" in plays  # the true next line
    assert sorted({row["answer"] for row in rows}) == [0, 1, 2, 3]


def test_make_tasks_command_writes_a_file_gpt2_eval_reads(tmp_path):
    out = tmp_path / "next.jsonl"
    done = subprocess.run([sys.executable, "-m", "gpt2.evaluation.make_tasks", str(out), "--examples", "7"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(read_task("choice", out)) == 7


@pytest.mark.parametrize("args, message", [
    (["--task", "mmlu"], "--task 'mmlu': choose one of hellaswag, choice, lambada"),
    (["--limit", "5"], "--limit goes with --task"),
    (["--task", "choice", "--limit", "0"], "--limit must be at least 1, got 0"),
])
def test_task_option_mistakes_are_one_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit):
        main(["eval", "--checkpoint", str(tmp_path), "--data", str(tmp_path / "x.jsonl"), *args])
    assert message in capsys.readouterr().err


def test_the_cli_scores_lambada(tmp_path, capsys):
    char_checkpoint(tmp_path / "ckpt", "the cat sat on a mat\n")
    path = _write(tmp_path / "l.jsonl", [{"text": "the cat sat on the mat"}, {"text": "a cat sat"}])
    main(["eval", "--checkpoint", str(tmp_path / "ckpt"), "--task", "lambada", "--data", str(path),
          "--device", "cpu", "--dtype", "float32", "--threads", "1", "--json_output", "true"])
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == 2 and set(result["metrics"]) == {"acc", "perplexity"}
    assert result["chance"] is None and result["metrics"]["perplexity"] > 1


def test_results_are_appended_and_a_cut_line_stays_apart(tmp_path):
    from gpt2.evaluation.results import append_result, read_results

    path = tmp_path / "runs" / "results.jsonl"
    append_result(path, {"run": 1})
    with path.open("a") as f:
        f.write('{"run": 2, "cut sh')  # a run killed mid-write
    append_result(path, {"run": 3})
    assert read_results(path) == [{"run": 1}, {"run": 3}]
    assert path.read_text().splitlines()[0] == '{"run": 1}'
