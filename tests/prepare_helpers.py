"""Helpers of the `gpt2 prepare` tests: the one-line CLI error, a folder's bytes."""

from __future__ import annotations

from pathlib import Path

from train_helpers import fails


def cli_error(capsys, *argv: str) -> str:
    """train_helpers.fails for `gpt2 argv...`, with prepare's progress bars off: its one error line."""
    return fails([*argv, "--progress", "false"] if argv[0] == "prepare" else list(argv), capsys)


def snapshot(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
