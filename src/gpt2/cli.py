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

from gpt2.commands.chat import chat
from gpt2.commands.config_files import CONFIG_MODE, SECTIONS
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


class OneLineErrorParser(jsonargparse.ArgumentParser):
    """jsonargparse's parser, but a command-line mistake (unknown option, a value of the wrong
    type, a missing or invalid config file) is one line naming it, not the whole usage."""

    def error(self, message: str, ex: Exception | None = None) -> None:
        command = self.prog.replace(" [options]", "")
        raise GPT2Error(f"{_one_line(str(message))}; see `{command} --help`")


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
