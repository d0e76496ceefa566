"""Continuing a run: what `--resume` compares, pins and refuses.

A resumed run must continue exactly as the saved one would have, so the settings that
shape the result (model, optimizer, schedule, batch, seed, precision) must be the ones it
was saved with; `--allow_changes true` accepts differences knowingly. Whatever `auto`
chose when the run started (precision, attention kernel, threads) is reused, so a new
probe on a busier machine cannot change the numbers halfway.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from gpt2.errors import GPT2Error
from gpt2.files import read_json
from gpt2.training.checkpointing import RUN_CONFIG
from gpt2.training.config import RunConfig

# Settings a resume may change without changing what the run computes.
HARMLESS = {"data.dir", "train.out_dir", "train.max_seconds", "train.stop_after_steps", "train.log_interval",
            "train.max_passes",  # what it does shows in train.max_steps, which is compared
            "system.progress", "system.device", "system.compile", "system.threads"}
HARMLESS_SECTIONS = {"eval", "checkpoint"}
_DTYPE_NAMES = {"float32": "float32", "bfloat16": "bf16", "float16": "fp16"}
# Settings added after runs were saved, with the behaviour of the versions that saved them
# without: such a run trained with AdamW and had no cap on passes.
ADDED_LATER = {"optim": {"name": "adamw"}, "train": {"max_passes": 0.0}}


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    return {f"{section}.{key}": value for section, fields in config.items() if isinstance(fields, dict)
            for key, value in fields.items() if section != "runtime"}


def saved_config(checkpoint: Path) -> dict[str, Any]:
    """The train_config.json a checkpoint was saved with ({} for one saved without), settings
    it predates filled in with what they were then (ADDED_LATER)."""
    path = checkpoint / RUN_CONFIG
    if not path.exists():
        return {}
    saved = read_json(path, "the checkpoint is damaged; resume from another")
    for section, values in ADDED_LATER.items():
        if isinstance(saved.get(section), dict):
            saved[section] = {**values, **saved[section]}
    return saved


def check_changes(cfg: RunConfig, saved: dict[str, Any], allow: bool) -> list[str]:
    """The settings that differ from the saved run, as '--key new (saved old)'. Differences
    that change the result are refused unless `allow`; the rest are returned as notes."""
    now, before = _flat(cfg.to_dict()), _flat(saved)
    changed = [k for k in sorted(now) if k in before and now[k] != before[k]]
    breaking = [k for k in changed if k not in HARMLESS and k.split(".")[0] not in HARMLESS_SECTIONS]
    described = {k: f"--{k} {now[k]} (saved {before[k]})" for k in changed}
    if breaking and not allow:
        raise GPT2Error("--resume: these settings differ from the saved run and would change its result: "
                        f"{'; '.join(described[k] for k in breaking)}; put them back, or pass "
                        "--allow_changes true")
    return [described[k] for k in changed]


def pin_saved_choices(cfg: RunConfig, saved: dict[str, Any]) -> RunConfig:
    """`cfg` with what `auto` chose for the saved run (and its data seed) made explicit."""
    runtime = saved.get("runtime") or {}
    system, model, train = cfg.system, cfg.model, cfg.train
    if system.dtype == "auto" and runtime.get("dtype") in _DTYPE_NAMES:
        system = dataclasses.replace(system, dtype=_DTYPE_NAMES[runtime["dtype"]])
    if system.threads == 0 and runtime.get("threads"):
        system = dataclasses.replace(system, threads=int(runtime["threads"]))
    if model.attention is None and runtime.get("attention"):
        model = dataclasses.replace(model, attention=runtime["attention"])
    saved_seed = (saved.get("train") or {}).get("seed")
    if saved_seed is not None and saved_seed != train.seed:  # the data stream keeps the saved seed
        print(f"gpt2: note: the run continues with its saved seed {saved_seed} (--train.seed "
              f"{train.seed} ignored)", file=sys.stderr)
        train = dataclasses.replace(train, seed=saved_seed)
    return dataclasses.replace(cfg, system=system, model=model, train=train)
