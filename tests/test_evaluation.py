"""Benchmark scoring: the batched fast path equals the one-at-a-time reference and transformers'
GPT-2 on the same weights, and the metrics follow their definitions (hand-computed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from eval_helpers import bpe_checkpoint, char_checkpoint, shakespeare_task, write_jsonl
from gpt2.cli import main
from gpt2.evaluation.encoding import EndingScore, encode_pair
from gpt2.evaluation.metrics import task_metrics
from gpt2.evaluation.reference import score_examples_reference
from gpt2.evaluation.results import read_results
from gpt2.evaluation.scoring import score_examples
from gpt2.evaluation.tasks import Example, read_task
from gpt2.generation import generate_text


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a task file, a char checkpoint covering its characters) with a 256-token context: rows of
    ~80-180 characters fit (and are packed), or are cut at the left with context_length=48."""
    tmp = tmp_path_factory.mktemp("shakespeare")
    task = shakespeare_task(tmp / "next_line.jsonl")
    char_checkpoint(tmp / "ckpt", task.read_text(encoding="utf-8"), context_length=256)
    return task, tmp / "ckpt"


def _assert_same_scores(fast: list[list[EndingScore]], slow: list[list[EndingScore]]) -> None:
    assert [[s.tokens for s in row] for row in fast] == [[s.tokens for s in row] for row in slow]
    assert [[s.greedy for s in row] for row in fast] == [[s.greedy for s in row] for row in slow]
    torch.testing.assert_close(torch.tensor([[s.logprob for s in row] for row in fast], dtype=torch.float64),
                               torch.tensor([[s.logprob for s in row] for row in slow], dtype=torch.float64),
                               rtol=0, atol=1e-4)


@pytest.mark.parametrize("context_length", [None, 48])
def test_batched_scores_equal_the_reference(shakespeare, context_length, one_thread):
    """Packed endings (all rows fit) and single rows (cut windows) both equal the reference."""
    from gpt2 import GPT2
    from gpt2.evaluation.encoding import example_rows
    from gpt2.evaluation.packing import example_units
    from gpt2.tokenizers import load_tokenizer

    task, ckpt = shakespeare
    model, tokenizer = GPT2.from_pretrained(ckpt), load_tokenizer(ckpt)
    examples = read_task("choice", task)
    fast = score_examples(model, tokenizer, examples, batch_size=7, context_length=context_length)  # ragged
    slow = score_examples_reference(model, tokenizer, examples, context_length=context_length)
    _assert_same_scores(fast, slow)
    assert task_metrics("choice", examples, fast) == task_metrics("choice", examples, slow)
    units = [len(example_units(example_rows(tokenizer, e, context_length or 256), 0)) for e in examples]
    assert set(units) == ({1} if context_length is None else {4})  # one packed unit per example, or cut rows


def test_log_likelihoods_equal_transformers_gpt2(tmp_path, one_thread):
    transformers = pytest.importorskip("transformers")
    model, tokenizer = bpe_checkpoint(tmp_path / "ckpt")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "ckpt").eval()
    rows = [{"ctx": "A man is sitting on a roof. He", "label": 3,
             "endings": ["is using wrap to wrap a pair of skis.", "starts pulling up roofing on a roof.",
                         "is ripping level tiles off.", "holds a rope."]},
            {"ctx": "The cat", "endings": ["sat.", "ran up the tall tree in the garden."], "label": 0}]
    examples = read_task("hellaswag", write_jsonl(tmp_path / "h.jsonl", rows))
    ours = score_examples(model, tokenizer, examples, batch_size=4)
    for example, scores in zip(examples, ours, strict=True):
        for continuation, score in zip(example.continuations, scores, strict=True):
            context_ids, ids = encode_pair(tokenizer, example.context, continuation)
            with torch.no_grad():
                log_probs = hf(torch.tensor([context_ids + ids])).logits[0].log_softmax(-1)  # (T, V)
            expected = sum(log_probs[len(context_ids) - 1 + i, t].item() for i, t in enumerate(ids))
            assert score.tokens == len(ids) and score.logprob == pytest.approx(expected, abs=1e-4)


