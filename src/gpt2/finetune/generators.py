"""Fine-tuning examples made here, from what is offline: tasks whose answers come from the
structure of the built-in Shakespeare corpus (gpt2.data.corpus), and small arithmetic and
string tasks. Nothing is downloaded; `gpt2 examples` writes them as JSONL (chat) or CSV
(classification) files, the formats `gpt2 finetune` reads.

Kinds:
- speaker (chat): "Who speaks these lines?" + a speech -> the speaker's name as printed;
- play (chat): "Which play are these lines from?" + a speech -> the play's title;
- continue (chat): "Continue this line:" + a line of verse -> the next line;
- arithmetic (chat): "What is 37 + 5?" -> "42";
- reverse (chat): "Reverse the word: night" -> "thgin" (words of the corpus);
- genre (classify CSV): a speech -> comedy, history or tragedy, the play's section in the
  catalogue of the First Folio (1623); the poems and the two plays outside the Folio are left out.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from gpt2.data.corpus import shakespeare_files
from gpt2.errors import GPT2Error
from gpt2.files import write_bytes_atomic

KINDS = ("speaker", "play", "continue", "arithmetic", "reverse", "genre")
# File stems (shksprdata/texts/<stem>_gut.txt) by their section of the First Folio's catalogue.
FOLIO = {
    "comedy": ["tempest", "two_gentlemen_of_verona", "merry_wives_of_windsor", "measure_for_measure",
               "comedy_of_errors", "much_ado_about_nothing", "loves_labours_lost", "midsummer_nights_dream",
               "merchant_of_venice", "as_you_like_it", "taming_of_the_shrew", "alls_well_that_ends_well",
               "twelfth_night", "winters_tale"],
    "history": ["john", "richard_ii", "henry_iv_part_1", "henry_iv_part_2", "henry_v", "henry_vi_part_1",
                "henry_vi_part_2", "henry_vi_part_3", "richard_iii", "henry_viii"],
    "tragedy": ["troilus_and_cressida", "coriolanus", "tragedy_of_titus_andronicus", "romeo_and_juliet",
                "timon_of_athens", "julius_caesar", "macbeth", "hamlet", "lear", "othello",
                "antony_and_cleopatra", "cymbeline"],
}
GENRE = {stem: genre for genre, stems in FOLIO.items() for stem in stems}
_SPEAKER = re.compile(r"^[A-Z][A-Za-z' .]{0,30}\.$")  # 'PROSPERO.', 'Lady Montague.', 'Hor.'


@dataclass
class Speech:
    play: str  # file stem
    title: str
    speaker: str
    lines: list[str]


def titles() -> dict[str, str]:
    """File stem -> title, from the corpus's metadata.txt."""
    import configparser

    meta = configparser.ConfigParser(interpolation=None)
    meta.read(shakespeare_files()[0].parent / "metadata.txt", encoding="utf-8")
    return {s.removesuffix("_gut"): meta[s].get("title", s) for s in meta.sections() if s.endswith("_gut")}


def speeches(plays: list[str] | None = None) -> list[Speech]:
    """Every speech of the Folio's plays (or of `plays`, file stems): a speaker line after a
    blank line, then its lines up to the next blank line, stage directions dropped."""
    names, found = titles(), []
    for path in shakespeare_files():
        stem = path.name.removesuffix("_gut.txt")
        if stem not in GENRE or (plays and stem not in plays):
            continue
        blocks = path.read_text(encoding="utf-8", errors="replace").split("\n\n")
        for block in blocks:
            lines = [line.strip() for line in block.strip().splitlines()]
            if len(lines) < 2 or not _SPEAKER.match(lines[0]):
                continue
            text = [line for line in lines[1:] if line and not line.startswith("[")]
            if text:
                found.append(Speech(stem, names.get(stem, stem), lines[0].rstrip("."), text))
    if plays and not found:
        raise GPT2Error(f"--plays {','.join(plays)}: no speeches found; use file stems such as "
                        f"{', '.join(sorted(GENRE)[:4])}")
    return found


def _excerpt(s: Speech, rng: random.Random, n: int = 2) -> str:
    start = rng.randrange(max(1, len(s.lines) - n + 1))
    return "\n".join(s.lines[start:start + n])


def chat_examples(kind: str, n: int, seed: int, plays: list[str] | None = None) -> list[dict]:
    """n chat records ({"messages": [user, assistant]}) of a chat kind."""
    rng = random.Random(seed)
    pool = speeches(plays) if kind in ("speaker", "play", "continue", "reverse") else []
    if kind == "continue":
        pool = [s for s in pool if len(s.lines) >= 2]
    words = sorted({w for s in pool for line in s.lines for w in re.findall(r"\b[a-z]{4,8}\b", line)})
    out = []
    for _ in range(n):
        if kind == "arithmetic":
            a, b = rng.randrange(100), rng.randrange(100)
            question, answer = f"What is {a} + {b}?", str(a + b)
        elif kind == "reverse":
            word = rng.choice(words)
            question, answer = f"Reverse the word: {word}", word[::-1]
        else:
            s = rng.choice(pool)
            if kind == "speaker":
                question, answer = f"Who speaks these lines?\n{_excerpt(s, rng)}", s.speaker
            elif kind == "play":
                question, answer = f"Which play are these lines from?\n{_excerpt(s, rng)}", s.title
            else:
                i = rng.randrange(len(s.lines) - 1)
                question, answer = f"Continue this line:\n{s.lines[i]}", s.lines[i + 1]
        out.append({"messages": [{"role": "user", "content": question},
                                 {"role": "assistant", "content": answer}]})
    return out


def genre_examples(n: int, seed: int, plays: list[str] | None = None) -> list[tuple[str, str]]:
    """n (speech excerpt, genre) pairs, the genres in equal numbers (as far as the corpus allows)."""
    rng = random.Random(seed)
    by_genre: dict[str, list[Speech]] = {}
    for s in speeches(plays):
        by_genre.setdefault(GENRE[s.play], []).append(s)
    genres = sorted(by_genre)
    return [(_excerpt(s, rng, 3), g) for i in range(n)
            for g in [genres[i % len(genres)]] for s in [rng.choice(by_genre[g])]]


def write_examples(kind: str, out: str | Path, n: int = 1000, seed: int = 0,
                   plays: list[str] | None = None) -> Path:
    """Write n examples of `kind` to `out`: JSONL for chat kinds, CSV (text,label) for genre."""
    if kind not in KINDS:
        raise GPT2Error(f"--kind {kind!r}: choose one of {', '.join(KINDS)}")
    out = Path(out)
    if kind == "genre":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["text", "label"])
        writer.writerows(genre_examples(n, seed, plays))
        data = buffer.getvalue()
    else:
        data = "".join(json.dumps(r) + "\n" for r in chat_examples(kind, n, seed, plays))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, data.encode("utf-8"))
    return out
