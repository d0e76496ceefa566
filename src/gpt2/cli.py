"""The `gpt2` command: a table of subcommands, each a thin module in gpt2.commands.

jsonargparse derives every option, `--help` and `--config FILE` support from the
subcommands' signatures and the dataclasses behind them. Mistakes the user can fix
(`GPT2Error`) and file-system refusals (`OSError`) are printed as one line with exit
status 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import jsonargparse

from gpt2.commands.config_files import CONFIG_MODE
from gpt2.commands.eval import evaluate
from gpt2.commands.generate import generate
from gpt2.commands.info import info
from gpt2.commands.prepare import prepare_command
from gpt2.commands.tokenizer import tokenizer_train
from gpt2.commands.train import train
from gpt2.errors import GPT2Error


def commands() -> dict:
    """Subcommand name -> function."""
    return {"info": info, "train": train, "eval": evaluate, "prepare": prepare_command,
            "generate": generate, "tokenizer": {"train": tokenizer_train}}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `gpt2` console script."""
    try:
        jsonargparse.auto_cli(commands(), args=argv, as_positional=False, parser_mode=CONFIG_MODE)
    except (GPT2Error, OSError) as err:
        print(f"gpt2: error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("gpt2: interrupted", file=sys.stderr)
        sys.exit(130)
