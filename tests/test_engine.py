"""The decoding engine: every row gets the tokens it would get alone, whatever shares its batch,
whenever it joined; rows leave when they finish or are cancelled; the engine knows no text."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from gpt2 import GPT2
from gpt2.errors import GPT2Error
from gpt2.generation import SamplingOptions, generate
from gpt2.generation.engine import Engine, RowSpec

pytestmark = pytest.mark.usefixtures("one_thread")
GREEDY = SamplingOptions(temperature=0)
SETTINGS = [GREEDY, SamplingOptions(temperature=1.0, top_k=None), SamplingOptions(temperature=0.7, top_k=5),
            SamplingOptions(temperature=1.2, top_k=None, top_p=0.8, repetition_penalty=1.3)]


@pytest.fixture(scope="module")
def model() -> GPT2:
    torch.manual_seed(0)
    return GPT2(tiny_config(context_length=24)).eval()


def prompt(n: int, seed: int) -> list[int]:
    return torch.randint(0, 97, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def run(engine: Engine, rows: dict[int, str]) -> dict[str, list[int]]:
    """Step until every row has finished -> each named row's tokens."""
    out: dict[str, list[int]] = {name: [] for name in rows.values()}
    while engine.rows:
        for event in engine.step():
            out[rows[event.row]].append(event.token)
    return out


def alone(model: GPT2, spec: RowSpec) -> list[int]:
    engine = Engine(model, 1)
    return run(engine, {engine.add(spec): "x"})["x"]


def test_each_row_gets_the_tokens_it_gets_alone(model: GPT2) -> None:
    # Different prompt lengths, settings and limits (30 tokens > context 24: the window slides).
    specs = [RowSpec(prompt(3 + 4 * i, i), 30 - 7 * i, SETTINGS[i], key=100 + i) for i in range(4)]
    engine = Engine(model, 4)
    together = run(engine, {engine.add(spec): str(i) for i, spec in enumerate(specs)})
    for i, spec in enumerate(specs):
        assert together[str(i)] == alone(model, spec), f"row {i} ({spec.sampling})"
        assert len(together[str(i)]) == spec.max_new_tokens


def test_a_greedy_row_equals_generate(model: GPT2) -> None:
    ids = prompt(5, 9)
    expected = generate(model, torch.tensor([ids]), 12, GREEDY)[0, 5:].tolist()
    assert alone(model, RowSpec(ids, 12, GREEDY)) == expected


def test_a_row_joining_mid_batch_gets_the_tokens_it_would_get_alone(model: GPT2) -> None:
    first, late = RowSpec(prompt(6, 1), 20, SETTINGS[1], key=7), RowSpec(prompt(2, 2), 10, SETTINGS[2], key=8)
    engine = Engine(model, 2)
    names = {engine.add(first): "first"}
    out: dict[str, list[int]] = {"first": [], "late": []}
    for step in range(20):
        if step == 6:
            names[engine.add(late)] = "late"  # between two steps, while `first` decodes
        for event in engine.step():
            out[names[event.row]].append(event.token)
    assert out["first"] == alone(model, first) and out["late"] == alone(model, late)


def test_a_cancelled_row_frees_its_slot_and_the_others_go_on(model: GPT2) -> None:
    a, b = RowSpec(prompt(4, 3), 15, GREEDY), RowSpec(prompt(5, 4), 15, SETTINGS[1], key=3)
    engine = Engine(model, 2)
    row_a, row_b = engine.add(a), engine.add(b)
    with pytest.raises(GPT2Error, match="full"):
        engine.add(a)
    tokens = [e.token for _ in range(3) for e in engine.step() if e.row == row_b]
    engine.cancel(row_a)
    assert engine.free == 1 and [row.id for row in engine.rows] == [row_b]
    row_c = engine.add(a)  # the freed slot takes a new row
    rest = run(engine, {row_b: "b", row_c: "c"})
    assert tokens + rest["b"] == alone(model, b) and rest["c"] == alone(model, a)


