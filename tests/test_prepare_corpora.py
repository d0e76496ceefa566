"""`gpt2 prepare` on the formats real corpora ship in: Parquet and compressed JSONL give the
same shards as the same documents in a plain .jsonl; bad files fail in one line naming them."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from gpt2.data.prepare import PrepareOptions, prepare
from gpt2.data.shards import open_shard, split_shards
from gpt2.data.sources import CorpusOptions, resolve_sources
from gpt2.data.train_tokenizer import iter_sentences
from test_prepare_errors import cli_error

DOCS = [f"Document {i}: " + "the quick brown fox, café — 世界 " * (i % 23 + 1) + "\nA second line.\n"
        for i in range(600)]


def jsonl_bytes(docs: list[str]) -> bytes:
    lines = (json.dumps({"id": i, "text": d}, ensure_ascii=False) + "\n" for i, d in enumerate(docs))
    return "".join(lines).encode()


def tokens(out: Path, split: str) -> np.ndarray:
    parts = [np.asarray(open_shard(p)) for p in split_shards(out, split)]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint16)


def shards(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.bin"))}


def run(inputs: list[Path], out: Path, val_ratio: float = 0.1, tokenizer: str = "gpt2", **corpus) -> dict:
    return prepare([str(i) for i in inputs], out, tokenizer, CorpusOptions(**corpus),
                   PrepareOptions(val_ratio=val_ratio, workers=2, progress=False))


@pytest.mark.parametrize("tokenizer", ["gpt2", "char"])
def test_compressed_jsonl_gives_the_same_shards_as_plain(tmp_path, tokenizer):
    raw = jsonl_bytes(DOCS)
    (tmp_path / "d.jsonl").write_bytes(raw)
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(raw))
    half = len(raw) // 2  # two zstd frames, as parallel compressors write them
    frames = zstandard.ZstdCompressor().compress(raw[:half]) + zstandard.ZstdCompressor().compress(raw[half:])
    (tmp_path / "d.jsonl.zst").write_bytes(frames)
    plain = run([tmp_path / "d.jsonl"], tmp_path / "plain", tokenizer=tokenizer)
    assert plain.split["val_chunks"] > 0 and plain.splits["train"].documents > 500
    for name in ("d.jsonl.gz", "d.jsonl.zst"):
        meta = run([tmp_path / name], tmp_path / name.replace(".", "-"), tokenizer=tokenizer)
        assert meta.splits == plain.splits and meta.split == plain.split
        assert shards(tmp_path / name.replace(".", "-")) == shards(tmp_path / "plain")
        assert meta.sources[0]["bytes"] == len(raw)  # sized as the decompressed stream


def test_parquet_folder_is_one_corpus_with_the_documents_of_the_jsonl(tmp_path):
    (tmp_path / "pq").mkdir()
    for part, first in enumerate(range(0, len(DOCS), 200)):  # 3 files of 200 rows, row groups of 64
        table = pa.table({"id": list(range(first, first + 200)), "text": DOCS[first:first + 200]})
        pq.write_table(table, tmp_path / "pq" / f"part-{part}.parquet", row_group_size=64)
    (tmp_path / "d.jsonl").write_bytes(jsonl_bytes(DOCS))
    folder = run([tmp_path / "pq"], tmp_path / "from-parquet", val_ratio=0, glob="**/*.parquet")
    run([tmp_path / "d.jsonl"], tmp_path / "plain", val_ratio=0)
    assert shards(tmp_path / "from-parquet") == shards(tmp_path / "plain")
    assert folder.splits["train"].documents == len(DOCS) and len(folder.sources) == 3

    split = run([tmp_path / "pq"], tmp_path / "split", val_ratio=0.2, glob="**/*.parquet")
    assert split.splits["val"].documents > 0  # whole rows go to val, the rest to train
    assert split.splits["train"].documents + split.splits["val"].documents == len(DOCS)
    assert len(tokens(tmp_path / "split", "train")) + len(tokens(tmp_path / "split", "val")) == \
        len(tokens(tmp_path / "plain", "train"))


def test_parquet_column_by_field_and_tokenizer_training_reads_it(tmp_path):
    pq.write_table(pa.table({"body": DOCS[:50], "n": list(range(50))}), tmp_path / "b.parquet")
    meta = run([tmp_path / "b.parquet"], tmp_path / "out", val_ratio=0, tokenizer="char", field="body")
    assert meta.splits["train"].documents == 50
    lines = list(iter_sentences(resolve_sources([str(tmp_path / "b.parquet")]), CorpusOptions(field="body")))
    assert lines == [line for d in DOCS[:50] for line in d.splitlines()]


def test_bad_parquet_and_compressed_files_fail_in_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    pq.write_table(pa.table({"content": ["a", "b"], "n": [1, 2]}), tmp_path / "t.parquet")
    line = cli_error(capsys, "prepare", "--input", str(tmp_path / "t.parquet"), "--out", str(out))
    assert f"{tmp_path / 't.parquet'}: no column 'text' (it has ['content', 'n']); choose the text " \
        "column with --field" in line
    line = cli_error(capsys, "prepare", "--input", str(tmp_path / "t.parquet"), "--out", str(out),
                     "--field", "n")
    assert "column 'n' holds int64, not text" in line
    (tmp_path / "fake.parquet").write_bytes(b"not parquet at all" * 10)
    assert "fake.parquet: not a readable Parquet file" in cli_error(
        capsys, "prepare", "--input", str(tmp_path / "fake.parquet"), "--out", str(out))

    packed = zstandard.ZstdCompressor().compress(jsonl_bytes(DOCS))
    corrupt = {"cut.jsonl.zst": packed[:len(packed) // 2], "noise.jsonl.zst": b"\x28\xb5\x2f\xfd" + b"x" * 99,
               "cut.jsonl.gz": gzip.compress(jsonl_bytes(DOCS))[:-40], "noise.jsonl.gz": b"zz" * 50}
    for name, data in corrupt.items():
        (tmp_path / name).write_bytes(data)
        line = cli_error(capsys, "prepare", "--input", str(tmp_path / name), "--out", str(out))
        kind = "zstandard" if name.endswith(".zst") else "gzip"
        assert line.startswith(f"gpt2: error: {tmp_path / name}: not a valid {kind} file (")
    (tmp_path / "notes.txt.gz").write_bytes(gzip.compress(b"hello"))
    assert "compressed inputs must be .jsonl.gz or .jsonl.zst" in cli_error(
        capsys, "prepare", "--input", str(tmp_path / "notes.txt.gz"), "--out", str(out))
    assert not out.exists()


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, capsys, monkeypatch):
    pq.write_table(pa.table({"text": ["a b c"] * 10}), tmp_path / "t.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # what an environment without it does
    line = cli_error(capsys, "prepare", "--input", str(tmp_path / "t.parquet"), "--out", str(tmp_path / "o"))
    assert "t.parquet: reading this file needs the pyarrow package; install it with " \
        "`pip install 'gpt2-from-scratch[data]'`" in line
