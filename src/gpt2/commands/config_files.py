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
    return bounded(jsonargparse.get_loader("yaml")(text))


MAX_VALUES = 100_000  # values in a config file, counting each use of a YAML alias; real ones have < 1,000
SECTIONS: set[str] = set()  # keys whose value must be a mapping (optim, train, ...); set by gpt2.cli


def bounded(data: Any) -> Any:
    """`data`, after checking that it expands to at most MAX_VALUES values (a YAML "billion laughs"
    file nests aliases so that a few lines stand for billions of values, which the parser's later
    passes would expand without end) and that every option group is a mapping (`optim: [1, 2]`)."""
    stack, seen = [data], 0
    while stack:
        value = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise yaml.YAMLError(f"the config expands to more than {MAX_VALUES:,} values (nested YAML "
                                 "aliases?); refusing to read it")
        if isinstance(value, dict):
            for key, item in value.items():
                if key in SECTIONS and not isinstance(item, dict) and item is not None:
                    raise yaml.YAMLError(f"{key!r} must be a mapping of its options (e.g. {key}: "
                                         f"{{name: value}}), got {type(item).__name__} {item!r}"[:200])
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return data



jsonargparse.set_loader(CONFIG_MODE, yaml_or_toml_load, exceptions=(yaml.YAMLError,))
