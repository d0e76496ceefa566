"""Command-line options generated from the dataclasses the library takes.

Each option is declared once, as a field of a dataclass with its help text written once: an
attribute docstring under the field (what jsonargparse reads, see cli.py), or an `Args:`
entry of the class docstring. `flat_command` turns a function of such dataclasses into a
function jsonargparse can read: its signature and help are the fields of all of them, so
`gpt2 generate --temperature 0.8` fills `SamplingOptions.temperature`, and the dataclass's
own checks run before the command does any work.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any

import docstring_parser


def field_help(cls: type) -> dict[str, str]:
    """Each field's help as one line: from the attribute docstrings or `Args:` entries of `cls`
    and of the dataclasses it extends. (One line, because `flat_command` writes them into an
    `Args:` block, where a continuation line at the wrong indent would end the block.)"""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            found.update({p.arg_name: " ".join((p.description or "").split())
                          for p in docstring_parser.parse_from_object(klass).params})
    return found


def flat_command(run: Callable[..., Any], *classes: type, name: str, doc: str) -> Callable[..., Any]:
    """A command taking every field of `classes` as a keyword option; it builds one instance of
    each class from those options and calls `run(*instances)`. `doc` is the command's help
    (its first line is the summary shown by `gpt2 --help`)."""
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=typing.get_type_hints(cls)[p.name])
              for cls in classes for p in inspect.signature(cls).parameters.values()]
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise TypeError(f"option names clash in {name}: {sorted(n for n in names if names.count(n) > 1)}")
    params.sort(key=lambda p: p.default is not inspect.Parameter.empty)  # required options first
    help_lines = [f"    {arg}: {text}" for cls in classes for arg, text in field_help(cls).items()]

    def command(**options: Any) -> Any:
        parts = [cls(**{f.name: options[f.name] for f in dataclasses.fields(cls) if f.name in options})
                 for cls in classes]
        return run(*parts)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = doc.rstrip() + "\n\nArgs:\n" + "\n".join(help_lines) + "\n"
    command.__name__ = command.__qualname__ = name
    return command
