"""Tokenizer interface: GPT-2 BPE (offline), char, SentencePiece loading, save/load identity."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2.tokenizers import (
    CharTokenizer,
    GPT2BPETokenizer,
    SentencePieceTokenizer,
    find_tokenizer,
    get_tokenizer,
    load_identity,
    load_tokenizer,
)
from gpt2.tokenizers.gpt2_bpe import SHA256, find_gpt2_files

NEPALIKIT_MODEL = "tokenization/sentencepiece/model/NepaliKit_sentencepiece.model"


@pytest.fixture(scope="module")
def bpe() -> GPT2BPETokenizer:
    return GPT2BPETokenizer()


def nepalikit_model() -> Path:
    spec = importlib.util.find_spec("nepalikit")
    if spec is None:
        pytest.skip("nepalikit is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / NEPALIKIT_MODEL


def test_gpt2_bpe_known_ids(bpe):
    assert bpe.encode("Hello world") == [15496, 995]
    assert bpe.encode("<|endoftext|>") == [50256]
    assert bpe.eot_id == 50256 and bpe.vocab_size == 50257
    assert bpe.special_tokens == {"<|endoftext|>": 50256}


def test_gpt2_bpe_special_as_text(bpe):
    ids = bpe.encode("<|endoftext|>", allow_special=False)
    assert 50256 not in ids and bpe.decode(ids) == "<|endoftext|>"


def test_gpt2_files_match_tiktoken_pins():
    import hashlib

    for name, data in find_gpt2_files().items():
        assert hashlib.sha256(data).hexdigest() == SHA256[name]


def test_gpt2_bpe_rejects_corrupted_files(tmp_path, bpe):
    bpe.save(tmp_path)
    merges = (tmp_path / "merges.txt").read_bytes().splitlines(keepends=True)
    (tmp_path / "merges.txt").write_bytes(b"".join([merges[0], merges[2], merges[1], *merges[3:]]))
    with pytest.raises(ValueError, match="sha256"):
        load_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="disagree"):
        GPT2BPETokenizer.from_directory(tmp_path)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_gpt2_bpe_round_trips_unicode(bpe, s):
    assert bpe.decode(bpe.encode(s)) == s


def test_gpt2_bpe_saved_dir_loads_with_transformers(tmp_path, bpe):
    transformers = pytest.importorskip("transformers")
    bpe.save(tmp_path)
    hf = transformers.GPT2Tokenizer.from_pretrained(tmp_path)
    text = "The quick brown fox, naïve café — 世界!"
    assert hf.encode(text) == bpe.encode(text)


def test_directory_saved_by_transformers_loads(tmp_path, bpe):
    transformers = pytest.importorskip("transformers")
    bpe.save(tmp_path / "ours")
    transformers.GPT2Tokenizer.from_pretrained(tmp_path / "ours").save_pretrained(tmp_path / "hf")
    hf = get_tokenizer(tmp_path / "hf")  # vocab.json + merges.txt, or (recent versions) tokenizer.json
    text = "Hello world <|endoftext|> naïve 世界"
    assert hf.encode(text) == bpe.encode(text) and hf.eot_id == 50256


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1))
def test_char_round_trips(s):
    tok = CharTokenizer.from_text(s)
    assert tok.decode(tok.encode(s)) == s
    assert tok.encode(s) == tok.encode_reference(s)  # fast path agrees with the reference


def test_char_vocab_and_eot():
    tok = CharTokenizer.from_text("hello world")
    assert tok.chars == sorted(set("hello world")) and tok.vocab_size == len(tok.chars) + 1
    assert tok.encode("lo<|endoftext|>he") == [tok.stoi["l"], tok.stoi["o"], tok.eot_id, tok.stoi["h"],
                                               tok.stoi["e"]]
    assert tok.decode([tok.eot_id]) == "<|endoftext|>"


def test_char_unknown_character_is_a_clear_error():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"'z' \(U\+007A\) is not in the char .* \(at position 2\)"):
        tok.encode("abz")
    with pytest.raises(ValueError, match="outside the char vocabulary"):
        tok.decode([99])


def test_nepalikit_model_round_trips_nepali():
    tok = get_tokenizer(nepalikit_model())
    assert tok.name == "sentencepiece" and tok.vocab_size == 10_000
    text = "नेपाल हिमालयको काखमा रहेको सुन्दर देश हो। म काठमाडौंमा बस्छु।"
    ids = tok.encode(text)
    assert 1 < len(ids) < len(text) and tok.decode(ids) == text


@pytest.mark.parametrize("kind", ["gpt2", "char", "nepali"])
def test_save_load_keeps_identity_and_ids(tmp_path, kind, bpe):
    text = "Once upon a time, in a land far away.\n"
    tok = {"gpt2": lambda: bpe, "char": lambda: CharTokenizer.from_text(text),
           "nepali": lambda: get_tokenizer(nepalikit_model())}[kind]()
    tok.save(tmp_path / "ckpt")
    assert find_tokenizer(tmp_path / "ckpt") is not None
    assert not (tmp_path / "ckpt" / "config.json").exists()
    assert not (tmp_path / "ckpt" / "model.safetensors").exists()
    again = get_tokenizer(tmp_path / "ckpt")
    assert type(again) is type(tok)
    assert again.identity() == tok.identity()
    assert again.encode(text) == tok.encode(text) and again.eot_id == tok.eot_id
    meta = json.loads((tmp_path / "ckpt" / "gpt2_tokenizer.json").read_text())
    assert meta["kind"] == tok.name


def test_identities_differ_between_vocabularies():
    assert CharTokenizer.from_text("abc").identity() != CharTokenizer.from_text("abd").identity()


def test_factory_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown tokenizer 'bert'"):
        get_tokenizer("bert")
    with pytest.raises(ValueError, match="pass text="):
        get_tokenizer("char")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        get_tokenizer(tmp_path / "missing.model")
    with pytest.raises(FileNotFoundError, match="holds no tokenizer"):
        load_tokenizer(tmp_path)
    (tmp_path / "bad.model").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="is not a SentencePiece model"):
        SentencePieceTokenizer.from_file(tmp_path / "bad.model")


def test_fast_and_checked_rank_loading_agree():
    from gpt2.tokenizers.gpt2_bpe import _to_bytes_reference, _token_decoder, mergeable_ranks

    files = find_gpt2_files()
    fast = mergeable_ranks(files["encoder.json"], files["vocab.bpe"])  # pinned files: no cross-check
    checked = mergeable_ranks(files["encoder.json"], files["vocab.bpe"] + b"\n")  # other hash: full check
    assert fast == checked and len(fast) == 50256
    decode = _token_decoder()
    for token in list(json.loads(files["encoder.json"]))[:3000:7]:
        assert decode(token) == _to_bytes_reference(token)


def test_hf_tokenizer_json_outside_the_byte_alphabet_is_refused(tmp_path):
    path = tmp_path / "tokenizer.json"
    spec = {"model": {"type": "BPE", "vocab": {"\u4e00": 0, "a": 1}, "merges": ["\u4e00 a"]},
            "pre_tokenizer": {"type": "ByteLevel"}}
    path.write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(ValueError, match="is not a GPT-2 style byte-level BPE tokenizer"):
        GPT2BPETokenizer.from_hf_tokenizer_json(path)


def test_damaged_tokenizer_json_names_the_file(tmp_path):
    CharTokenizer.from_text("abc").save(tmp_path)
    (tmp_path / "gpt2_tokenizer.json").write_text('{"kind": "char",', encoding="utf-8")
    for load in (load_identity, load_tokenizer):
        with pytest.raises(ValueError, match=r"gpt2_tokenizer.json: not valid JSON .*save the tokenizer"):
            load(tmp_path)
    (tmp_path / "gpt2_tokenizer.json").write_text("[]", encoding="utf-8")
    with pytest.raises(ValueError, match="does not hold a JSON object"):
        load_tokenizer(tmp_path)
