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


def _parsers(parser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """Every subcommand's parser under `parser`, with its path: (("train",), parser), ..."""
    found = []
    action = getattr(parser, "_subcommands_action", None)
    for name, sub in (action._name_parser_map.items() if action else ()):
        found += [((*path, name), sub), *_parsers(sub, (*path, name))]
    return found


def test_every_option_of_every_command_has_a_whole_help_line():
    """No option without a description, and none cut short: a multi-line docstring used to lose
    its continuation lines (`tokenizer train --overwrite` read "... (only the") and every option
    after it its description. Whole means: it ends a sentence and closes what it opens."""
    import jsonargparse

    import gpt2.cli

    root = jsonargparse.capture_parser(gpt2.cli.main, [])
    problems, seen = [], 0
    for path, parser in _parsers(root):
        for action in parser._actions:
            if not action.option_strings or action.dest in ("help", "config", "print_config"):
                continue
            if isinstance(action, type(root._subcommands_action)):
                continue
            seen += 1
            text = " ".join((action.help or "").split())
            closed = re.sub(r"[(\[][\d.]+, [\d.]+[)\]]", "", text)  # intervals: (0, 1], [0, 1)
            whole = (text.endswith((".", ")")) and closed.count("(") == closed.count(")")
                     and closed.count("`") % 2 == 0 and closed.count("[") == closed.count("]"))
            if not whole and not text.endswith("Path to a configuration file."):
                problems.append(f"gpt2 {' '.join(path)} {action.option_strings[0]}: {text!r}")
    assert seen > 100  # the check reached the options of every command
    assert problems == [], "\n".join(problems)
