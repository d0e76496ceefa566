"""Config files for the `gpt2` command: YAML or TOML, read by one loader.

`gpt2 train --config run.yaml` (or run.toml) fills the same options as the command line:
a key `optim: {lr: 3e-4}` means `--optim.lr 3e-4`.
"""

from __future__ import annotations

from typing import Any

import jsonargparse
import yaml

CONFIG_MODE = "yaml_or_toml"  # the parser mode of the `gpt2` command: config files in YAML or TOML


def yaml_or_toml_load(text: str) -> Any:
    """Read a config file (or a command-line value) written in TOML or YAML.

    jsonargparse reads both config files and option values through this one function.
    A TOML document ([section] tables, key = value lines) is tried only for multi-line
    text, so a single value such as `--eval.prompt "a = b"` stays a string; everything
    else is YAML, parsed by jsonargparse's own YAML loader.
    """
    if "\n" in text:
        try:
            import tomllib  # Python >= 3.11
        except ImportError:  # pragma: no cover - Python 3.10 reads YAML only
            tomllib = None
        if tomllib is not None:
            try:
                return tomllib.loads(text)
            except tomllib.TOMLDecodeError:
                pass  # not TOML: YAML
    return jsonargparse.get_loader("yaml")(text)



jsonargparse.set_loader(CONFIG_MODE, yaml_or_toml_load, exceptions=(yaml.YAMLError,))
