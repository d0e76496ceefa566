"""`gpt2 --help` and `gpt2 CMD --help`: every subcommand described, and no torch imported to say so.

The help must not wait for torch (over a second to import), so the option dataclasses the
parser reads live in modules without it and each command imports its machinery when it runs.
These tests check the behaviour (which modules end up imported), not a time.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from gpt2.cli import commands

# Modules a help text has no use for: the numerics, the tokenizers, the web stack, plotting.
HEAVY = ("torch", "numpy", "tiktoken", "sentencepiece", "safetensors", "transformers", "fastapi",
         "uvicorn", "matplotlib")


def _command_paths(table: dict, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every subcommand and group of `table`, as argument lists: ("tokenizer",), ("tokenizer", "train")."""
    paths = []
    for name, entry in table.items():
        if name == "_help":
            continue
        paths.append((*prefix, name))
        if isinstance(entry, dict):
            paths += _command_paths(entry, (*prefix, name))
    return paths


def _entry(path: tuple[str, ...]) -> dict | object:
    entry: dict | object = commands()
    for name in path:
        entry = entry[name]  # type: ignore[index]
    return entry


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_every_help_is_built_without_importing_torch():
    """One fresh interpreter prints the help of `gpt2` and of every subcommand, then lists the
    heavy modules that got imported on the way: none may be."""
    paths = [[], *map(list, _command_paths(commands()))]
    code = f"""
import contextlib, io, json, sys
HEAVY = {HEAVY!r}
import gpt2.cli
loaded = {{"after_import": sorted(m for m in HEAVY if m in sys.modules)}}
for args in {paths!r}:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            gpt2.cli.main([*args, "--help"])
        except SystemExit as stop:
            assert stop.code == 0, (args, stop.code)
    assert out.getvalue().startswith("usage: gpt2"), (args, out.getvalue()[:200])
loaded["after_help"] = sorted(m for m in HEAVY if m in sys.modules)
print(json.dumps(loaded))
"""
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"after_import": [], "after_help": []}


def test_help_describes_every_subcommand():
    """`gpt2 --help` (and `gpt2 GROUP --help`) names each subcommand with a one-line description."""
    for group in [(), *(p for p in _command_paths(commands()) if isinstance(_entry(p), dict))]:
        table = _entry(group)
        result = subprocess.run([sys.executable, "-m", "gpt2", *group, "--help"], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        listing = result.stdout.split("Available subcommands:", 1)[1]
        for name in (n for n in table if n != "_help"):
            line = re.search(rf"^ {{4}}{name}(?: +|\n +)(\S.*)$", listing, re.MULTILINE)
            assert line, f"{' '.join(('gpt2', *group))} --help: no description for {name}:\n{result.stdout}"


def test_the_options_are_defined_once():
    """The torch-free homes of the option dataclasses are re-exported where they are used; the
    dtype names come from one Literal."""
    from gpt2.data import options, prepare, train_tokenizer
    from gpt2.generation import options as generation_options
    from gpt2.generation import sampling
    from gpt2.runtime import device
    from gpt2.runtime import options as runtime_options

    assert not hasattr(device, "DeviceOptions")  # one home: gpt2.runtime.options
    assert sampling.SamplingOptions is generation_options.SamplingOptions
    assert prepare.PrepareOptions is options.PrepareOptions
    assert train_tokenizer.SentencePieceOptions is options.SentencePieceOptions
    assert ("auto", *device.DTYPES) == runtime_options.DTYPE_NAMES
