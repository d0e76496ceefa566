"""Helpers of the `gpt2 prepare` tests: the one-line CLI error, a folder's bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpt2.cli import main


def cli_error(capsys, *argv: str) -> str:
    """Run `gpt2 argv...`; assert it fails cleanly and return its one error line."""
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--progress", "false"] if argv[0] == "prepare" else list(argv))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gpt2: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
