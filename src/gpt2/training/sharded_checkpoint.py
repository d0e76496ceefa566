"""Checkpoints of an FSDP run: the usual checkpoint directory plus the sharded training state.

`latest/` and `best/` keep the layout every other command reads (gpt2.checkpoint):
`model.safetensors` + `config.json` gathered from the shards and written by rank 0, so
`GPT2.from_pretrained`, `gpt2 generate` and transformers load it as they load any other.
Beside it, `sharded/` holds the model and the AdamW moments as each process has them,
written by all processes at once with torch.distributed.checkpoint (DCP): one
`__<rank>_0.distcp` file per process and a `.metadata` index. `training_state.pt` keeps the
rest (step, data position, RNG) without the optimizer.

    latest/
      config.json  model.safetensors  tokenizer files  train_config.json
      training_state.pt        step, loader, RNG (no optimizer)
      sharded/.metadata  sharded/__0_0.distcp  sharded/__1_0.distcp ...
      gpt2_checkpoint.json     sha256 of every file above, the shards included

Resuming reads `sharded/` with DCP, which re-cuts the saved pieces to the pieces of the
new world size, so a run saved on 2 processes continues on 1 or on 4. The guarantees of
gpt2.checkpoint hold: every process writes into the one staging folder rank 0 made, rank 0
adds the rest and the manifest, and only then swaps the folder in (gpt2.files.replace_dir);
a process killed at any moment leaves the previous checkpoint whole. Several nodes need
--train.out_dir on a file system they all see.
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from gpt2.checkpoint import readable_path, recover_interrupted_save, save_checkpoint, verify_checkpoint
from gpt2.errors import GPT2Error
from gpt2.files import staging_dir
from gpt2.training.checkpointing import LATEST, RUN_CONFIG, SHARDS, RunCheckpoints
from gpt2.training.distributed import DistInfo, barrier


class _Gathered:
    """A full state dict where save_checkpoint expects a model (it reads .cfg and .state_dict())."""

    def __init__(self, cfg: Any, state: dict[str, torch.Tensor]) -> None:
        self.cfg, self._state = cfg, state

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._state


def _options(**kw: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(**kw)


def sharded_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """{"model", "optim"} as this process holds them (DTensor pieces under FSDP; whole tensors on
    one process), keyed by parameter names so DCP can match them across world sizes."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    return {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}


def full_weights(model: nn.Module, info: DistInfo) -> dict[str, torch.Tensor]:
    """Every weight whole, on the CPU, on rank 0 ({} elsewhere); all processes must call it."""
    if not info.enabled:
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_options(full_state_dict=True, cpu_offload=True))


@contextlib.contextmanager
def _one_process_is_intended() -> Iterator[None]:
    """Silence DCP's warning that it runs without a process group: on one process we mean it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable")
        yield


class ShardedCheckpoints(RunCheckpoints):
    """RunCheckpoints for FSDP runs: `save` is collective (every process writes its shard)."""

    def __init__(self, out_dir: Path, tokenizer: Any, run_config: dict[str, Any], info: DistInfo,
                 optimizer: torch.optim.Optimizer) -> None:
        super().__init__(out_dir, tokenizer, run_config, info)
        self.optimizer = optimizer

    def save(self, which: str, step: int, model: nn.Module,
             training_state: Callable[[], dict[str, Any]]) -> Path:
        import torch.distributed.checkpoint as dcp

        path = self.out_dir / which
        if which == LATEST and self._latest_step == step:
            return path
        if which == LATEST:
            self._latest_step = step
        weights = full_weights(model, self.info)
        staged = self._staging(path)
        try:
            with _one_process_is_intended():
                dcp.save(sharded_state(model, self.optimizer), checkpoint_id=staged / SHARDS,
                         no_dist=not self.info.enabled)
            barrier(self.info)  # every shard is on disk before rank 0 seals the folder
            if self.info.is_main:
                state = {k: v for k, v in training_state().items() if k != "optimizer"}  # in the shards
                save_checkpoint(path, _Gathered(model.cfg, weights), tokenizer=self.tokenizer,
                                training_state=state, json_files={RUN_CONFIG: self.run_config},
                                staged=staged)
                self._saved()
        except BaseException:
            if self.info.is_main:
                shutil.rmtree(staged, ignore_errors=True)
            raise
        barrier(self.info)
        return path

    def _staging(self, path: Path) -> Path:
        """The staging folder rank 0 makes beside `path`, its name shared with every process."""
        name = [None]
        if self.info.is_main:
            recover_interrupted_save(path)
            name = [str(staging_dir(path))]
        if self.info.enabled:
            dist.broadcast_object_list(name, src=0)
        return Path(name[0])


def run_checkpoints(out_dir: Path, tokenizer: Any, run_config: dict[str, Any], info: DistInfo,
                    sharded_optimizer: torch.optim.Optimizer | None) -> RunCheckpoints:
    """The checkpoints of a run: sharded when given the optimizer of an FSDP run."""
    if sharded_optimizer is None:
        return RunCheckpoints(out_dir, tokenizer, run_config, info)
    return ShardedCheckpoints(out_dir, tokenizer, run_config, info, sharded_optimizer)


def restore_sharded(state: dict[str, Any], path: Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer) -> None:
    """The sharded part of a resume: `path`/sharded when the training state has no optimizer
    (an FSDP run saved it); a DDP run's whole optimizer cannot be cut into FSDP's pieces."""
    from gpt2.training.fsdp import is_sharded

    if "optimizer" not in state:
        load_sharded(path, model, optimizer)
    elif is_sharded(model):
        raise GPT2Error(f"--resume: {path} was saved by a --system.parallel ddp run; resume it with ddp "
                        "(FSDP runs resume from their sharded checkpoints only)")


def load_sharded(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load `path`/sharded into `model` and `optimizer`, re-cut for this world size (every
    process calls it; the shards are checked against the manifest first)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    path = readable_path(path)
    verify_checkpoint(path, [p.relative_to(path).as_posix() for p in sorted((path / SHARDS).iterdir())])
    state = sharded_state(model, optimizer)
    with _one_process_is_intended():
        dcp.load(state, checkpoint_id=path / SHARDS, no_dist=not dist.is_initialized())
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, optimizer, state["optim"])
