"""Reading the user's examples: JSONL or CSV files into conversations or (text, label) pairs.

Every problem is one GPT2Error naming the file and the line (1-based, as an editor shows
it): an empty file, a line that is not JSON, a conversation without an assistant turn, an
unknown role, a missing text or label column. Nothing is fixed up silently.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from gpt2.chat_template import check_messages
from gpt2.errors import GPT2Error

Record = tuple[str, dict[str, Any]]  # (where: "file line N", the record)


def read_records(path: str | Path) -> list[Record]:
    """The records of a .jsonl (one JSON object per non-blank line) or .csv (a header row, then
    one record per row) file, each with where it came from."""
    path = Path(path)
    if not path.is_file():
        raise GPT2Error(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise GPT2Error(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if path.suffix.lower() == ".csv":
        records = _csv_records(path, text)
    elif path.suffix.lower() in (".jsonl", ".json"):
        records = _jsonl_records(path, text)
    else:
        raise GPT2Error(f"{path}: unknown format; give a .jsonl or .csv file")
    if not records:
        raise GPT2Error(f"{path}: the file holds no examples")
    return records


def _jsonl_records(path: Path, text: str) -> list[Record]:
    records = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise GPT2Error(f"{path} line {n}: not JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(record, dict):
            raise GPT2Error(f"{path} line {n}: expected a JSON object, got {type(record).__name__}")
        records.append((f"{path} line {n}", record))
    return records


def _csv_records(path: Path, text: str) -> list[Record]:
    rows = csv.reader(io.StringIO(text, newline=""))  # quoted fields may span lines
    header = next(rows, None)
    if header is None:
        return []
    records = []
    for row in rows:
        n = rows.line_num  # the line the row ends on
        if not row:
            continue
        if len(row) != len(header):
            raise GPT2Error(f"{path} line {n}: {len(row)} fields, but the header has {len(header)}")
        records.append((f"{path} line {n}", dict(zip(header, row, strict=True))))
    return records


def to_messages(where: str, record: dict[str, Any]) -> list[dict[str, str]]:
    """A chat record as checked messages: {"messages": [...]}, or Alpaca's instruction / input /
    output as one user turn (instruction, a blank line, input) and the assistant's output."""
    if "messages" in record:
        messages = check_messages(record["messages"], where)
    elif "instruction" in record and "output" in record:
        prompt = str(record["instruction"])
        if str(record.get("input") or "").strip():
            prompt += "\n\n" + str(record["input"])
        messages = [{"role": "user", "content": prompt},
                    {"role": "assistant", "content": str(record["output"])}]
    else:
        raise GPT2Error(f"{where}: expected a 'messages' list, or 'instruction' and 'output' (Alpaca); "
                        f"found keys {sorted(record)}")
    if not any(m["role"] == "assistant" for m in messages):
        raise GPT2Error(f"{where}: the conversation has no assistant turn, so there is nothing to learn")
    return messages


def to_labelled(where: str, record: dict[str, Any], text_field: str, label_field: str) -> tuple[str, str]:
    """(text, label) of a classification record; the label as a string (a class name)."""
    for name, option in ((text_field, "text_field"), (label_field, "label_field")):
        if name not in record:
            raise GPT2Error(f"{where}: no {name!r} column (the {option} option names it); "
                            f"found {sorted(record)}")
    text, label = record[text_field], record[label_field]
    if not isinstance(text, str) or not text.strip():
        raise GPT2Error(f"{where}: the {text_field!r} value must be non-empty text")
    if label is None or str(label).strip() == "":
        raise GPT2Error(f"{where}: the {label_field!r} value is empty")
    return text, str(label)
