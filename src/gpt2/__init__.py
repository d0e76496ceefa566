"""gpt2: a readable GPT-2, written from scratch in PyTorch.

`from gpt2 import GPT2, GPT2Config` works as always; the two are imported on first use, so
that importing a light module of the package (the `gpt2` command's entry point, the shard
format) does not pay for importing torch.
"""

from __future__ import annotations

from gpt2.lazy import lazy_exports

__version__ = "0.1.0"
_HOMES = {"GPT2": "gpt2.gpt_model", "GPT2Config": "gpt2.config"}
__all__ = [*_HOMES, "__version__"]
__getattr__ = lazy_exports(__name__, _HOMES)
