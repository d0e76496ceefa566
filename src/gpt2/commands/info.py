"""`gpt2 info`: a model's config and parameter count, without loading its weights."""

from __future__ import annotations

from gpt2.config import GPT2Config


def info(checkpoint: str | None = None, preset: str = "gpt2") -> None:
    """Print a model's config and parameter count.

    Args:
        checkpoint: A checkpoint or Hugging Face GPT-2 directory (overrides --preset).
        preset: A named config (see gpt2.config.PRESETS).
    """
    # Imported here, not at the top, so that --help does not import torch (see commands/__init__.py).
    import torch

    from gpt2.checkpoint import read_config
    from gpt2.gpt_model import GPT2

    cfg = read_config(checkpoint) if checkpoint else GPT2Config.from_preset(preset)
    with torch.device("meta"):
        model = GPT2(cfg)
    for key, value in cfg.to_dict().items():
        print(f"{key:>20}: {value}")
    print(f"{'parameters':>20}: {model.num_parameters():,}")
