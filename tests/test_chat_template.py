"""The chat template: its exact text, the round trip through every kind of tokenizer, and the
mask that says which tokens the assistant wrote (the only ones fine-tuning learns)."""

from __future__ import annotations

import pytest

from gpt2.chat_template import encode, render
from gpt2.data.sources import resolve_sources
from gpt2.data.train_tokenizer import SentencePieceOptions, train_sentencepiece
from gpt2.errors import GPT2Error
from gpt2.finetune.examples import IGNORE, chat_row
from gpt2.tokenizers import get_tokenizer

CHAT = [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Who speaks first?"},
        {"role": "assistant", "content": "The witch.\nThen thunder."},
        {"role": "user", "content": "And <|endoftext|> last?"}]
CORPUS = ("System: User: Assistant: Be brief. Who speaks first? The witch. Then thunder. And last? "
          "<|> the quick brown fox jumps over the lazy dog\n") * 20


def test_render_is_the_documented_text():
    assert render(CHAT) == ("System: Be brief.\nUser: Who speaks first?\nAssistant: The witch.\nThen thunder."
                            "<|endoftext|>\nUser: And <|endoftext|> last?\nAssistant:")
    assert render(CHAT[:3], add_generation_prompt=False).endswith("thunder.<|endoftext|>")
    assert render(CHAT[1:2]) == "User: Who speaks first?\nAssistant:"


@pytest.fixture(scope="module", params=["char", "gpt2", "sentencepiece"])
def tokenizer(request, tmp_path_factory):
    if request.param == "char":
        return get_tokenizer("char", text=CORPUS)
    if request.param == "gpt2":
        return get_tokenizer("gpt2")
    path = tmp_path_factory.mktemp("sp") / "corpus.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return train_sentencepiece(resolve_sources([str(path)]),
                               options=SentencePieceOptions(vocab_size=330, model_type="bpe", threads=1))


def test_round_trip_through_every_tokenizer(tokenizer):
    ids, own = encode(tokenizer, CHAT, add_generation_prompt=True)
    assert tokenizer.decode(ids) == render(CHAT, end_of_text=tokenizer.decode([tokenizer.eot_id]))
    assert len(own) == len(ids)
    # A typed "<|endoftext|>" is text, not the end-of-text id: only the assistant's turn ends with one.
    assert ids.count(tokenizer.eot_id) == 1


def test_only_the_assistants_tokens_are_marked(tokenizer):
    ids, own = encode(tokenizer, CHAT[:3])
    marked = [i for i, m in zip(ids, own, strict=True) if m]
    eot = tokenizer.decode([tokenizer.eot_id])  # "<|endoftext|>", or "" for SentencePiece
    assert tokenizer.decode(marked) == " The witch.\nThen thunder." + eot
    assert marked[-1] == tokenizer.eot_id
    unmarked = [i for i, m in zip(ids, own, strict=True) if not m]
    assert tokenizer.decode(unmarked) == "System: Be brief.\nUser: Who speaks first?\nAssistant:"


def test_targets_are_masked_token_by_token(tokenizer):
    ids, own = encode(tokenizer, CHAT[:3])
    x, y = chat_row(tokenizer, CHAT[:3], "test")
    assert x == ids[:-1] and len(y) == len(x)
    for t in range(len(x)):  # position t predicts token t + 1: learned iff the assistant wrote it
        assert y[t] == (ids[t + 1] if own[t + 1] else IGNORE)
    assert y[-1] == tokenizer.eot_id  # the model learns to stop
    assert sum(v != IGNORE for v in y) == sum(own)


def test_bad_messages_are_refused_in_one_line():
    with pytest.raises(GPT2Error, match="unknown role 'bot'"):
        render([{"role": "bot", "content": "hi"}])
    with pytest.raises(GPT2Error, match="non-empty list"):
        render([])
    with pytest.raises(GPT2Error, match="message 1 needs a 'role' and a string 'content'"):
        render([{"role": "user"}])
    with pytest.raises(GPT2Error, match="not be encoded|cannot be encoded"):
        chat_row(get_tokenizer("char", text="abc"), [{"role": "user", "content": "zzz"},
                                                     {"role": "assistant", "content": "a"}], "f.jsonl line 2")
