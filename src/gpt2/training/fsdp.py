"""Fully sharded data parallel training (FSDP2, `--system.parallel fsdp`).

Under DDP (distributed.py) every process holds the whole model, its gradients and AdamW's
two moments: 16 bytes per parameter, whatever the number of processes. FSDP2
(`torch.distributed.fsdp.fully_shard`) cuts every parameter into N pieces, one per
process (a DTensor sharded on dim 0), so each process keeps about 16/N bytes per parameter
(plus the activations, which `--system.activation_checkpointing` trades for compute).

    forward of block i:   all-gather block i's pieces -> full weights -> compute -> free them
    backward of block i:  all-gather again -> gradients -> reduce-scatter: each process keeps
                          the average of its own piece of the gradient
    optimizer step:       on the local pieces only (AdamW is elementwise)

Each transformer block is one unit of gathering; the root (embeddings, final norm, the tied
head) is another. The math is DDP's: the same global batch, the same averaged gradient,
the same update; tests/test_fsdp.py checks the numbers against one process (the gloo
backend once averaged FSDP2 gradients wrongly, pytorch#162338, so they are tested, not
trusted). With bf16 the blocks compute with bf16 copies of the weights and reduce
gradients in float32; the sharded master weights and the optimizer stay float32.

One process (no torchrun) has nothing to shard with: the model runs as it is, and the
checkpoint is still written in the sharded layout (sharded_checkpoint.py), so a run can
move between 1 and N processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from gpt2.errors import GPT2Error
from gpt2.training.distributed import DistInfo


def checkpoint_blocks(model: nn.Module) -> None:
    """Activation checkpointing per transformer block: the backward pass recomputes each
    block's forward instead of keeping its activations (about a third more compute; the
    activations of only one block at a time). Parameter names are unchanged."""
    from torch.distributed._composable import checkpoint

    for block in model.blocks:
        checkpoint(block)


def mixed_precision(amp_dtype: torch.dtype) -> object:
    """bf16 runs compute with bf16 weights and average gradients in float32; float32 runs
    keep float32 throughout."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if amp_dtype is torch.bfloat16:
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def check_fsdp(optimizer_name: str, amp_dtype: torch.dtype) -> None:
    """Refuse what FSDP cannot do here, before any weights are built."""
    if optimizer_name != "adamw":
        raise GPT2Error("--system.parallel fsdp shards every matrix across processes, so Muon's "
                        "orthogonalisation (which needs whole matrices) cannot run; use --optim.name adamw "
                        "or --system.parallel ddp")
    if amp_dtype is torch.float16:
        raise GPT2Error("--system.parallel fsdp runs in float32 or bf16; fp16 needs a sharded gradient "
                        "scaler this trainer does not have: use --system.dtype bf16")


def parallelize(model: nn.Module, system: Any, optimizer_name: str, info: DistInfo,
                amp_dtype: torch.dtype) -> bool:
    """Apply --system.activation_checkpointing and, for --system.parallel fsdp on several
    processes, fully_shard each block, then the root, in place (the parameters become
    DTensors: build the optimizer after this). Returns whether the model is now sharded."""
    if system.activation_checkpointing:
        checkpoint_blocks(model)
    if system.parallel != "fsdp":
        return False
    check_fsdp(optimizer_name, amp_dtype)
    if not info.enabled:
        return False
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(info.device.type, (info.world_size,))
    policy = mixed_precision(amp_dtype)
    for block in model.blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return True


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def local(t: Tensor | None) -> Tensor | None:
    """A plain tensor from a DTensor (e.g. clip_grad_norm_'s total norm over sharded
    gradients, which is partial until reduced), unchanged otherwise."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def even_batches(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], n_local: int,
                 info: DistInfo) -> Iterator[tuple[Tensor, Tensor]]:
    """This process's validation batches; then, where another process has more (the last
    window may fall to some processes only), as many extra forward passes on a throwaway
    batch: every forward of a sharded model is a collective that all processes must join."""
    most = torch.tensor([n_local], device=info.device)
    dist.all_reduce(most, op=dist.ReduceOp.MAX)
    x = None
    for x, y in batches:
        yield x, y
    for _ in range(int(most.item()) - n_local):
        if x is None:
            x = torch.zeros(1, 1, dtype=torch.long, device=info.device)
        model(x[:1])  # the result is dropped; mean_loss runs this under no_grad
