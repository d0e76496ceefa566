"""`gpt2 chat` as a user runs it (a real process reading lines), and the conversation it keeps:
the template applied, replies streamed, the oldest exchanges dropped to fit the context."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gpt2.chat_template import encode
from gpt2.checkpoint import save_checkpoint
from gpt2.errors import GPT2Error
from gpt2.generation import SamplingOptions
from gpt2.generation.chat import CHAT_STOPS, ChatSession
from gpt2.generation.text import TextGenerator
from gpt2.tokenizers import CharTokenizer
from test_serve_helpers import CORPUS, tiny_model

GREEDY = SamplingOptions(temperature=0)
SYSTEM = "You answer briefly."


def tiny_text(context_length: int = 256) -> TextGenerator:
    tokenizer = CharTokenizer.from_text(CORPUS)
    return TextGenerator(tiny_model(tokenizer, context_length=context_length), tokenizer)


def test_a_session_renders_the_template_and_keeps_the_history() -> None:
    text = tiny_text()
    session = ChatSession(text, GREEDY, 6, SYSTEM)
    first = "".join(session.reply("Hi"))
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi"}]
    ids, _ = encode(text.tokenizer, messages, add_generation_prompt=True)
    assert first == "".join(text.stream(ids, GREEDY, 6, CHAT_STOPS))
    second = "".join(session.reply("Who?"))
    messages += [{"role": "assistant", "content": first.strip()}, {"role": "user", "content": "Who?"}]
    ids, _ = encode(text.tokenizer, messages, add_generation_prompt=True)
    assert second == "".join(text.stream(ids, GREEDY, 6, CHAT_STOPS))
    assert [m["role"] for m in session.history] == ["user", "assistant"] * 2


def test_the_oldest_exchanges_leave_when_the_conversation_outgrows_the_context() -> None:
    text = tiny_text(context_length=96)
    session = ChatSession(text, GREEDY, 8, SYSTEM)
    for turn in range(6):
        "".join(session.reply(f"message {'x' * turn}"))
    messages = [{"role": "system", "content": SYSTEM}, *session.history]
    assert len(encode(text.tokenizer, messages)[0]) <= 96 - 8  # it still fits
    assert session.history[-2]["content"] == "message xxxxx" and len(session.history) < 12  # oldest dropped
    with pytest.raises(GPT2Error, match="write less or lower --max_new_tokens"):
        "".join(session.reply("y" * 100))


@pytest.mark.slow
def test_gpt2_chat_answers_each_line_and_skips_what_it_cannot_encode(tmp_path) -> None:
    text = tiny_text()
    ckpt = tmp_path / "ckpt"
    save_checkpoint(ckpt, text.model, tokenizer=text.tokenizer)
    command = [sys.executable, "-m", "gpt2", "chat", "--checkpoint", str(ckpt), "--system", SYSTEM,
               "--temperature", "0", "--max_new_tokens", "6", "--dtype", "float32"]
    proc = subprocess.run(command, input="Hi\n\u0905\nWho?\n/reset\nHi\n", capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    session = ChatSession(tiny_text(), GREEDY, 6, SYSTEM)
    expected = ["".join(session.reply("Hi")), "".join(session.reply("Who?"))]
    session.reset()
    expected.append("".join(session.reply("Hi")))
    assert proc.stdout.splitlines() == expected  # the Devanagari line was reported and skipped
    assert proc.stderr.count("gpt2: error:") == 1
