"""`gpt2 serve` as a user runs it (the real command in its own process), used through OpenAI's
official Python client: the proof that the wire format is the one real clients speak."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

from gpt2.chat_template import encode
from gpt2.cli import main
from gpt2.generation import SamplingOptions
from gpt2.generation.chat import CHAT_STOPS
from gpt2.generation.compiled_step import cpp_compiler_found
from test_serve_helpers import save_tiny_checkpoint, tiny_text

KEY = "test-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`gpt2 serve` on a tiny checkpoint, in its own process, with its defaults (so, where a C++
    compiler is found, the compiled decoding step: compiled at start-up); yields its base URL."""
    checkpoint = save_tiny_checkpoint(tmp_path_factory.mktemp("serve") / "tiny-char")
    port = free_port()
    command = [sys.executable, "-m", "gpt2", "serve", "--checkpoint", str(checkpoint), "--port", str(port),
               "--api_key", KEY, "--device", "cpu", "--dtype", "float32", "--threads", "1"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # a cold compile of the step on a busy machine
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "gpt2 serve did not start"
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    yield url, proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key=KEY, max_retries=0)


def test_the_openai_client_lists_the_model_and_completes(client):
    [model] = client.models.list().data
    assert model.id == "tiny-char"  # the checkpoint folder's name
    done = client.completions.create(model=model.id, prompt="Hello", max_tokens=8, temperature=0, logprobs=3)
    [choice] = done.choices
    assert len(choice.text) == 8 and choice.finish_reason == "length"  # one character per token
    assert done.usage.completion_tokens == 8 and len(choice.logprobs.top_logprobs[0]) == 3


def test_the_openai_client_streams_the_same_text(client):
    whole = client.completions.create(model="tiny-char", prompt="Hello", max_tokens=10, temperature=0)
    chunks = list(client.completions.create(model="tiny-char", prompt="Hello", max_tokens=10, temperature=0,
                                            stream=True))
    assert len(chunks) == 11 and chunks[-1].choices[0].finish_reason == "length"
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text


MESSAGES = [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "Who are you?"}]


def test_the_openai_client_chats_with_the_template_whole_and_streamed(client):
    text = tiny_text()  # the served weights, here in-process: what the chat must give
    ids, _ = encode(text.tokenizer, MESSAGES, add_generation_prompt=True)
    expected = "".join(text.stream(ids, SamplingOptions(temperature=0), 12, CHAT_STOPS))
    done = client.chat.completions.create(model="tiny-char", messages=MESSAGES, max_tokens=12, temperature=0,
                                          logprobs=True, top_logprobs=2)
    [choice] = done.choices
    assert choice.message.role == "assistant" and choice.message.content == expected
    assert done.object == "chat.completion" and done.usage.prompt_tokens == len(ids)
    assert len(choice.logprobs.content) == done.usage.completion_tokens
    assert all(len(t.top_logprobs) == 2 and t.top_logprobs[0].logprob >= t.logprob - 1e-6
               for t in choice.logprobs.content)
    chunks = list(client.chat.completions.create(model="tiny-char", messages=MESSAGES, max_tokens=12,
                                                 temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason is not None
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected


def test_chat_mistakes_are_openai_errors(client):
    with pytest.raises(openai.BadRequestError, match="role"):
        client.chat.completions.create(model="tiny-char", messages=[{"role": "robot", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model="tiny-char", messages=[])
    with pytest.raises(openai.BadRequestError, match="context_length_exceeded|limit is 64"):
        client.chat.completions.create(model="tiny-char", messages=[{"role": "user", "content": "ab " * 40}])


def test_the_openai_client_raises_its_own_errors(server, client):
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.completions.create(model="tiny-char", prompt="Hello", max_tokens=10**6)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt="Hello")
    stranger = openai.OpenAI(base_url=f"{server[0]}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.models.list()


def test_ctrl_c_stops_the_server_cleanly(server):
    _, proc = server
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in stderr
    assert "serving tiny-char at http://127.0.0.1:" in stderr
    assert ("compiling the decoding step" in stderr) == cpp_compiler_found()  # --compile auto


@pytest.mark.parametrize("args, says", [
    (["--checkpoint", "{missing}"], "no such directory"),
    (["--checkpoint", "{missing}", "--port", "70000"], "--port must be in 0..65535"),
    (["--checkpoint", "{missing}", "--max_batch", "2", "--max_n", "4"], "cannot exceed --max_batch"),
    (["--checkpoint", "{missing}", "--compile", "yes"], "--compile 'yes': choose auto, true, false"),
])
def test_mistakes_are_one_line_errors(tmp_path, capsys, args, says):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", *(a.format(missing=tmp_path / "nope") for a in args)])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and says in err and err.count("\n") == 1 and "Traceback" not in err
