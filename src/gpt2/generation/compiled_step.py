"""The engine's one-token step compiled into one program for the CPU (`decoder="compiled"`).

Run eagerly, one decoding step of gpt2-124M calls ~450 torch operations; apart from the 49
products each is tiny (a LayerNorm of 768 numbers, a residual add), so the step pays ~2-3 ms
of Python and dispatch for them, 15-20% of the step on a CPU. torch.compile (its inductor
backend) traces the step once and writes C++ loops that fuse them; the products stay in
their kernel libraries, called as opaque operators (opaque_linear.py), and attention, one
query per row, becomes loops too (attention.one_query_attention, which sdpa_attention picks
while the step is traced).

The rows and the number of keys read (`span`) are symbolic in the traced program, so one
compiled program serves every length; keys after a row's position are masked out (as in
static_cache.py), so rows at different lengths need no special case. Compiling takes tens of
seconds the first time on a machine (inductor caches its C++ on disk; later processes take a
few seconds) and needs a C++ compiler, so it pays off for long-running decoding (`gpt2 serve`
compiles by default, at start-up: text.TextGenerator.compile_step), not for a short `gpt2
generate`: 1.02-1.29x per token on gpt2-124M (benchmarks/RESULTS.md). Tests check it gives
the dynamic step's tokens; in bf16 its fused loops keep float32 between operations, so logits
differ from eager's by about one bf16 step.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from gpt2.generation.fast_linear import prepare_for_decoding
from gpt2.generation.kv_slots import SlotCache
from gpt2.generation.opaque_linear import register_layers
from gpt2.gpt_model import GPT2


def _guards_to_keep(entries: list) -> list[bool]:
    """Which of dynamo's checks run before each call of the compiled step. Its ~450 checks of
    the model's modules (hooks, attributes) cost ~0.5 ms a token and guard against changes no
    decoding model sees, so they go; kept are the checks of every tensor (the weights are the
    program's inputs: shapes, dtypes) and of each opaque layer's number (the program calls those
    layers by number, so another model's layers get their own program)."""
    default = torch.compiler.skip_guard_on_all_nn_modules_unsafe(entries)
    return [keep or entry.guard_type == "TENSOR_MATCH" or entry.name.endswith("._opaque_number")
            for keep, entry in zip(default, entries, strict=True)]


def cpp_compiler_found() -> bool:
    """Whether inductor finds a working C++ compiler (it checks `$CXX`, else g++ or clang++)."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception:  # noqa: BLE001 (InvalidCxxCompiler, or a torch build without inductor)
        return False
    return True


class CompiledDecoder:
    """A one-token step for the active rows of a `SlotCache`, compiled by inductor."""

    def __init__(self, model: GPT2, cache: SlotCache) -> None:
        prepare_for_decoding(model, compiled=True)  # the layout the step's loops read fastest
        register_layers(model)
        self.model, self.cache = model, cache
        self.key_slots = torch.arange(cache.max_len, device=model.device)  # (max_len,)
        self._compiled: Callable[..., Tensor] | None = torch.compile(self.forward, fullgraph=True,
                                                      options={"guard_filter_fn": _guards_to_keep})

    def step(self, tokens: Tensor, lengths: list[int]) -> Tensor:
        """tokens: (A,) the new id of rows 0..A-1, lengths: their cached lengths (= the new
        tokens' positions) -> next-token logits (A, V)."""
        tokens = tokens[:, None]  # (A, 1)
        positions = torch.tensor(lengths, device=tokens.device)[:, None]  # (A, 1)
        key_slots = self.key_slots[:max(lengths) + 1]  # (span,)
        for t in (tokens, positions, key_slots):  # symbolic sizes (the tensors passed, not their bases)
            torch._dynamo.maybe_mark_dynamic(t, 0)
        if self._compiled is not None:
            try:
                return self._compiled(tokens, positions, key_slots)
            except Exception as e:  # noqa: BLE001 (no C++ compiler, a torch build without inductor)
                warnings.warn(f"the compiled decoding step is unavailable ({type(e).__name__}: {e}); "
                              "decoding eagerly", RuntimeWarning, stacklevel=2)
                self._compiled = None  # a failed step wrote nothing it does not write again below
        return self.forward(tokens, positions, key_slots)

    def forward(self, tokens: Tensor, positions: Tensor, key_slots: Tensor) -> Tensor:
        """The step itself: tokens (A, 1) at positions (A, 1), reading keys at key_slots
        (span,) = 0..span-1 -> logits (A, V)."""
        A, span = tokens.size(0), key_slots.size(0)
        mask = (key_slots[None, :] <= positions)[:, None, None, :]  # (A, 1, 1, span): written keys
        views = self.cache.step_views(A, positions[:, 0], span)
        x = self.model.hidden_states(tokens, positions, mask, views)  # (A, 1, d)
        return self.model.lm_head(x[:, -1])  # (A, V)
