"""gpt2: a readable GPT-2, written from scratch in PyTorch."""

from gpt2.config import GPT2Config
from gpt2.gpt_model import GPT2

__version__ = "0.1.0"
__all__ = ["GPT2", "GPT2Config", "__version__"]
