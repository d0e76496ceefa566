"""The results file: one JSON object per evaluation run, appended, so runs can be compared.

Each line holds the date, the checkpoint, the task and its file, the example count, the metrics
and their definitions. A line is written with one `write` on a file opened for appending, so an
interrupted run never damages the lines already there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gpt2.errors import GPT2Error


def append_result(path: str | Path, record: dict[str, Any]) -> None:
    """Append `record` as one JSON line to `path` (created, with its folder, if missing)."""
    path = Path(path)
    if path.is_dir():
        raise GPT2Error(f"--results {path} is a folder; give a file name such as {path / 'results.jsonl'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size and not _ends_with_newline(path):
            line = b"\n" + line  # a line cut short by an earlier crash stays on its own line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Every complete line of a results file."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line an interrupted run cut short
    return rows
