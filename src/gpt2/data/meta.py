"""meta.json, the index of a prepared folder: tokenizer identity, sources, how the text was
split, and each split's shards with their token counts and sha256. One typed record,
`ShardsMeta`, is the only way it is written (`gpt2 prepare`, `shards.write_prepared`) and read.

It is read from folders that may be damaged or crafted, so `ShardsMeta.read` checks its shape
first: a wrong part is one line naming the file, not a KeyError or AttributeError in whichever
reader first touches it. Shard file names are confined to the folder where they are used
(gpt2.files.member). meta.json is written last: a folder without it holds nothing a loader reads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt2.data.options import SPLITS
from gpt2.errors import GPT2Error
from gpt2.files import json_bytes, read_json, readable_dir, write_bytes_atomic

META_FILE = "meta.json"
FORMAT = "gpt2-from-scratch-shards"  # meta.json "format"


@dataclass(frozen=True)
class ShardInfo:
    """One shard: its file name (untrusted: resolve it with gpt2.files.member), its number of
    tokens and the sha256 of its tokens (not of its header)."""

    file: Any
    tokens: int
    sha256: Any = None


@dataclass(frozen=True)
class SplitInfo:
    """A split's shards, in order, and their total tokens; documents as counted by `gpt2 prepare`."""

    shards: tuple[ShardInfo, ...]
    tokens: int
    documents: int | None = None


@dataclass(frozen=True)
class ShardsMeta:
    """The content of meta.json. Parts left None (by `write_prepared`, or a folder an older
    version wrote) are not written."""

    splits: dict[str, SplitInfo]
    tokenizer: dict[str, Any] = field(default_factory=dict)  # Tokenizer.identity()
    format: str = FORMAT
    version: int = 1
    vocab_size: int | None = None
    eot_id: int | None = None
    dtype: str | None = None  # of the token ids in the shards: uint16 or uint32
    sources: list[dict[str, Any]] | None = None  # path, kind, bytes of each input
    split: dict[str, Any] | None = None  # how the chunks went to train and val: val_ratio, seed, ...
    options: dict[str, Any] | None = None
    fingerprint: str | None = None  # of inputs, options and tokenizer: a re-run that would change nothing

    @property
    def val_ratio(self) -> float | None:
        return (self.split or {}).get("val_ratio")

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to meta.json (parts that are None left out)."""
        out = dataclasses.asdict(self)
        for info in out["splits"].values():
            if info["documents"] is None:
                del info["documents"]
        return {key: value for key, value in out.items() if value is not None}

    def write(self, folder: str | Path) -> None:
        """Write meta.json atomically and durably (it marks the folder complete)."""
        write_bytes_atomic(Path(folder) / META_FILE, json_bytes(self.to_json()), fsync=True)

    @classmethod
    def read(cls, folder: str | Path) -> ShardsMeta:
        """meta.json of a prepared folder, checked. While `gpt2 prepare` swaps in a new set, the
        previous one is read (gpt2.files.readable_dir)."""
        path = readable_dir(Path(folder), META_FILE) / META_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder} holds no prepared shards ({META_FILE} is missing); "
                                    "run `gpt2 prepare` first")
        meta = _checked(read_json(path, "delete it and run `gpt2 prepare` again"), path)
        splits = {split: SplitInfo(tuple(ShardInfo(s.get("file"), s["tokens"], s.get("sha256"))
                                         for s in info["shards"]), info["tokens"], info.get("documents"))
                  for split, info in meta["splits"].items() if split in SPLITS}
        names = {f.name for f in dataclasses.fields(cls)} - {"splits"}
        return cls(splits=splits, **{key: value for key, value in meta.items() if key in names})


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _checked(meta: dict[str, Any], path: Path) -> dict[str, Any]:
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
