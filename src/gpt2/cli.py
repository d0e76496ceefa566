"""The `gpt2` command. Each subcommand is a typed function elsewhere in the package;
jsonargparse derives the options, `--help` and config-file support from its signature."""

from __future__ import annotations

import sys

import jsonargparse

from gpt2.checkpoint import read_config
from gpt2.config import GPT2Config
from gpt2.data.prepare import prepare_command
from gpt2.generate_cli import generate_command
from gpt2.tokenizers.train import tokenizer_train
from gpt2.training.cli import CONFIG_MODE, evaluate, train


def info(checkpoint: str | None = None, preset: str = "gpt2") -> None:
    """Print a model's config and parameter count.

    Args:
        checkpoint: A checkpoint or Hugging Face GPT-2 directory (overrides --preset).
        preset: A named config: gpt2, gpt2-medium, gpt2-large, gpt2-xl, char-tiny, cpu-small, cpu-10m.
    """
    import torch

    from gpt2.gpt_model import GPT2

    cfg = read_config(checkpoint) if checkpoint else GPT2Config.from_preset(preset)
    with torch.device("meta"):
        model = GPT2(cfg)
    for key, value in cfg.to_dict().items():
        print(f"{key:>20}: {value}")
    print(f"{'parameters':>20}: {model.num_parameters():,}")


def commands() -> dict:
    """Subcommand name -> function. Imported here so `gpt2 --help` lists them all."""
    return {"info": info, "train": train, "eval": evaluate, "prepare": prepare_command,
            "generate": generate_command, "tokenizer": {"train": tokenizer_train}}


class UserError(Exception):
    """Raised for a mistake the user can fix; printed as one line, no traceback."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `gpt2` console script."""
    try:
        jsonargparse.auto_cli(commands(), args=argv, as_positional=False, parser_mode=CONFIG_MODE)
    except (ValueError, OSError, UserError) as err:  # user mistakes and file-system refusals
        print(f"gpt2: error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("gpt2: interrupted", file=sys.stderr)
        sys.exit(130)
