"""Data-parallel training with PyTorch's own DistributedDataParallel, launched by torchrun.

torchrun starts one process per device and tells each its place through environment
variables (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Every process holds a
full model copy, computes gradients on its own slice of the global batch, and DDP
averages the gradients across processes during backward. Only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    """This process's place in the job: rank among world_size processes, and its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, metrics and prints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def dist_info_from_env(device: torch.device) -> DistInfo:
    """This process's place as torchrun describes it, without joining anything yet (so
    settings can be checked against the world size before any network wait).

    `device` is the device the user asked for; under torchrun on CUDA each process takes
    cuda:LOCAL_RANK.
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistInfo(device=device)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=device)


def init_distributed(info: DistInfo) -> DistInfo:
    """Join the process group torchrun set up: NCCL on CUDA, gloo on CPU (no-op alone)."""
    if not info.enabled:
        return info
    if info.device.type == "cuda":
        torch.cuda.set_device(info.device)
    backend = "nccl" if info.device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return info


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """DDP-wrap the model when running in several processes; the model itself otherwise."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def sync_context(model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """On accumulation micro-steps (sync=False), skip DDP's gradient all-reduce: gradients
    pile up locally and are averaged once, on the last micro-step."""
    if sync or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum floats across processes (in float64, so rounding barely depends on the world size)."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


class StepSignals:
    """The one collective of an optimizer step: this process's loss and its two stop flags
    (Ctrl-C, time budget) summed over all processes in a single all_reduce.

    Nothing here waits for the device: the summed loss stays a tensor (read later, every
    log_interval steps), and the summed flags of step k are read only after step k+1's work is
    queued, so the device never idles while the host waits. Every process reads the same sums
    at the same step, so all stop together. On one process there is nothing to exchange: the
    loss is returned as it is and the flags count at once.
    """

    def __init__(self, info: DistInfo) -> None:
        self.info = info
        self._previous: torch.Tensor | None = None  # step k-1's sums: [loss, stop, out of time]

    def exchange(self, loss: torch.Tensor, stop: bool, out_of_time: bool) -> tuple[torch.Tensor, bool, bool]:
        """loss: () this process's mean loss on the device -> (mean over all processes, still a
        tensor; whether any process asked to stop; whether any ran out of time)."""
        if not self.info.enabled:
            return loss, stop, out_of_time
        # Filled on the device: a tensor made from Python values would be a blocking copy.
        sums = torch.zeros(3, dtype=torch.float64, device=loss.device)  # float64: rounding barely
        sums[0] = loss.detach()  # depends on the world size
        sums[1], sums[2] = float(stop), float(out_of_time)
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
        previous, self._previous = self._previous, sums
        stop_any, late_any = previous[1:].tolist() if previous is not None else (0.0, 0.0)  # step k-1
        return sums[0] / self.info.world_size, stop_any > 0, late_any > 0


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


@contextlib.contextmanager
def process_group(info: DistInfo) -> Iterator[DistInfo]:
    """Tear the process group down on the way out, even after an error."""
    try:
        yield info
    finally:
        if info.enabled and dist.is_initialized():
            dist.destroy_process_group()
