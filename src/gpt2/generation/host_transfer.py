"""Small values between the host and a GPU without waiting for the GPU's queue.

A plain `torch.tensor(values, device="cuda")` or `tensor.tolist()` waits until the GPU has
finished *everything* queued before it. At batch 1 a decoding step of GPT-2 small takes the
GPU well under a millisecond, about as long as the Python around it, so every such wait
leaves one of the two idle. Copies through page-locked ("pinned") host memory, with
`non_blocking=True`, join the queue instead; an event recorded right after a copy to the
host lets the host wait for that copy alone, not for the work queued after it (the next
step). On the CPU there is no queue: both are plain copies.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def to_device(values: Sequence[int] | Tensor, device: torch.device) -> Tensor:
    """Python ints or a CPU tensor -> that tensor on `device`, queued behind the work already
    there (from pinned memory on CUDA) rather than waiting for it; on the CPU, no copy of a tensor."""
    host = torch.as_tensor(values)
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


class HostCopy:
    """A device tensor's values on their way to the host: created before more work is queued,
    read with `tolist` after it, which waits for the copy alone."""

    def __init__(self, tensor: Tensor) -> None:
        self.done: torch.cuda.Event | None = None
        if tensor.device.type == "cuda":
            self.host = tensor.to("cpu", non_blocking=True)  # into pinned memory
            self.done = torch.cuda.Event()
            self.done.record()
        else:
            self.host = tensor

    def tolist(self) -> list:
        if self.done is not None:
            self.done.synchronize()
        return self.host.tolist()
