"""The shape of a prepared folder's meta.json, checked once where it is read (shards.read_meta),
so a damaged or crafted file is one line naming it, not a KeyError or AttributeError in
whichever reader first touches the part that is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpt2.data.options import SPLITS
from gpt2.errors import GPT2Error


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_meta(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    """`meta` if it has every part the readers use, of the right kind; else a one-line GPT2Error."""
    problem = None
    splits = meta.get("splits")
    if not isinstance(splits, dict):
        problem = f"'splits' is {type(splits).__name__}, not an object with {' and '.join(SPLITS)}"
    else:
        for split in SPLITS:
            info = splits.get(split)
            if not isinstance(info, dict) or not isinstance(info.get("shards"), list) \
                    or not _count(info.get("tokens")):
                problem = f"split {split!r} lacks its shard list or token count"
            elif not all(isinstance(s, dict) and _count(s.get("tokens")) for s in info["shards"]):
                problem = f"a shard of split {split!r} is not an object with a token count"
    kinds_ok = _count(meta.get("vocab_size", 0)) and isinstance(meta.get("dtype", ""), str)
    if problem is None and not (isinstance(meta.get("tokenizer", {}), dict) and kinds_ok):
        problem = "its tokenizer, vocab_size or dtype is of the wrong kind"
    if problem:
        raise GPT2Error(f"{path}: {problem}; the folder is damaged or was crafted: run `gpt2 prepare` again")
    return meta
