"""Names a package re-exports but imports only on first use.

`from gpt2.generation import generate` should keep working, yet importing a light module of
a package (its option dataclasses, which `gpt2 --help` reads) runs the package's
`__init__.py`, and that must not import torch. So a package lists where each name lives and
lets `lazy_exports` build its module-level `__getattr__` (PEP 562).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` that imports `name` from module `homes[name]`."""

    def __getattr__(name: str) -> Any:  # noqa: N807 (the name Python looks up)
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(homes[name]), name)

    return __getattr__
