"""The engine's one-token step at fixed shapes, so a GPU can replay it as one CUDA graph.

Decoding GPT-2 small at batch 1 launches ~200 small kernels per token; the GPU finishes each
faster than Python launches the next, so the host's overhead sets the speed. A CUDA graph
records the launches of one step once and replays them with a single call. Replay repeats
the recorded kernels with the recorded arguments, so the step must be the same every time:

- every slot of the cache is computed and read whole, (rows, H, max_len + 1, hd); keys after a
  row's position are masked out, instead of slicing [:A, :, :span] (shapes that change);
- what changes between tokens (the tokens, their positions, which are also where their keys
  are written) lives in device buffers filled in place before each replay.

Slots past the active rows compute throw-away values. `StaticDecoder` is that step run
eagerly (any device; tests check it equals the engine's dynamic step token for token);
`CUDAGraphDecoder` captures it on its first step and replays it after, for as long as the
engine (and so its cache) lives.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gpt2.generation.compiled_step import CompiledDecoder
from gpt2.generation.host_transfer import to_device
from gpt2.generation.kv_slots import SlotCache
from gpt2.gpt_model import GPT2

DECODERS = ("auto", "dynamic", "static", "cuda_graph", "compiled")


class StaticView:
    """A layer's buffers, written at each row's position held in a device tensor."""

    def __init__(self, k: Tensor, v: Tensor, positions: Tensor) -> None:
        self.k, self.v, self.positions = k, v, positions  # positions: (rows, 1)
        self.rows = torch.arange(k.size(0), device=k.device)

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """k, v: (rows, H, 1, hd) -> the whole buffers (rows, H, max_len + 1, hd)."""
        self.k[self.rows, :, self.positions[:, 0]] = k[:, :, 0]
        self.v[self.rows, :, self.positions[:, 0]] = v[:, :, 0]
        return self.k, self.v


class StaticDecoder:
    """A one-token step for every slot of a `SlotCache`, at fixed shapes."""

    def __init__(self, model: GPT2, cache: SlotCache) -> None:
        device = model.device
        self.model = model
        self.tokens = torch.zeros(cache.rows, 1, dtype=torch.long, device=device)  # (rows, 1)
        self.positions = torch.zeros(cache.rows, 1, dtype=torch.long, device=device)  # (rows, 1)
        self.key_slots = torch.arange(cache.k[0].size(2), device=device)  # (max_len + 1,): all of a buffer
        self.layers = [StaticView(k, v, self.positions) for k, v in zip(cache.k, cache.v, strict=True)]

    def step(self, tokens: Tensor, lengths: list[int]) -> Tensor:
        """tokens: (A,) the new id of rows 0..A-1, lengths: their cached lengths (= the new
        tokens' positions) -> next-token logits (A, V)."""
        A = tokens.size(0)
        self.tokens[:A, 0].copy_(tokens)
        self.positions[:A, 0].copy_(to_device(lengths, self.positions.device))
        return self._run()[:A]

    def _run(self) -> Tensor:
        return self.forward()

    def forward(self) -> Tensor:
        """The step itself, from the buffers: fixed shapes, no host reads. -> logits (rows, V)."""
        visible = self.key_slots[None, :] <= self.positions  # (rows, max_len + 1): written keys
        mask = visible[:, None, None, :]  # (rows, 1, 1, max_len + 1) for every head and the one query
        x = self.model.hidden_states(self.tokens, self.positions, mask, self.layers)  # (rows, 1, d)
        return self.model.lm_head(x[:, -1])  # (rows, V)


class CUDAGraphDecoder(StaticDecoder):
    """The same step, captured as a CUDA graph on the first call and replayed after."""

    def __init__(self, model: GPT2, cache: SlotCache) -> None:
        super().__init__(model, cache)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.logits: Tensor | None = None  # (rows, V), written by every replay

    def _run(self) -> Tensor:
        if self.graph is None:
            self._capture()
        assert self.graph is not None and self.logits is not None
        self.graph.replay()
        return self.logits.clone()  # the next replay overwrites the buffer

    def _capture(self) -> None:
        # Warm-up on a side stream (lazy initialisation, kernel selection), as CUDA graphs need.
        # It runs the real step: writing the same key and value to the same slot is harmless.
        side = torch.cuda.Stream(self.model.device)
        side.wait_stream(torch.cuda.current_stream(self.model.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self.forward()
        torch.cuda.current_stream(self.model.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self.forward()


def make_decoder(name: str, model: GPT2, cache: SlotCache) -> StaticDecoder | CompiledDecoder | None:
    """The decoder `name` asks for: 'auto' is a CUDA graph on CUDA and the dynamic step (None)
    elsewhere; 'static' is the fixed-shape step run eagerly (for tests and reading);
    'compiled' the step compiled for the CPU (compiled_step.py)."""
    if name == "auto":
        name = "cuda_graph" if model.device.type == "cuda" else "dynamic"
    if name == "dynamic":
        return None
    if name == "static":
        return StaticDecoder(model, cache)
    if name == "compiled":
        return CompiledDecoder(model, cache)
    return CUDAGraphDecoder(model, cache)
