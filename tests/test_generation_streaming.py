"""Streaming text from ids: never a broken character, always the same text as one decode."""

import importlib.util
from pathlib import Path

import pytest

from gpt2.generation.streaming import REPLACEMENT, StreamDecoder
from gpt2.generation.text import TextStream
from gpt2.tokenizers import CharTokenizer, get_tokenizer

TEXT = "नमस्ते दुनिया 😀🙏🏽! Hello, world. काठमाडौं 🎉"


def stream_text(tokenizer, ids: list[int], context_ids: list[int] = ()) -> list[str]:
    """The pieces the text layer (a row's TextStream) emits for `ids`, the held-back tail last."""
    stream = TextStream(tokenizer, list(context_ids))
    pieces = [piece for piece in map(stream.push, ids) if piece]
    tail = stream.finish()
    return pieces + [tail] if tail else pieces


@pytest.fixture(scope="module")
def bpe():
    return get_tokenizer("gpt2")


def test_gpt2_bpe_splits_an_emoji_across_tokens(bpe):
    ids = bpe.encode("😀")
    assert ids == [47249, 222]  # two tokens of two bytes each
    assert bpe.decode(ids[:1]) == REPLACEMENT  # the first alone is a broken character


def test_an_incomplete_character_is_held_back_until_it_is_complete(bpe):
    decoder = StreamDecoder(bpe, bpe.encode("Hi"))
    assert decoder.push(47249) == ""  # first half of 😀: nothing printable yet
    assert decoder.push(222) == "😀"
    assert decoder.push(bpe.encode(" ok")) == " ok"


def test_streamed_pieces_join_to_the_full_decode_and_none_is_broken(bpe):
    ids = bpe.encode(TEXT)
    assert any(bpe.decode(ids[:k]).endswith(REPLACEMENT) for k in range(len(ids)))  # splits happen
    pieces = list(stream_text(bpe, ids))
    assert "".join(pieces) == TEXT
    assert all(REPLACEMENT not in p for p in pieces)
    assert len(pieces) > 10  # it really streams, not one piece at the end


def test_prompt_context_is_not_emitted(bpe):
    prompt = bpe.encode("नमस्ते")
    assert "".join(stream_text(bpe, bpe.encode(" 😀 दुनिया"), context_ids=prompt)) == " 😀 दुनिया"


def test_a_character_cut_off_at_the_end_is_dropped_not_printed_broken(bpe):
    ids = bpe.encode("ok 🙏🏽")[:-1]  # the last emoji's final byte never arrives
    text = "".join(stream_text(bpe, ids))
    assert text == bpe.decode(ids).rstrip(REPLACEMENT)
    assert text.startswith("ok 🙏") and REPLACEMENT not in text


def test_invalid_bytes_in_the_middle_are_shown_once_text_follows(bpe):
    ids = [47249] + bpe.encode("abc")  # half an emoji followed by ordinary text: never completes
    assert "".join(stream_text(bpe, ids)) == bpe.decode(ids)


def test_long_streams_keep_a_bounded_window(bpe):
    decoder = StreamDecoder(bpe)
    ids = bpe.encode(TEXT * 20)
    out = "".join(decoder.push(i) for i in ids) + decoder.flush()
    assert out == TEXT * 20
    assert len(decoder.ids) < 80


def test_char_tokenizer_streams_one_character_per_token():
    tok = CharTokenizer.from_text(TEXT)
    assert list(stream_text(tok, tok.encode("😀न"))) == ["😀", "न"]


NEPALI_SP = "nepalikit/tokenization/sentencepiece/model/NepaliKit_sentencepiece.model"


def test_sentencepiece_spaces_survive_streaming():
    spec = importlib.util.find_spec("nepalikit")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("nepalikit is not installed")
    path = Path(list(spec.submodule_search_locations)[0]).parent / NEPALI_SP
    tok = get_tokenizer(str(path))
    prompt, rest = "नेपाल एक सुन्दर", " देश हो। काठमाडौं राजधानी हो।"
    ids = tok.encode(prompt + rest)
    n_prompt = len(tok.encode(prompt))
    assert tok.decode(ids[:n_prompt]) == prompt  # the split falls between pieces
    streamed = "".join(stream_text(tok, ids[n_prompt:], context_ids=ids[:n_prompt]))
    assert streamed == tok.decode(ids)[len(prompt):]
