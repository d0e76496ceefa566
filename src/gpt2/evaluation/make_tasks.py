"""A made-up multiple-choice task from the built-in Shakespeare corpus: which line comes next?

Each example shows a few consecutive lines of verse from a play and four candidate next lines:
the true one and three lines from elsewhere in the same play. A model that has learned how
Shakespeare's lines follow one another beats the 25% of guessing. The file is in the generic
`choice` shape, generated (deterministically, from a seed) rather than shipped:

    python -m gpt2.evaluation.make_tasks shakespeare_next_line.jsonl --examples 500
    gpt2 eval --checkpoint DIR --task choice --data shakespeare_next_line.jsonl
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from gpt2.data.corpus import shakespeare_files
from gpt2.errors import GPT2Error
from gpt2.files import write_bytes_atomic

MIN_CHARS = 24  # shorter lines are mostly speaker names, stage directions and fragments
CONTEXT_LINES = 2
CHOICES = 4


def _verse_lines(path: Path) -> list[str]:
    """The play's lines, stripped; lines too short to be verse become "" (they break a run)."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [line.strip() if len(line.strip()) >= MIN_CHARS else "" for line in lines]


def _examples_of(lines: list[str], rng: random.Random, count: int) -> list[dict]:
    """Up to `count` examples from one play."""
    verse = list(dict.fromkeys(line for line in lines if line))  # distinct, in the play's order
    starts = [i for i in range(CONTEXT_LINES, len(lines)) if all(lines[i - CONTEXT_LINES:i + 1])]
    out = []
    for i in rng.sample(starts, min(count, len(starts))):
        context_lines, answer = lines[i - CONTEXT_LINES:i], lines[i]
        wrong = rng.sample([line for line in verse if line != answer and line not in context_lines],
                           CHOICES - 1)
        label = rng.randrange(CHOICES)
        choices = wrong[:label] + [answer] + wrong[label:]
        out.append({"context": "\n".join(context_lines) + "\n", "choices": choices, "answer": label})
    return out


def make_next_line_task(examples: int = 500, seed: int = 0) -> list[dict]:
    """`examples` next-line questions spread evenly over the plays, in a fixed order for a seed."""
    if examples < 1:
        raise GPT2Error(f"--examples must be at least 1, got {examples}")
    rng = random.Random(seed)
    files = shakespeare_files()
    per_play = -(-examples // len(files))  # ceiling
    rows = [row for path in files for row in _examples_of(_verse_lines(path), rng, per_play)]
    rng.shuffle(rows)
    return rows[:examples]


def write_next_line_task(out: str, examples: int = 500, seed: int = 0) -> None:
    """Write the Shakespeare next-line task to `out` (JSON lines, the `choice` task's shape).

    Args:
        out: The file to write.
        examples: How many questions.
        seed: Chooses the questions and the distractors; the same seed writes the same file.
    """
    rows = make_next_line_task(examples, seed)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    write_bytes_atomic(Path(out), text.encode("utf-8"))
    print(f"wrote {len(rows)} examples to {out}")


if __name__ == "__main__":
    import jsonargparse

    jsonargparse.auto_cli(write_next_line_task, as_positional=True)
