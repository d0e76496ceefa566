"""`gpt2 serve`'s HTTP API against a real server on loopback: OpenAI's wire format, streaming,
logprobs, stop strings, batching, cancellation on disconnect, limits and errors."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch

from gpt2.generation.options import SamplingOptions
from test_serve_helpers import MODEL, running_server, tiny_text

GREEDY = SamplingOptions(temperature=0, top_k=None)
LONG = 100_000  # a request that would take minutes: only a disconnect ends it in time


@pytest.fixture(scope="module")
def text():
    return tiny_text()


@pytest.fixture(scope="module")
def server(text):
    with running_server(text, max_batch=4, max_queue=8, max_tokens_limit=LONG, max_n=4,
                        max_request_bytes=4096) as server:
        yield server


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def complete(client: httpx.Client, **body) -> dict:
    response = client.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def stream(client: httpx.Client, **body) -> list[dict | str]:
    """Every server-sent event of a streamed completion: parsed JSON, or the final "[DONE]"."""
    with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    return [line[6:] if line == "data: [DONE]" else json.loads(line[6:]) for line in lines]


def wait_until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_models_and_health(client):
    assert client.get("/v1/models").json()["data"][0]["id"] == MODEL
    assert client.get(f"/v1/models/{MODEL}").json()["object"] == "model"
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["queued"] == 0


def test_a_greedy_completion_is_the_text_generators_continuation(client, text):
    body = complete(client, prompt="Hello, world", max_tokens=20, temperature=0)
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-") and body["model"] == MODEL
    [choice] = body["choices"]
    assert choice["text"] == text.complete("Hello, world", GREEDY, 20)
    assert choice["finish_reason"] == "length" and choice["logprobs"] is None and choice["index"] == 0
    assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32}


def test_a_stream_is_server_sent_events_ending_in_done(client):
    events = stream(client, prompt="Hello, world", max_tokens=20, temperature=0)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert all(c["object"] == "text_completion" for c in chunks)
    whole = complete(client, prompt="Hello, world", max_tokens=20, temperature=0)["choices"][0]["text"]
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 20 + ["length"]


def test_usage_at_the_end_of_a_stream_when_asked(client):
    events = stream(client, prompt="ab", max_tokens=3, stream_options={"include_usage": True})
    assert events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] == 3


def test_logprobs_are_the_models_log_probabilities(client, text):
    body = complete(client, prompt="Hello, world", max_tokens=6, temperature=0, logprobs=5)
    logprobs = body["choices"][0]["logprobs"]
    assert "".join(logprobs["tokens"]) == body["choices"][0]["text"]
    assert logprobs["text_offset"] == list(range(6))
    for token, chosen, top in zip(logprobs["tokens"], logprobs["token_logprobs"], logprobs["top_logprobs"],
                                  strict=True):
        assert len(top) == 5 and top[token] == pytest.approx(chosen)  # greedy: the chosen one is the best
        assert max(top.values()) == pytest.approx(chosen)
    ids = torch.tensor([text.tokenizer.encode("Hello, world")])
    with torch.no_grad():
        first = torch.log_softmax(text.model(ids)[0, -1].float(), dim=-1)
    expected = {text.tokenizer.decode([i]): v for v, i in zip(*first.topk(5), strict=True)}
    assert logprobs["top_logprobs"][0] == pytest.approx({k: float(v) for k, v in expected.items()}, abs=1e-5)


def test_a_stop_string_ends_the_text_just_before_it(client, text):
    full = text.complete("Hello, world", GREEDY, 20)  # "dddxxx..."
    cut = full.index("dx")
    body = complete(client, prompt="Hello, world", max_tokens=20, temperature=0, stop=["dx", "never"])
    assert body["choices"][0]["text"] == full[:cut] and body["choices"][0]["finish_reason"] == "stop"
    chunks = stream(client, prompt="Hello, world", max_tokens=20, temperature=0, stop="dx")[:-1]
    assert "".join(c["choices"][0]["text"] for c in chunks) == full[:cut]  # the held-back "d" never leaks
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_a_seed_makes_sampling_reproducible_and_n_gives_n_choices(client):
    body = dict(prompt="Once", max_tokens=12, temperature=1.0, top_p=0.9, top_k=20, seed=7, n=2)
    first, second = complete(client, **body), complete(client, **body)
    assert [c["text"] for c in first["choices"]] == [c["text"] for c in second["choices"]]
    assert [c["index"] for c in first["choices"]] == [0, 1]
    other = complete(client, **{**body, "seed": 8})
    assert [c["text"] for c in other["choices"]] != [c["text"] for c in first["choices"]]


@pytest.mark.parametrize("body, status, says", [
    ('{"prompt": "a", ', 400, "not valid JSON"),
    ('{"prompt": 3}', 400, "prompt"),
    ('{"prompt": "a", "max_tokens": "3"}', 400, "max_tokens"),
    ('{"prompt": "a", "temperature": true}', 400, "temperature"),
    ('{"prompt": "a", "temprature": 0.5}', 400, "unknown field 'temprature'"),
    ('{"max_tokens": 3}', 400, "missing required field 'prompt'"),
    ('{"prompt": "a", "temperature": 3}', 400, "temperature"),
    ('{"prompt": "a", "stop": [""]}', 400, "stop"),
    ('{"prompt": "\\u00e9t\\u00e9"}', 400, "cannot be encoded"),  # not in the char vocabulary
    ('{"prompt": "' + "a" * 65 + '"}', 400, "the limit is 64"),
    ('{"prompt": "a", "max_tokens": 100001}', 400, "max_tokens"),
    ('{"prompt": "a", "n": 5}', 400, "at most 4"),
    ('{"prompt": "a", "seed": -1}', 400, "seed"),
    ('{"prompt": "a", "seed": 9223372036854775808}', 400, "seed"),  # 2**63: outside a torch seed
    ('{"messages": [{"role": "user", "content": "a"}]}', 400, "missing required field 'prompt'"),
    ('{"prompt": "a", "model": "gpt-4"}', 404, "does not exist"),
    ('{"prompt": "' + "a" * 5000 + '"}', 413, "the limit is 4096"),
])
def test_bad_requests_get_a_json_error_in_openais_shape(client, body, status, says):
    response = client.post("/v1/completions", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert says in error["message"] and set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text


def test_a_body_sent_in_chunks_is_cut_off_at_the_limit(client):
    chunks = (b'{"prompt": "' + b"a" * 1000 for _ in range(5))  # no Content-Length: read until too long
    response = client.post("/v1/completions", content=chunks, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "over the limit of 4096" in response.json()["error"]["message"]


def test_unknown_routes_and_methods_answer_json(client):
    assert client.get("/v1/nothing").json()["error"]["type"] == "not_found_error"
    assert client.get("/v1/completions").status_code == 405


def test_requests_join_a_running_batch_with_their_own_settings_and_a_disconnect_frees_its_row(client, text):
    bodies = [dict(prompt="a", max_tokens=12, temperature=0),  # prompts of different lengths,
              dict(prompt="Hello, world", max_tokens=9, temperature=1.0, seed=5),  # and every row
              dict(prompt="The quick", max_tokens=12, temperature=0.7, top_k=5, seed=6)]  # its own settings
    alone = [complete(client, **body)["choices"][0]["text"] for body in bodies]
    assert alone[0] == text.complete("a", GREEDY, 12)
    before = client.get("/health").json()
    with client.stream("POST", "/v1/completions", json={"prompt": "a", "max_tokens": LONG, "temperature": 0,
                                                        "stream": True}) as long:
        lines = long.iter_lines()  # (kept: a dropped iterator would close the connection)
        assert next(lines).startswith("data: ")  # it is being decoded
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(complete, client, **body) for body in bodies]
            answers = [f.result()["choices"][0]["text"] for f in futures]  # done while `long` runs on
        wait_until(lambda: client.get("/health").json()["running"] == 1)  # `long` alone again
        during = client.get("/health").json()
        long.close()  # the client goes away: its row must leave the batch at once
    assert answers == alone  # each row gets what it gets alone, whatever shares its batch
    assert during["running"] == 1 and during["largest_batch"] == 4 and during["queued"] == 0
    wait_until(lambda: client.get("/health").json()["running"] == 0)
    after = client.get("/health").json()
    assert after["tokens"] - before["tokens"] < LONG / 10


def test_a_request_beyond_the_free_rows_waits_and_runs_as_soon_as_a_row_frees(text):
    body = {"prompt": "a", "max_tokens": LONG, "temperature": 0, "stream": True}
    with running_server(text, max_batch=1, max_n=1, max_queue=4, max_tokens_limit=LONG) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client, \
            client.stream("POST", "/v1/completions", json=body) as long:
        lines = long.iter_lines()
        assert next(lines).startswith("data: ")
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(complete, client, prompt="xyz", max_tokens=5, temperature=0)
            wait_until(lambda: client.get("/health").json()["queued"] == 1)
            long.close()
            assert waiting.result()["choices"][0]["text"] == text.complete("xyz", GREEDY, 5)


def test_a_waiting_client_that_gives_up_is_cancelled(client):
    before = client.get("/health").json()["tokens"]
    with pytest.raises(httpx.ReadTimeout):
        client.post("/v1/completions", json={"prompt": "a", "max_tokens": LONG, "temperature": 0},
                    timeout=1.0)
    wait_until(lambda: client.get("/health").json()["running"] == 0)
    assert client.get("/health").json()["tokens"] - before < LONG / 10


def test_a_full_queue_answers_429_and_a_queued_client_that_leaves_never_runs(text):
    with running_server(text, max_batch=1, max_n=1, max_queue=1, max_tokens_limit=LONG) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        body = {"prompt": "a", "max_tokens": LONG, "temperature": 0, "stream": True}
        with client.stream("POST", "/v1/completions", json=body) as running:
            lines = running.iter_lines()
            assert next(lines).startswith("data: ")
            with client.stream("POST", "/v1/completions", json=body) as waiting:
                wait_until(lambda: client.get("/health").json()["queued"] == 1)
                refused = client.post("/v1/completions", json={"prompt": "a"})
                assert refused.status_code == 429 and refused.json()["error"]["code"] == "queue_full"
                waiting.close()
            wait_until(lambda: client.get("/health").json()["queued"] == 0)
        wait_until(lambda: client.get("/health").json()["running"] == 0)
        assert client.get("/health").json()["jobs"] == 1  # the one that left while waiting never ran
        assert complete(client, prompt="a", max_tokens=2)["choices"][0]["finish_reason"] == "length"


def test_an_api_key_is_required_when_set(text):
    with running_server(text, api_key="s3cret") as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/health").status_code == 200  # liveness needs no key
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            response = client.post("/v1/completions", json={"prompt": "a"}, headers=headers)
            assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
        assert client.get("/v1/models").status_code == 401
        ok = client.post("/v1/completions", json={"prompt": "a", "max_tokens": 2},
                         headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 2
