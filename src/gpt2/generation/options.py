"""`SamplingOptions`: how the next token is chosen (temperature, top-k, top-p, repetition penalty).

The dataclass lives here, without torch, so that the `gpt2` command (`generate --temperature`,
`train --eval.sampling.top_k`) can build its options and `--help` without importing torch.
The processors that apply it to logits are in sampling.py, which re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpt2.errors import GPT2Error
from gpt2.limits import check_numbers

QUANTIZE_CHOICES = ("int8", "int8-dynamic", "fp16")  # --quantize; text.QUANTIZERS does each
COMPILE_CHOICES = ("auto", "true", "false")  # --compile

# Bounds that keep the arithmetic in float32: 1 / temperature and 1 / penalty scale logits (1e-40
# makes them inf, then NaN), and a top_p below 1e-6 rounds to 0 in float32 (keeps no token).
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 100.0
MIN_TOP_P = 1e-6
MIN_PENALTY, MAX_PENALTY = 0.01, 100.0


@dataclass(frozen=True)
class DecodingOptions:
    """How each one-token step runs."""

    compile: str = "auto"
    """Compile the decoding step on a CPU (torch.compile, which needs a C++ compiler): ~1.1x
    faster per token (bf16 ~1.3x), after a compile (gpt2-124M: ~1 min the first time on a
    machine, ~10 s once cached). auto: `gpt2 serve` compiles at start-up where a C++ compiler
    is found (a server runs long enough to repay it); `generate` and `chat` do not (a short
    generation would not). true, false: always, never. (A GPU replays its step as a CUDA graph
    either way.)"""

    def __post_init__(self) -> None:
        if self.compile not in COMPILE_CHOICES:
            raise GPT2Error(f"--compile {self.compile!r}: choose {', '.join(COMPILE_CHOICES)}")

    def decoder(self, server: bool) -> str:
        """The engine's `decoder` (static_cache.DECODERS) for a server or a one-off command."""
        if self.compile == "auto" and server:
            from gpt2.generation.compiled_step import cpp_compiler_found  # imports torch

            return "compiled" if cpp_compiler_found() else "auto"
        return "compiled" if self.compile == "true" else "auto"


@dataclass(frozen=True)
class SamplingOptions:
    """How the next token is chosen; checked once up front (not at every step)."""

    temperature: float = 0.8
    """0 = greedy (always the most likely token); lower = safer, higher = wilder."""
    top_k: int | None = 200
    """Sample only among the k most likely tokens (null = no limit)."""
    top_p: float | None = None
    """Sample only among the most likely tokens whose probabilities sum to p, in (0, 1]
    (null = no limit)."""
    repetition_penalty: float = 1.0
    """> 1 makes tokens already in the text less likely (CTRL's penalty; 1 = off)."""

    def __post_init__(self) -> None:
        t, k, p, r = self.temperature, self.top_k, self.top_p, self.repetition_penalty
        check_numbers(self, "")
        if not isinstance(t, (int, float)) or not (t == 0 or MIN_TEMPERATURE <= t <= MAX_TEMPERATURE):
            raise GPT2Error(f"temperature must be 0 (greedy) or from {MIN_TEMPERATURE} to "
                            f"{MAX_TEMPERATURE:g}, got {t!r}")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise GPT2Error(f"top_k must be an integer >= 1 (or None for no limit), got {k!r}")
        if p is not None and (not isinstance(p, (int, float)) or not MIN_TOP_P <= p <= 1):
            raise GPT2Error(f"top_p must be from {MIN_TOP_P} to 1 (or None for no limit), got {p!r}")
        if not isinstance(r, (int, float)) or not MIN_PENALTY <= r <= MAX_PENALTY:
            raise GPT2Error(f"repetition_penalty must be from {MIN_PENALTY} to {MAX_PENALTY:g} (1 = off), "
                            f"got {r!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0
