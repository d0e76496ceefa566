"""What a training run will do, decided once before anything is built: a frozen `RunPlan`.

A run starts one of three ways, as nanoGPT's `init_from` says in one chain: from scratch
(fresh weights), from a checkpoint or Hugging Face directory (`--model.init DIR`), or by
resuming its own `<out_dir>/latest`. `plan_run` decides which, reads the data's facts,
fits the settings to the data, compares a resume with its saved run, resolves `auto`
through gpt2.runtime, and refuses with one line every inconsistency it can see, so a run
never fails an hour in for a reason that was visible at step 0. `launch.build_trainer`
then builds exactly what the plan says.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gpt2.checkpoint import read_config, recover_interrupted_save
from gpt2.config import GPT2Config
from gpt2.data.shards import open_data, verify_shards
from gpt2.errors import GPT2Error
from gpt2.limits import check_fits, parameter_count, training_bytes
from gpt2.runtime.resolve import Runtime, resolve_runtime
from gpt2.tokenizers import Tokenizer, find_tokenizer, same_ids
from gpt2.training.checkpointing import LATEST
from gpt2.training.config import MODEL_FIELDS, RunConfig
from gpt2.training.distributed import launched_by_torchrun
from gpt2.training.fit_data import fit_to_data
from gpt2.training.resume import check_changes, keep_saved_seed, saved_choices, saved_config
from gpt2.training.run_folder import check_out_dir, lock_run_folder

Start = Literal["scratch", "init", "resume"]


@dataclass(frozen=True)
class RunPlan:
    """Everything decided about a run before its first tensor: built once, never changed."""

    cfg: RunConfig  # the settings as given (`auto` kept), fitted to the data; a resume's saved seed
    start: Start  # fresh weights, weights from `source`, or this run's own latest checkpoint
    source: str  # "scratch", the directory the weights come from, or <out_dir>/latest
    data_dir: Path
    tokenizer: Tokenizer
    window: int  # tokens per training sequence
    model_cfg: GPT2Config  # the model to build, with the attention kernel the runtime chose
    runtime: Runtime  # device, precision, threads: `auto` resolved
    notes: tuple[str, ...]  # settings fitted to the data (max_steps lowered, ...)
    overwrite: bool  # a new run may set aside the run in out_dir


def plan_run(cfg: RunConfig, resume: bool = False, allow_changes: bool = False,
             overwrite: bool = False) -> RunPlan:
    """Decide the run `cfg` describes (see the module docstring); raises GPT2Error naming the
    setting and what to do for anything that cannot work."""
    data_dir, tokenizer = _open_data(cfg.data.dir)
    checkpoint = Path(cfg.train.out_dir) / LATEST
    start: Start = "resume" if resume else ("scratch" if cfg.model.init == "scratch" else "init")
    source = str(checkpoint) if resume else cfg.model.init
    if resume:
        out = Path(cfg.train.out_dir)  # locked first: another process may be writing it
        if int(os.environ.get("RANK", 0)) == 0 and out.is_dir():
            lock_run_folder(out).release()  # in use: say so now (it is taken for good when built)
        recover_interrupted_save(checkpoint)  # a save that died between its two renames
        if not checkpoint.is_dir():
            raise GPT2Error(f"--resume: no checkpoint at {checkpoint} (a run stopped before its first save "
                            "leaves none); start the run again without --resume: its logs are replaced")
    else:
        check_out_dir(Path(cfg.train.out_dir), overwrite)  # before any work
    window = cfg.train.context_length or model_config(cfg, source, tokenizer).context_length
    cfg, notes = fit_to_data(cfg, data_dir, tokenizer, window)  # before a resume compares settings
    kept = None  # what `auto` chose when the run started, reused by a resume
    if resume:
        saved = saved_config(checkpoint)
        changed = check_changes(cfg, saved, allow_changes)
        if changed and int(os.environ.get("RANK", 0)) == 0:
            print(f"gpt2: note: changed for this resume: {'; '.join(changed)}", file=sys.stderr)
        cfg = keep_saved_seed(cfg, saved)
        kept = saved_choices(saved)
    model_cfg = model_config(cfg, source, tokenizer)
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if launched_by_torchrun() else 1
    micro = cfg.train.batch_size // (world_size * cfg.train.grad_accum_steps)
    check_memory(cfg, model_cfg, max(1, micro), window, activations=False)  # before the probe builds it
    runtime = resolve_runtime(cfg.system, model_cfg, "train", max(1, micro), window, probe=world_size == 1,
                              verbose=int(os.environ.get("RANK", 0)) == 0, attention=cfg.model.attention,
                              kept=kept)
    if runtime.attention is not None:  # asked for, or auto picked the faster kernel
        model_cfg = dataclasses.replace(model_cfg, attention=runtime.attention)
    check_settings(cfg, world_size, model_cfg, tokenizer, source, window)
    if runtime.device.type == "cpu":  # (a GPU's own memory is its allocator's to refuse)
        check_memory(cfg, model_cfg, max(1, micro), window, activations=True)
    return RunPlan(cfg, start, source, data_dir, tokenizer, window, model_cfg, runtime, tuple(notes),
                   overwrite)


def _open_data(data_dir: str) -> tuple[Path, Tokenizer]:
    """The data folder and its tokenizer, every shard verified against its sha256."""
    try:
        opened = open_data(data_dir)
        verify_shards(data_dir)
        return opened
    except GPT2Error as err:
        raise GPT2Error(f"--data.dir {err}") from None


def model_config(cfg: RunConfig, source: str, tokenizer: Tokenizer) -> GPT2Config:
    """The shape of the model to train: from a checkpoint / HF directory, or preset + overrides.

    A loaded model takes --model.drop_rate and --model.attention (neither changes a weight);
    any other --model.* option must agree with its config (shorter training windows are
    --train.context_length: the model's position table is not cropped)."""
    m = cfg.model
    overrides = {f: getattr(m, f) for f in MODEL_FIELDS if getattr(m, f) is not None}
    if source == "scratch":
        overrides.setdefault("vocab_size", tokenizer.vocab_size)
        return GPT2Config.from_preset(m.preset, **overrides)
    if not Path(source).is_dir():
        raise GPT2Error(f"--model.init {source}: no such directory; use 'scratch' or a checkpoint")
    base = read_config(source)
    runtime = {f: overrides.pop(f) for f in ("drop_rate", "attention") if f in overrides}
    clash = [f for f, v in overrides.items() if v != getattr(base, f)]
    if clash:
        given = ", ".join(f"--model.{f} {overrides[f]}" for f in clash)
        has = ", ".join(f"{f} {getattr(base, f)}" for f in clash)
        raise GPT2Error(f"{given} cannot change the model loaded from {source} (it has {has}); drop the "
                         "option (shorter training windows: --train.context_length)")
    return dataclasses.replace(base, **runtime)


def check_settings(cfg: RunConfig, world_size: int, model_cfg: GPT2Config, tokenizer: Tokenizer,
                   source: str, window: int) -> None:
    """Refuse settings that cannot work together, before any weights are built. (Each section
    has already checked its own values when it was built.)"""
    t = cfg.train
    if window > model_cfg.context_length:
        fix = ("leave it unset (it defaults to the loaded model's)" if source != "scratch"
               else "give the model more positions (--model.context_length)")
        raise GPT2Error(f"--train.context_length {window} is longer than the model's context_length "
                        f"{model_cfg.context_length}; lower it or {fix}")
    if tokenizer.vocab_size > model_cfg.vocab_size:
        raise GPT2Error(f"the data's tokenizer has {tokenizer.vocab_size} ids but the model's vocabulary has "
                        f"{model_cfg.vocab_size}; use data prepared with the model's tokenizer")
    theirs = find_tokenizer(source) if source != "scratch" else None
    if theirs is not None and not same_ids(theirs.identity(), tokenizer.identity()):
        raise GPT2Error(f"{source}: its tokenizer differs from the one the shards in --data.dir "
                        f"{cfg.data.dir} were made with; prepare the data with `--tokenizer {source}`")
    per_step = world_size * t.grad_accum_steps
    if t.batch_size % per_step:
        raise GPT2Error(f"--train.batch_size {t.batch_size} is not divisible by processes "
                        f"({world_size}) x --train.grad_accum_steps ({t.grad_accum_steps}); "
                        f"choose a multiple of {per_step}")
    if cfg.eval.sample_tokens > 0:
        try:
            ids = tokenizer.encode(cfg.eval.prompt)
        except ValueError as err:  # e.g. a character the char tokenizer has never seen
            raise GPT2Error(f"--eval.prompt {cfg.eval.prompt!r} cannot be encoded: {err}") from None
        if len(ids) > model_cfg.context_length:
            raise GPT2Error(f"--eval.prompt is {len(ids)} tokens, longer than the model's context "
                            f"{model_cfg.context_length}; shorten it")


def print_notes(plan: RunPlan) -> None:
    """The plan's notes on stderr, one line each."""
    for note in plan.notes:
        print(f"gpt2: note: {note}", file=sys.stderr)


def check_memory(cfg: RunConfig, m: GPT2Config, micro: int, window: int, activations: bool) -> None:
    """Refuse, with the figures, a model (weights, gradients, optimizer moments) or a CPU batch
    that cannot fit in the memory available, before anything is allocated (gpt2.limits)."""
    params = parameter_count(m.vocab_size, m.context_length, m.emb_dim, m.n_layers)
    check_fits(f"training a model of {params:,} parameters (weights, gradients, optimizer moments)",
               16 * params, "use a smaller model")
    if activations:
        check_fits(f"training with --train.batch_size {cfg.train.batch_size:,} ({micro:,} sequences of "
                   f"{window:,} tokens at a time) on {params:,} parameters",
                   training_bytes(params, micro, window, m.emb_dim, m.n_heads, m.n_layers, m.vocab_size),
                   "lower --train.batch_size or raise --train.grad_accum_steps, or use a smaller model")
