"""The `gpt2` command: a table of subcommands, each a thin module in gpt2.commands.

jsonargparse derives every option, `--help` and `--config FILE` support from the
subcommands' signatures and the dataclasses behind them. Mistakes the user can fix
(`GPT2Error`) and file-system refusals (`OSError`) are printed as one line with exit
status 1; anything else is a bug and keeps its traceback. Ctrl-C, SIGTERM and SIGHUP print
`gpt2: interrupted` with exit status 130 (see gpt2/signals.py).

Importing this module (and so `gpt2 --help`, `gpt2 CMD --help`) does not import torch: each
command imports its machinery when it runs (see gpt2/commands/__init__.py).
"""

from __future__ import annotations

import dataclasses
import re
import sys
import typing
from typing import Any

import jsonargparse
import yaml

from gpt2.commands.chat import chat
from gpt2.commands.config_files import CONFIG_MODE, SECTIONS, yaml_or_toml_load
from gpt2.commands.eval import evaluate
from gpt2.commands.finetune import classify, examples, finetune, merge
from gpt2.commands.generate import generate
from gpt2.commands.info import info
from gpt2.commands.prepare import prepare_command
from gpt2.commands.serve import serve
from gpt2.commands.tokenizer import tokenizer_train
from gpt2.commands.train import train
from gpt2.commands.verify import verify
from gpt2.errors import GPT2Error
from gpt2.signals import end_on_next_signal, interrupt_on_stop_signals, stop_requested

# Option help is written once, as an attribute docstring under each dataclass field (or an
# `Args:` entry): jsonargparse reads both.
jsonargparse.set_parsing_settings(docstring_parse_attribute_docstrings=True)


class Verbatim(str):
    """A command-line value kept as the text it is: jsonargparse reads values as YAML only when
    their type is exactly `str`, so this subclass passes through as written (see `_get_values`)."""


class OneLineErrorParser(jsonargparse.ArgumentParser):
    """jsonargparse's parser, but a command-line mistake (unknown option, a value of the wrong
    type, a missing or invalid config file) is one line naming it, not the whole usage; and an
    option that takes text takes `null` as text."""

    def error(self, message: str, ex: Exception | None = None) -> None:
        command = self.prog.replace(" [options]", "")
        raise GPT2Error(f"{_one_line(str(message))}; see `{command} --help`")

    def _get_values(self, action: Any, arg_strings: list[str]) -> Any:
        """A command-line value, as argparse takes it from the arguments. An option whose type
        accepts text (`str | None`, `list[str] | str | None`) keeps a value that YAML reads as
        null (`null`, `~`, `NULL`, ...) as that text: `--prompt null` is the prompt "null", as
        `--prompt true` is "true". Such an option is None only when left out (or `null` in a
        config file, which is YAML)."""
        value = super()._get_values(action, arg_strings)
        if isinstance(value, str) and _takes_text(action) and _reads_as_null(value):
            return Verbatim(value)
        return value

    def instantiate_classes(self, cfg: Any, **kwargs: Any) -> Any:
        """The options dataclasses, built once parsing is over (a parent parser checks its
        subcommand's values again, so Verbatim values must live until then)."""
        return super().instantiate_classes(_plain(cfg), **kwargs)

    def dump(self, cfg: Any, *args: Any, **kwargs: Any) -> str:
        """The options as a config file (`--print_config`)."""
        return super().dump(_plain(cfg), *args, **kwargs)


def _plain(cfg: Any) -> Any:
    """A copy of parsed options with each Verbatim value a plain `str` again."""
    cfg = cfg.clone()
    for key, value in list(cfg.items()):
        if isinstance(value, Verbatim):
            cfg[key] = str(value)
    return cfg


def _takes_text(action: Any) -> bool:
    """Whether an option's type (a union, as jsonargparse keeps it) has `str` among its choices."""
    return str in typing.get_args(getattr(action, "_typehint", None))


def _reads_as_null(value: str) -> bool:
    try:
        return yaml_or_toml_load(value) is None
    except (yaml.YAMLError, ValueError):  # not YAML ("a: b: c", a lone surrogate): text, not null
        return False


def _one_line(message: str) -> str:
    """jsonargparse's (possibly multi-line, repetitive) message as one short line."""
    parts: list[str] = []
    for line in message.splitlines():
        part = line.strip(" -.").replace("(", "").replace(")", "")
        part = re.sub(r'Parser key "([^"]+)":?', r"--\1:", part)
        part = re.sub(r"Expected a <class '(\w+)'>\.? ?(?:Got value: (.*))?",
                      lambda m: f"expected a {m[1]}" + (f", got {m[2]}" if m[2] else ""), part)
        if part and part not in " ".join(parts):
            parts.append(part)
    text = " ".join(parts) or "invalid arguments"
    union = re.match(r"(--\S+:) Does not validate against any of the Union subtypes.*Given value: (.*)", text)
    if union:  # e.g. `int | None` given "abc": name the types in plain words
        kinds = " or ".join(dict.fromkeys(re.findall(r"expected a (\w+)", text))).replace("NoneType", "null")
        return f"{union[1]} expected {kinds}, got {union[2]}"
    return text


def _sections(table: dict) -> set[str]:
    """Names of the option groups of every command (train's model, optim, ..., eval.sampling)."""
    found: set[str] = set()

    def visit(kind: Any) -> None:
        for name, hint in typing.get_type_hints(kind).items():
            if dataclasses.is_dataclass(hint):
                found.add(name)
                visit(hint)

    for fn in table.values():
        if isinstance(fn, dict):
            found |= _sections({k: v for k, v in fn.items() if k != "_help"})
        else:
            visit(fn)
    return found


def commands() -> dict:
    """Subcommand name -> function (or a group of them; its "_help" is its line in `gpt2 --help`)."""
    return {"info": info, "train": train, "eval": evaluate, "prepare": prepare_command,
            "generate": generate, "chat": chat, "serve": serve, "verify": verify, "finetune": finetune,
            "classify": classify, "merge": merge, "examples": examples,
            "tokenizer": {"_help": "Train a SentencePiece tokenizer on your text (`gpt2 tokenizer train`).",
                          "train": tokenizer_train}}


def _close_progress_bars() -> None:
    """End any progress bar still drawn, so an error is printed on a line of its own."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `gpt2` console script."""
    interrupt_on_stop_signals()  # SIGTERM and SIGHUP stop a command as Ctrl-C does
    try:
        SECTIONS.update(_sections(commands()))
        jsonargparse.auto_cli(commands(), args=argv, as_positional=False, parser_mode=CONFIG_MODE,
                              parser_class=OneLineErrorParser, prog="gpt2")
    except (GPT2Error, OSError) as err:
        end_on_next_signal()
        _close_progress_bars()
        print(f"gpt2: error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        _interrupted()
    except Exception:
        if stop_requested():  # e.g. an import cut short by Ctrl-C raises ImportError, not KeyboardInterrupt
            _interrupted()
        raise


def _interrupted() -> None:
    end_on_next_signal()  # a second Ctrl-C while cleaning up ends the process, without a traceback
    _close_progress_bars()
    print("gpt2: interrupted", file=sys.stderr)
    sys.exit(130)
