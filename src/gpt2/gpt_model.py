"""GPT-2: token + position embeddings, a stack of transformer blocks, a final LayerNorm and
an LM head that shares its weight with the token embedding (Radford et al., 2019)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gpt2.attention import ATTENTION_IMPLS, KVCache, MultiHeadAttention
from gpt2.checkpoint import read_config, read_weights, readable_path, save_checkpoint
from gpt2.config import GPT2Config
from gpt2.errors import CheckpointError, GPT2Error
from gpt2.hf_layout import from_hf_state_dict
from gpt2.layer_norm import LayerNorm
from gpt2.limits import check_fits, parameter_count
from gpt2.transformer_block import TransformerBlock


class GPT2(nn.Module):
    """The GPT-2 language model: token ids (B, T) -> next-token logits (B, T, vocab_size)."""

    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        cfg.validate()
        if torch.get_default_device().type != "meta":  # a meta model (gpt2 info) allocates nothing
            check_weights_fit(cfg)
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)  # wte
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)  # wpe (learned)
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.final_norm = LayerNorm(cfg.emb_dim, cfg.layer_norm_epsilon, cfg.bias)
        self.lm_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # weight tying (Press & Wolf, 2017)
        self.reset_parameters()

    @property
    def device(self) -> torch.device:
        """Where the weights live (and so where inputs must go)."""
        return self.tok_emb.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype (float32 unless the model was cast, e.g. for bf16 decoding)."""
        return self.tok_emb.weight.dtype

    def set_runtime_options(self, cfg: GPT2Config) -> None:
        """Take `cfg`'s dropout rate and attention path in place; these change no weight, so a
        loaded model can be fine-tuned with other dropout or run with the other attention."""
        self.cfg = cfg
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.p = cfg.drop_rate
            if isinstance(module, MultiHeadAttention):
                module.attn_dropout = cfg.drop_rate  # attention-weight dropout, given to the kernel
                module.attend = ATTENTION_IMPLS[cfg.attention]

    def reset_parameters(self) -> None:
        """GPT-2's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm gains, and the
        projections that write into the residual stream scaled by 1/sqrt(2 * n_layers) so its
        variance does not grow with depth."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, LayerNorm):
                nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        residual_std = 0.02 / math.sqrt(2 * self.cfg.n_layers)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.proj.weight, mean=0.0, std=residual_std)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Distinct parameters (the tied head counted once). GPT-2 small: 124,439,808."""
        n = sum(p.numel() for p in self.parameters())  # parameters() yields shared ones once
        if exclude_embeddings:
            n -= self.tok_emb.weight.numel() + self.pos_emb.weight.numel()
        return n

    def forward(self, idx: Tensor, cache: KVCache | None = None,
                attention_mask: Tensor | None = None,
                position_ids: Tensor | None = None) -> Tensor:
        """idx: (B, T) token ids -> logits (B, T, vocab_size).

        cache: keys/values of earlier positions (generation); the new positions follow them.
        attention_mask: (B, T_past + T), 1 for real tokens and 0 for padding.
        position_ids: (B, T), needed with left padding; defaults to T_past, ..., T_past + T - 1.
        """
        past = cache.length if cache is not None else 0
        self._check_input(idx, past)
        T = idx.size(1)
        if position_ids is None:
            position_ids = torch.arange(past, past + T, device=idx.device).unsqueeze(0)  # (1, T)
        mask = self._attention_mask(T, past, attention_mask, idx.device)
        layers = cache.layers if cache is not None else [None] * len(self.blocks)
        return self.lm_head(self.hidden_states(idx, position_ids, mask, layers))  # (B, T, vocab_size)

    def hidden_states(self, idx: Tensor, position_ids: Tensor, mask: Tensor | None,
                      layers: Sequence[Any]) -> Tensor:
        """The body of `forward` without its checks and head: ids (B, T) at positions (B or 1, T)
        -> the final LayerNorm's output (B, T, d). `mask` is bool (B or 1, 1, T, T_all) or None
        (causal); `layers` holds one key/value cache per block (None: no cache). The decoding
        engine calls it directly with caches whose rows sit at different positions, and takes
        the LM head of the last position only."""
        x = self.drop_emb(self.tok_emb(idx) + self.pos_emb(position_ids))  # (B, T, d)
        for block, layer in zip(self.blocks, layers, strict=True):
            x = block(x, mask, layer)
        return self.final_norm(x)  # (B, T, d)

    @staticmethod
    def _attention_mask(T: int, past: int, attention_mask: Tensor | None,
                        device: torch.device) -> Tensor | None:
        """None when plain causal attention suffices, else bool (B or 1, 1, T, past + T)."""
        if attention_mask is None and (past == 0 or T == 1):
            return None
        q_pos = torch.arange(past, past + T, device=device).unsqueeze(1)  # (T, 1)
        k_pos = torch.arange(past + T, device=device).unsqueeze(0)  # (1, past + T)
        mask = (k_pos <= q_pos)[None, None]  # (1, 1, T, past + T): causal
        if attention_mask is not None:
            mask = mask & attention_mask.bool()[:, None, None, :]
            # A padding query would see no key at all (NaN softmax); let it see itself.
            mask = mask | (k_pos == q_pos)[None, None]
        return mask

    def _check_input(self, idx: Tensor, past: int) -> None:
        """Turn the usual mistakes into a clear ValueError instead of an index error deep inside."""
        if not isinstance(idx, Tensor):
            raise GPT2Error(f"idx must be a torch.Tensor of token ids, got {type(idx).__name__}")
        if idx.dtype not in (torch.int64, torch.int32):
            raise GPT2Error(f"idx must hold integer token ids (torch.long), got dtype {idx.dtype}")
        if idx.dim() != 2:
            raise GPT2Error(
                f"idx must have shape (batch, seq_len), got {tuple(idx.shape)}; "
                "use idx.unsqueeze(0) for a single sequence"
            )
        if idx.size(1) == 0:
            raise GPT2Error("idx is empty (seq_len 0); give at least one token")
        if past + idx.size(1) > self.cfg.context_length:
            raise GPT2Error(
                f"sequence length {past + idx.size(1)} exceeds the model's context_length "
                f"{self.cfg.context_length}; crop the input to the last {self.cfg.context_length} tokens"
            )
        if not self._checks_ids(idx):
            return
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= self.cfg.vocab_size:
            bad = lo if lo < 0 else hi
            raise GPT2Error(
                f"token id {bad} is outside the vocabulary [0, {self.cfg.vocab_size}); "
                "was the text encoded with a different tokenizer?"
            )

    @staticmethod
    def _checks_ids(idx: Tensor) -> bool:
        """Whether `forward` checks the id range: on the CPU only. Reading min/max makes the host
        wait for an accelerator (a sync every step), and a compiled graph cannot read them; there
        the ids are checked at the boundaries instead (prompts in generation.request, the
        tokenizer's vocabulary against the model's when training starts)."""
        return idx.device.type == "cpu" and not torch.compiler.is_compiling()

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None) -> GPT2:
        """Load our checkpoint directory or a local Hugging Face GPT-2 directory (in eval mode).
        The files are verified against the checkpoint's manifest (see gpt2.checkpoint).
        dtype: cast the weights (for inference), e.g. torch.bfloat16; None keeps float32. The
        model knows nothing of the machine: what suits this hardware ("auto") is decided by
        gpt2.runtime (`resolve_runtime(...).dtype`) before loading."""
        if dtype is not None and not isinstance(dtype, torch.dtype):
            raise GPT2Error(f"from_pretrained(dtype={dtype!r}): give a torch.dtype (e.g. torch.bfloat16) "
                            "or None; resolve names and 'auto' with gpt2.runtime first")
        if not readable_path(path).is_dir():
            raise CheckpointError(f"{path}: no such checkpoint directory")
        cfg = read_config(path)
        check_weights_fit(cfg)  # before reading them: a config.json may describe any size
        with torch.device("meta"):
            model = cls(cfg)  # no point initialising weights that are about to be replaced
        state = from_hf_state_dict(read_weights(path), model.state_dict(), cfg.bias, Path(path))
        model.to_empty(device=device)
        model.lm_head.weight = model.tok_emb.weight  # re-tie after materialising
        state["lm_head.weight"] = state["tok_emb.weight"]
        model.load_state_dict(state)
        if dtype is not None:
            model.to(dtype)
        return model.eval()

    def save_pretrained(self, path: str | Path) -> None:
        """Write a directory that both `GPT2.from_pretrained` and transformers'
        `GPT2LMHeadModel.from_pretrained` load. Atomic: see `gpt2.checkpoint`."""
        save_checkpoint(path, self)


def check_weights_fit(cfg: GPT2Config) -> None:
    """Refuse, in one line with the figure, a model whose float32 weights exceed the memory available."""
    params = parameter_count(cfg.vocab_size, cfg.context_length, cfg.emb_dim, cfg.n_layers)
    check_fits(f"a model of {params:,} parameters ({cfg.n_layers} layers x {cfg.emb_dim}, vocab "
               f"{cfg.vocab_size:,})", 4 * params, "use a smaller model, or check its config.json")
