"""Durable files: every write that must survive a crash goes through here.

- `write_bytes_atomic`: one file, written under a temporary name and renamed, so a crash
  never leaves half a file.
- `replace_dir`: a whole directory (a checkpoint, a prepared data set) replaced at once.
  The new contents are written into a staging folder beside the target, fsynced, and
  swapped in with two renames: target -> `.NAME.old`, staging -> target. A crash leaves
  either the old directory or the new one. Between the two renames only `.NAME.old`
  exists; readers use `readable_dir` to find it and writers `recover_dir` to put it back.
- `read_json`, `sha256_file`, `sha256_bytes`: the one JSON reader and the two hash helpers.
- `member`: the one place a file name read from a folder's own files (a weight index, a
  tokenizer's sha256 map, a shard list, a manifest) becomes a path. Such a folder may come
  from anywhere, so the name must stay inside the folder (after symlinks), name a regular
  file (never a device or a fifo) and, where a bound is given, not be larger than it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gpt2.errors import GPT2Error


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


MAX_JSON_BYTES = 64 << 20  # far above any JSON file we write; bounds what a crafted one can cost


def member(folder: Path, name: object, listed_in: Path | str, max_bytes: int | None = None) -> Path:
    """The path of the file `name` (read from `listed_in`) inside `folder`, after checking that
    it is a relative name that stays inside `folder` once symlinks are resolved and, if it
    exists, a regular file of at most `max_bytes`. A missing file is returned as is: the caller
    says what is missing. Anything else is a one-line GPT2Error naming the folder, the listing
    file and the entry."""
    where = f"{listed_in}: entry {name!r} in {folder}"
    if not isinstance(name, str) or not name or Path(name).is_absolute():
        raise GPT2Error(f"{where} is not a relative file name; the folder is damaged or was crafted")
    path = Path(folder) / name
    if not path.resolve().is_relative_to(Path(folder).resolve()):
        raise GPT2Error(f"{where} points outside the folder; refusing to read it")
    if not os.path.lexists(path):
        return path
    if not path.is_file():
        raise GPT2Error(f"{where} is not a regular file; refusing to read it")
    if max_bytes is not None and path.stat().st_size > max_bytes:
        raise GPT2Error(f"{where} is {path.stat().st_size:,} bytes, more than the {max_bytes:,} such a file "
                        "can be; refusing to read it")
    return path


def read_json(path: Path, fix: str, error: type[GPT2Error] = GPT2Error) -> dict[str, Any]:
    """The JSON object in `path`; an `error` naming the file and saying what to do (`fix`)
    when it is missing, not a regular file of sane size, or not a JSON object (a truncated or
    hand-edited file)."""
    path = Path(path)
    if path.exists() and (not path.is_file() or path.stat().st_size > MAX_JSON_BYTES):
        raise error(f"{path}: not a regular JSON file of at most {MAX_JSON_BYTES:,} bytes; {fix}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: not found; {fix}") from None
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise error(f"{path}: not valid JSON ({err}); {fix}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: does not hold a JSON object; {fix}")
    return data


def json_bytes(data: Any) -> bytes:
    """The on-disk form of our JSON files: indented, sorted keys, one trailing newline."""
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """An OSError raised inside names `path` (a write to a full disk says only "No space left on
    device", and the `gpt2` command prints that one line: it should say which file)."""
    try:
        yield
    except OSError as err:
        if err.filename is None and err.errno is not None:
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise


def write_bytes_atomic(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Write `data` to `path` via a temporary name, so a crash never leaves half a file.
    fsync=True also flushes the data to disk before the rename (for a commit mark)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with naming(path):
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                if fsync:
                    f.flush()
                    os.fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.replace(tmp, path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file and folder under `root` (and `root` itself) to disk."""
    for path in sorted(root.rglob("*"), reverse=True):
        _fsync(path)
    _fsync(root)


def _old(path: Path) -> Path:
    return path.parent / f".{path.name}.old"


def owner_gone(folder: Path) -> bool:
    """True when the process named by `folder`'s -<pid> suffix has exited."""
    try:
        os.kill(int(folder.name.rsplit("-", 1)[1]), 0)
    except ProcessLookupError:
        return True
    except (ValueError, IndexError, PermissionError):
        pass
    return False


def staging_dir(path: Path) -> Path:
    """A fresh, empty folder beside `path` to build its next contents in. Staging folders
    left by killed writers (their process is gone) are removed first."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        if owner_gone(stale):
            shutil.rmtree(stale, ignore_errors=True)
    staged = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir()
    return staged


def replace_dir(staged: Path, path: Path) -> None:
    """Make the complete folder `staged` (from `staging_dir`) the new `path`, atomically:
    `staged` is fsynced, the old `path` renamed to `.NAME.old`, `staged` renamed to `path`,
    then the old one deleted."""
    fsync_tree(staged)
    old = _old(path)
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.rename(path, old)  # from here until the next rename, `old` is the good copy
    try:
        os.rename(staged, path)
    except BaseException:
        if old.exists() and not path.exists():
            os.rename(old, path)  # put the previous folder back
        raise
    _fsync(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(path: Path, marker: str) -> None:
    """If a `replace_dir` died between its two renames, put the previous folder back.
    `marker` is the file that exists only in a complete folder. For writers; readers use
    `readable_dir` and touch nothing."""
    old = _old(path)
    if not path.exists() and (old / marker).exists():
        with contextlib.suppress(OSError):  # another process may have repaired it first
            os.rename(old, path)


def readable_dir(path: Path, marker: str) -> Path:
    """`path`, or the previous folder a `replace_dir` is replacing right now (between renames)."""
    old = _old(path)
    return old if not path.exists() and (old / marker).exists() else path