def test_rows_finish_on_a_stop_id_or_their_limit_and_report_logprobs(model: GPT2) -> None:
    ids = prompt(4, 5)
    free = alone(model, RowSpec(ids, 10, GREEDY))
    engine = Engine(model, 2)
    stopped = engine.add(RowSpec(ids, 10, GREEDY, stop_ids=frozenset([free[3]]), logprobs=3))
    limited = engine.add(RowSpec(ids, 2, GREEDY))
    events = [e for _ in range(10) for e in engine.step()]
    mine = [e for e in events if e.row == stopped]
    first_stop = free.index(free[3])
    assert [e.token for e in mine] == free[:first_stop + 1] and mine[-1].finished == "stop"
    assert [e.finished for e in events if e.row == limited] == [None, "length"]
    assert not engine.rows and engine.free == 2
    for event in mine:
        logp = torch.log_softmax(event.logits.float(), dim=-1)
        assert event.logprob == pytest.approx(float(logp[event.token]), abs=1e-5)
        assert [i for i, _ in event.top] == logp.topk(3).indices.tolist()  # best first
        assert event.top[0][0] == event.token  # greedy: the chosen token is the best one


def test_queuing_the_next_step_before_reading_the_tokens_changes_no_event(model: GPT2) -> None:
    """On a GPU the engine queues the next forward pass before the host reads the drawn tokens
    (Engine.step). The events must be the plain order's, with rows that stop on an id, reach
    their limit, slide their window (context 24), join late and are cancelled."""
    ids = prompt(4, 5)
    stop = alone(model, RowSpec(ids, 12, GREEDY))[5]

    def events(run_ahead: bool) -> tuple[list[tuple], int]:
        engine = Engine(model, 3)
        engine.run_ahead = run_ahead
        passes = []
        forward = engine._dynamic_step
        engine._dynamic_step = lambda tokens, lengths: passes.append(len(lengths)) or forward(tokens, lengths)
        engine.add(RowSpec(ids, 12, GREEDY, stop_ids=frozenset([stop]), logprobs=2))
        engine.add(RowSpec(prompt(9, 6), 30, SETTINGS[3], key=4))
        out = []
        for step in range(30):
            if step == 3:
                engine.add(RowSpec(prompt(2, 7), 6, SETTINGS[2], key=5, logprobs=1))
            if step == 20:
                engine.cancel(1)
            out += engine.step()
        return out, sum(passes)

    plain, plain_rows = events(False)
    ahead, ahead_rows = events(True)
    assert [(e.row, e.token, e.finished, [i for i, _ in e.top]) for e in ahead] == \
        [(e.row, e.token, e.finished, [i for i, _ in e.top]) for e in plain] and len(plain) == 2 + 20 + 6
    for a, b in zip(ahead, plain, strict=True):  # a batch of 2 or 1 rounds a row's logits apart
        torch.testing.assert_close(a.logits, b.logits, rtol=1e-5, atol=1e-5)
        assert a.logprob == pytest.approx(b.logprob, abs=1e-5)
    assert ahead_rows == plain_rows + 1  # the stop-id row's last slot was computed ahead, for nothing


@pytest.mark.parametrize("spec, message", [
    (RowSpec([], 5), "1 to 24 tokens"), (RowSpec(list(range(25)), 5), "1 to 24 tokens"),
    (RowSpec([97], 5), "outside the vocabulary"), (RowSpec([1], 0), "max_new_tokens"),
])
def test_bad_rows_are_refused_and_change_nothing(model: GPT2, spec: RowSpec, message: str) -> None:
    engine = Engine(model, 2)
    with pytest.raises(GPT2Error, match=message):
        engine.add(spec)
    assert engine.free == 2 and engine.step() == []


def test_the_engine_imports_nothing_that_knows_text() -> None:
    source = Path(__file__).resolve().parents[1] / "src" / "gpt2" / "generation"
    seen, todo = set(), ["engine"]
    while todo:  # every gpt2.generation module the engine reaches
        name = todo.pop()
        seen.add(name)
        for node in ast.walk(ast.parse((source / f"{name}.py").read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gpt2"):
                assert not node.module.startswith("gpt2.tokenizers"), f"{name}.py imports {node.module}"
                assert "stopping" not in node.module and "streaming" not in node.module, name
                sub = node.module.removeprefix("gpt2.generation.")
                if node.module.startswith("gpt2.generation.") and sub not in seen:
                    todo.append(sub)
    assert {"engine", "kv_slots", "row_sampling", "static_cache"} <= seen


def test_the_text_layer_keeps_one_engine_even_when_a_reader_stops_early() -> None:
    from test_serve_helpers import tiny_text

    text = tiny_text()
    stream = text.stream(text.encode("ab"), GREEDY, 30)
    next(stream)
    stream.close()  # the reader went away after one piece: its row must leave the engine
    engine = text.engine
    assert engine is not None and engine.rows == []
    assert text.complete("xy", GREEDY, 20) == tiny_text().complete("xy", GREEDY, 20)
    assert text.engine is engine  # allocated (and on CUDA captured) once
