"""gpt2: a readable GPT-2, written from scratch in PyTorch.

`from gpt2 import GPT2, GPT2Config` works as always; the two are imported on first use, so
that importing a light module of the package (the `gpt2` command's entry point, the shard
format) does not pay for importing torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["GPT2", "GPT2Config", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "GPT2":
        from gpt2.gpt_model import GPT2

        return GPT2
    if name == "GPT2Config":
        from gpt2.config import GPT2Config

        return GPT2Config
    raise AttributeError(f"module 'gpt2' has no attribute {name!r}")
