"""Model hyper-parameters: one dataclass, presets as data, validation with clear errors."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

from gpt2.errors import GPT2Error
from gpt2.limits import MAX_LAYERS, check_numbers

AttentionImpl = Literal["sdpa", "explicit"]


@dataclass
class GPT2Config:
    """Shape of a GPT-2 model. The defaults are GPT-2 small (124M parameters).

    Names follow the original project; `to_hf_dict`/`from_hf_dict` map them to the
    keys of Hugging Face's `config.json` (n_embd, n_layer, ...). Each field's help is the
    docstring under it (also what `gpt2 train --help` shows for `--model.<field>`).
    """

    vocab_size: int = 50257
    """Number of token ids the embedding and LM head know."""
    context_length: int = 1024
    """Longest sequence: the size of the position embedding."""
    emb_dim: int = 768
    """Width of the residual stream (d_model)."""
    n_heads: int = 12
    """Attention heads; emb_dim must be divisible by it."""
    n_layers: int = 12
    """Transformer blocks."""
    drop_rate: float = 0.1
    """Dropout on embeddings, attention weights and residual branches."""
    bias: bool = True
    """Biases in Linear and LayerNorm layers (GPT-2 has them)."""
    layer_norm_epsilon: float = 1e-5
    """Added to the variance in LayerNorm."""
    attention: AttentionImpl = "sdpa"
    """sdpa (torch's fused kernel) or explicit (the written-out reference); same weights, and
    `gpt2 train` picks the faster on the machine at hand when --model.attention is not given."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field that cannot build a model."""
        check_numbers(self, "GPT2Config.")
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise GPT2Error(f"GPT2Config.{name} must be a positive integer, got {value!r}")
        if self.n_layers > MAX_LAYERS:
            raise GPT2Error(f"GPT2Config.n_layers {self.n_layers:,} is more than {MAX_LAYERS:,}; is the "
                            "config damaged?")
        if self.emb_dim % self.n_heads != 0:
            raise GPT2Error(
                f"GPT2Config.emb_dim ({self.emb_dim}) must be divisible by "
                f"GPT2Config.n_heads ({self.n_heads})"
            )
        if not 0.0 <= float(self.drop_rate) < 1.0:
            raise GPT2Error(f"GPT2Config.drop_rate must be in [0, 1), got {self.drop_rate!r}")
        if not 0 < float(self.layer_norm_epsilon) < 1:
            raise GPT2Error(
                f"GPT2Config.layer_norm_epsilon must be in (0, 1), got {self.layer_norm_epsilon!r}"
            )
        if self.attention not in typing.get_args(AttentionImpl):
            raise GPT2Error(
                f"GPT2Config.attention must be 'sdpa' or 'explicit', got {self.attention!r}"
            )

    @property
    def head_dim(self) -> int:
        return self.emb_dim // self.n_heads

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> GPT2Config:
        """Build a config from a named preset (see `PRESETS`), with optional overrides."""
        if name not in PRESETS:
            raise GPT2Error(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPT2Config:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise GPT2Error(f"unknown GPT2Config field(s): {', '.join(unknown)}")
        return cls(**data)

    def to_hf_dict(self) -> dict[str, Any]:
        """The `config.json` that transformers' GPT2LMHeadModel reads."""
        return {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": self.vocab_size,
            "n_positions": self.context_length,
            "n_ctx": self.context_length,
            "n_embd": self.emb_dim,
            "n_layer": self.n_layers,
            "n_head": self.n_heads,
            "n_inner": None,
            "activation_function": "gelu_new",
            "resid_pdrop": self.drop_rate,
            "embd_pdrop": self.drop_rate,
            "attn_pdrop": self.drop_rate,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "initializer_range": 0.02,
            "tie_word_embeddings": True,
            # GPT-2's <|endoftext|>; other vocabularies name their own in the tokenizer files.
            "bos_token_id": 50256 if self.vocab_size == 50257 else None,
            "eos_token_id": 50256 if self.vocab_size == 50257 else None,
            # Our own key; transformers ignores it. A bias-free model is saved with zero
            # biases so that transformers computes exactly the same function.
            "bias": self.bias,
        }

    @classmethod
    def from_hf_dict(cls, data: dict[str, Any]) -> GPT2Config:
        """Read a Hugging Face GPT-2 `config.json` (or ours, which has the same keys)."""
        if data.get("model_type", "gpt2") != "gpt2":
            raise GPT2Error(f"config.json describes model_type {data['model_type']!r}, not 'gpt2'")
        activation = data.get("activation_function", "gelu_new")
        if activation not in ("gelu_new", "gelu_pytorch_tanh"):
            raise GPT2Error(f"config.json activation_function {activation!r} is not GPT-2's tanh GELU")
        n_inner = data.get("n_inner")
        if n_inner is not None and n_inner != 4 * data["n_embd"]:
            raise GPT2Error(f"config.json n_inner={n_inner} is not 4 * n_embd; unsupported")
        return cls(
            vocab_size=data["vocab_size"],
            context_length=data["n_positions"],
            emb_dim=data["n_embd"],
            n_heads=data["n_head"],
            n_layers=data["n_layer"],
            drop_rate=data.get("resid_pdrop", 0.1),
            bias=data.get("bias", True),
            layer_norm_epsilon=data.get("layer_norm_epsilon", 1e-5),
        )


_GPT2 = dict(vocab_size=50257, context_length=1024)

PRESETS: dict[str, dict[str, Any]] = {
    # The four published GPT-2 sizes.
    "gpt2": dict(**_GPT2, emb_dim=768, n_heads=12, n_layers=12),
    "gpt2-medium": dict(**_GPT2, emb_dim=1024, n_heads=16, n_layers=24),
    "gpt2-large": dict(**_GPT2, emb_dim=1280, n_heads=20, n_layers=36),
    "gpt2-xl": dict(**_GPT2, emb_dim=1600, n_heads=25, n_layers=48),
    # Small CPU presets. vocab_size is a placeholder: training sets it from the tokenizer.
    # nanoGPT's CPU recipe for character-level tiny Shakespeare (~0.8M parameters).
    "char-tiny": dict(
        vocab_size=65, context_length=64, emb_dim=128, n_heads=4, n_layers=4, drop_rate=0.0
    ),
    # The same shape with context 128: `gpt2 train`'s default, the demo's and own-text model.
    "cpu-tiny": dict(
        vocab_size=8192, context_length=128, emb_dim=128, n_heads=4, n_layers=4, drop_rate=0.0
    ),
    # A few-minute CPU model for the built-in corpus with a small vocabulary (~3-4M).
    "cpu-small": dict(
        vocab_size=8192, context_length=128, emb_dim=256, n_heads=4, n_layers=4, drop_rate=0.0
    ),
    # ~10M non-embedding parameters: nanoGPT's shakespeare-char GPU recipe.
    "cpu-10m": dict(
        vocab_size=50257, context_length=256, emb_dim=384, n_heads=6, n_layers=6, drop_rate=0.2
    ),
}

PresetName = Literal[tuple(PRESETS)]  # type: ignore[valid-type]  # "gpt2", ..., "cpu-10m"
