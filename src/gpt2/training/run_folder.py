"""The run folder (`--train.out_dir`): which files a run owns, who may use the folder, and
what `--overwrite` may delete.

A run writes only the names in `RUN_FILES` (checkpoints with their staging and swap folders,
the metrics log, the plot, TensorBoard files, the lock). So
- `--overwrite true` replaces a run only in a folder that holds nothing else: a file it
  did not write (notes, another run in a sub-folder) makes it refuse, naming the file;
- the old run's files are moved into `.replaced-<pid>/` inside the folder and deleted only
  when the new run has its first checkpoint; a new run that fails before puts them back,
  and one killed before (SIGKILL) has them put back by the next run in the folder;
- one process at a time uses a run folder: it holds an exclusive `flock` on `.gpt2-run.lock`
  for its whole life (the kernel drops it when the process dies, however it dies), so a
  second run or `--resume` of the same folder fails at once in one line.
"""

from __future__ import annotations

import fcntl
import fnmatch
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from gpt2.checkpoint import MANIFEST, readable_path
from gpt2.errors import GPT2Error
from gpt2.files import owner_gone

LOCK = ".gpt2-run.lock"
ASIDE = ".replaced-"  # + pid: an old run kept until the new one has its first checkpoint
RUN_FILES = ("latest", "best", ".latest.old", ".best.old", ".latest.tmp-*", ".best.tmp-*", "metrics.jsonl",
             "loss.png", ".loss.png.tmp-*", "tensorboard", LOCK, f"{ASIDE}*")


def _is_run_file(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_FILES)


def holds_checkpoint(out_dir: Path) -> bool:
    """Whether `out_dir` holds a checkpoint of a run (something `--resume` can continue)."""
    return any((readable_path(out_dir / name) / MANIFEST).exists() for name in ("latest", "best"))


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """A new run never silently replaces another, nor deletes a file it did not write: refuse a
    folder holding a checkpoint unless `overwrite`, and with `overwrite` a folder holding anything
    a run does not write. (Logs of a run that never saved a checkpoint are replaced: there is
    nothing to resume.)"""
    if not holds_checkpoint(out_dir):
        return
    if not overwrite:
        raise GPT2Error(f"--train.out_dir {out_dir} holds a run already; continue it with --resume true, "
                        "or replace it with --overwrite true (or choose another --train.out_dir)")
    foreign = sorted(p.name for p in out_dir.iterdir() if not _is_run_file(p.name))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise GPT2Error(f"--overwrite: {out_dir} also holds files no run writes ({shown}); refusing to "
                        "delete them: move them out, or choose another --train.out_dir")


@dataclass
class RunFolder:
    """A run folder this process holds: its lock, the old run set aside, and whether the folder
    was created for this run (then a failure before the first checkpoint removes it)."""

    path: Path
    lock: IO[bytes]
    aside: Path | None = None
    fresh: bool = False
    new_run: bool = False  # claimed for a new run (not a --resume): undo() may remove what it wrote

    def release(self) -> None:
        """Let another process use the folder (also done by the kernel when this one ends)."""
        self.lock.close()

    def committed(self) -> None:
        """The new run has a checkpoint: the old run it replaces can go."""
        if self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None

    def undo(self) -> None:
        """The new run failed before its first checkpoint: remove what it wrote (only run files),
        put the old run back."""
        if not self.new_run:
            return
        if self.fresh:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        _remove_run_files(self.path)
        if self.aside is not None:
            _restore(self.aside, self.path)
            self.aside = None


def lock_run_folder(out_dir: Path) -> RunFolder:
    """Take `out_dir` (created if missing) for this process, or fail in one line if another
    process holds it; then put back an old run a killed `--overwrite` left aside."""
    fresh = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = open(out_dir / LOCK, "ab")  # noqa: SIM115 - held open for the life of the run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise GPT2Error(f"--train.out_dir {out_dir} is in use by another gpt2 process (it holds {LOCK}); "
                        "wait for it to end, or choose another --train.out_dir") from None
    for stale in out_dir.glob(f"{ASIDE}*"):
        if owner_gone(stale):  # an --overwrite killed before the new run's first checkpoint
            if holds_checkpoint(out_dir):
                shutil.rmtree(stale, ignore_errors=True)
            else:
                _remove_run_files(out_dir)
                _restore(stale, out_dir)
    return RunFolder(out_dir, lock, fresh=fresh)


def claim_out_dir(out_dir: Path, overwrite: bool) -> RunFolder:
    """Lock `out_dir` for a new run; with `overwrite`, move the run in it aside (see the module)."""
    folder = lock_run_folder(out_dir)
    folder.new_run = True
    try:
        check_out_dir(out_dir, overwrite)  # again, now that no other process can change it
        leftovers = [p for p in out_dir.iterdir() if _is_run_file(p.name) and p.name != LOCK]
        if leftovers:
            folder.aside = out_dir / f"{ASIDE}{os.getpid()}"
            folder.aside.mkdir()
            for p in leftovers:
                os.rename(p, folder.aside / p.name)
    except BaseException:
        folder.release()
        raise
    return folder


def _remove_run_files(out_dir: Path) -> None:
    for p in out_dir.iterdir():
        if _is_run_file(p.name) and p.name != LOCK and not p.name.startswith(ASIDE):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def _restore(aside: Path, out_dir: Path) -> None:
    for p in aside.iterdir():
        os.rename(p, out_dir / p.name)
    aside.rmdir()