def test_metrics_match_hand_computation(tmp_path):
    """Three examples where the three normalisations disagree; ties go to the first choice."""
    rows = [{"ctx": "c", "endings": ["a", "bbbb", "cc"], "label": 1},
            {"ctx": "c", "endings": ["xx", "y"], "label": 0},
            {"ctx": "c", "endings": ["é", "zz"], "label": 0}]  # "é": 1 character, 2 UTF-8 bytes
    examples = read_task("hellaswag", write_jsonl(tmp_path / "three.jsonl", rows))
    scores = [[EndingScore(-2.0, 1, False), EndingScore(-4.0, 1, False), EndingScore(-3.0, 1, False)],
              [EndingScore(-3.0, 3, False), EndingScore(-2.0, 1, False)],
              [EndingScore(-2.0, 1, False), EndingScore(-2.0, 2, False)]]
    # acc (sums):        1: argmax(-2,-4,-3)=0 x   2: argmax(-3,-2)=1 x      3: tie -> 0 ok   -> 1/3
    # per token:         1: (-2,-4,-3) -> 0 x      2: (-1,-2) -> 0 ok        3: (-2,-1) -> 1 x -> 1/3
    # per byte:          1: (-2,-1,-1.5) -> 1 ok   2: (-1.5,-2) -> 0 ok      3: (-1,-1) -> 0 ok -> 3/3
    assert task_metrics("hellaswag", examples, scores) == {"acc": 1 / 3, "acc_norm_token": 1 / 3,
                                                           "acc_norm_byte": 1.0}
    assert [e.continuations[0] for e in examples] == [" a", " xx", " é"]  # HellaSwag's joining space


def test_cloze_greedy_flag_is_greedy_decoding(shakespeare, one_thread):
    """acc on a cloze item is 1 exactly when greedy decoding from the context writes the target."""
    from gpt2 import GPT2
    from gpt2.tokenizers import load_tokenizer

    _, ckpt = shakespeare
    model, tokenizer = GPT2.from_pretrained(ckpt), load_tokenizer(ckpt)
    for context in ("Lay on our royal sword your", "Swear by the duty that", "Our part therein we"):
        ids = torch.tensor([tokenizer.encode(context)])
        new_ids = generate_text(model, ids, 5, 48)[0, ids.size(1):].tolist()
        if tokenizer.eot_id not in new_ids:  # a random model may pick end-of-text, which is no text
            break
    greedy = tokenizer.decode(new_ids)
    wrong = greedy[:-1] + next(c for c in "xyzq" if c != greedy[-1])
    examples = [Example(context, (t,), (t,), 0, "here:1") for t in (greedy, wrong)]
    scores = score_examples(model, tokenizer, examples, batch_size=2)
    assert [s[0].greedy for s in scores] == [True, False]
    assert task_metrics("lambada", examples, scores)["acc"] == 0.5
    _assert_same_scores(scores, score_examples_reference(model, tokenizer, examples))


def test_lambada_lines_split_at_the_last_space(tmp_path):
    path = write_jsonl(tmp_path / "l.jsonl", [{"text": "he said to his friend Bob"}])
    examples = read_task("lambada", path)
    assert (examples[0].context, examples[0].continuations) == ("he said to his friend", (" Bob",))


def test_cli_scores_a_task_and_appends_results(shakespeare, tmp_path, capsys):
    task, ckpt = shakespeare
    results = tmp_path / "results.jsonl"
    args = ["eval", "--checkpoint", str(ckpt), "--task", "choice", "--data", str(task), "--limit", "5",
            "--results", str(results), "--device", "cpu", "--dtype", "float32", "--threads", "1",
            "--progress", "false", "--batch_size", "6"]
    main([*args, "--json_output", "true"])
    printed = json.loads(capsys.readouterr().out)
    main(args)
    assert "choice: acc " in capsys.readouterr().out
    rows = read_results(results)
    assert len(rows) == 2 and rows[0]["examples"] == 5 and rows[0]["metrics"] == printed["metrics"]
    assert set(rows[0]["definitions"]) == {"acc", "acc_norm_token", "acc_norm_byte"}
    assert rows[0]["task"] == "choice" and rows[0]["checkpoint"] == str(ckpt.resolve()) and rows[0]["date"]
