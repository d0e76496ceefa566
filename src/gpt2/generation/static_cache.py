"""Decoding one token at fixed shapes, so a GPU can replay the whole step as one CUDA graph.

Decoding GPT-2 small at batch 1 launches ~200 small kernels per token; the GPU finishes each
faster than Python launches the next, so the host's overhead sets the speed. A CUDA graph
records the launches of one step once and replays them with a single call. Replay repeats
the recorded kernels with the recorded arguments, so the step must be the same every time:

- the cache is read whole, (B, H, max_len, hd), and keys after the current position are
  masked out, instead of slicing [:length] (a shape that grows every token);
- what changes between tokens (the token, its position, where to write) lives in device
  buffers that are filled in place before each replay, never in Python numbers.

`StaticDecoder` is that step run eagerly (any device; tests check it equals the dynamic path
token for token); `CUDAGraphDecoder` captures it on the first call and replays it after.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gpt2.attention import KVCache, StaticLayerKVCache
from gpt2.gpt_model import GPT2

DECODERS = ("auto", "dynamic", "static", "cuda_graph")


class StaticDecoder:
    """GPT2.forward for one new token per row, over the buffers of an already filled `KVCache`."""

    def __init__(self, model: GPT2, cache: KVCache, batch_size: int) -> None:
        device, L = model.device, cache.max_len
        self.model, self.cache = model, cache
        self.tokens = torch.zeros(batch_size, 1, dtype=torch.long, device=device)  # (B, 1) the new ids
        self.positions = torch.zeros(batch_size, 1, dtype=torch.long, device=device)  # (B, 1) their positions
        self.write_at = torch.zeros(1, dtype=torch.long, device=device)  # (1,) their slot in the cache
        self.real = torch.ones(batch_size, L, dtype=torch.bool, device=device)  # (B, L) False = padding
        self.key_slots = torch.arange(L, device=device)  # (L,)
        self.layers = [StaticLayerKVCache(layer, self.write_at) for layer in cache.layers]

    def set_padding(self, window_mask: Tensor | None) -> None:
        """After each prefill: which cached slots are padding. window_mask: (B, w) 1 = real token,
        for the w cached tokens (None: none is padding); every later token is real."""
        self.real.fill_(True)
        if window_mask is not None:
            self.real[:, :window_mask.size(1)] = window_mask.bool()

    def step(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """tokens, positions: (B,) -> next-token logits (B, V); the token's key and value go to the
        cache's next slot, whose length then grows by one."""
        self.tokens.copy_(tokens[:, None])
        self.positions.copy_(positions[:, None])
        self.write_at.fill_(self.cache.length)  # a fill kernel, no copy from the host
        logits = self._run()
        for layer in self.cache.layers:
            layer.length += 1
        return logits

    def _run(self) -> Tensor:
        return self.forward()

    def forward(self) -> Tensor:
        """The step itself, from the buffers: fixed shapes, no host reads. -> logits (B, V)."""
        m = self.model
        visible = (self.key_slots <= self.write_at) & self.real  # (B, L): written, real keys
        mask = visible[:, None, None, :]  # (B, 1, 1, L) for every head and the one query
        x = m.drop_emb(m.tok_emb(self.tokens) + m.pos_emb(self.positions))  # (B, 1, d)
        for block, layer in zip(m.blocks, self.layers, strict=True):
            x = block(x, mask, layer)
        return m.lm_head(m.final_norm(x))[:, -1, :]  # (B, V)


class CUDAGraphDecoder(StaticDecoder):
    """The same step, captured as a CUDA graph on the first call and replayed after."""

    def __init__(self, model: GPT2, cache: KVCache, batch_size: int) -> None:
        super().__init__(model, cache, batch_size)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.logits: Tensor | None = None  # (B, V), written by every replay

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


def make_decoder(name: str, model: GPT2, cache: KVCache, batch_size: int) -> StaticDecoder | None:
    """The decoder `name` asks for: 'auto' is a CUDA graph on CUDA and the dynamic path (None)
    elsewhere; 'static' is the fixed-shape step run eagerly (for tests and reading)."""
    if name == "auto":
        name = "cuda_graph" if model.device.type == "cuda" else "dynamic"
    if name == "dynamic":
        return None
    if name == "static":
        return StaticDecoder(model, cache, batch_size)
    return CUDAGraphDecoder(model, cache, batch_size)
