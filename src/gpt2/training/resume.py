"""Continuing a run: what `--resume` compares, keeps and refuses.

A resumed run must continue exactly as the saved one would have, so the settings that
shape the result (model, optimizer, schedule, batch, seed, precision) must be the ones it
was saved with; `--allow_changes true` accepts differences knowingly.

train_config.json keeps two things apart: the settings as the user gave them (`auto`
included) and, under `runtime`, what the run resolved them to (precision, attention kernel,
threads). A resume reuses those choices for whatever is still `auto` (no new probe on a
busier machine can change the numbers halfway), and compares like with like: a setting
that is `auto` stands for the saved run's choice, so the same command resumes any number
of times.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from gpt2.errors import GPT2Error
from gpt2.files import read_json
from gpt2.runtime.autotune import Choice
from gpt2.training.checkpointing import RUN_CONFIG
from gpt2.training.config import RunConfig

# Settings a resume may change without changing what the run computes.
HARMLESS = {"data.dir", "train.out_dir", "train.max_seconds", "train.stop_after_steps", "train.log_interval",
            "train.max_passes",  # what it does shows in train.max_steps, which is compared
            "system.progress", "system.device", "system.compile", "system.threads"}
HARMLESS_SECTIONS = {"eval", "checkpoint"}
# Settings `auto` decides: the value that means auto, and the key of its choice under `runtime`.
AUTO_SETTINGS = {"system.dtype": ("auto", "dtype"), "system.threads": (0, "threads"),
                 "model.attention": (None, "attention")}
LEGACY_DTYPES = {"bfloat16": "bf16", "float16": "fp16"}  # runtime records before 2026-12 used torch's names
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


def _effective(flat: dict[str, Any], runtime: dict[str, Any]) -> dict[str, Any]:
    """`flat` with each setting left to `auto` replaced by what the saved run chose for it: a
    resume reuses that choice, so both mean the same run."""
    out = dict(flat)
    for key, (auto, field) in AUTO_SETTINGS.items():
        if key in out and out[key] == auto and runtime.get(field) is not None:
            chosen = runtime[field]
            out[key] = LEGACY_DTYPES.get(chosen, chosen) if field == "dtype" else chosen
    return out


def check_changes(cfg: RunConfig, saved: dict[str, Any], allow: bool) -> list[str]:
    """The settings that differ from the saved run, as '--key new (saved old)'. Differences
    that change the result are refused unless `allow`; the rest are returned as notes."""
    now, before = _flat(cfg.to_dict()), _flat(saved)
    runtime = saved.get("runtime") or {}
    same_now, same_before = _effective(now, runtime), _effective(before, runtime)
    changed = [k for k in sorted(now) if k in before and same_now[k] != same_before[k]]
    breaking = [k for k in changed if k not in HARMLESS and k.split(".")[0] not in HARMLESS_SECTIONS]
    described = {k: f"--{k} {now[k]} (saved {before[k]})" for k in changed}
    if breaking and not allow:
        raise GPT2Error("--resume: these settings differ from the saved run and would change its result: "
                        f"{'; '.join(described[k] for k in breaking)}; put them back, or pass "
                        "--allow_changes true")
    return [described[k] for k in changed]


def saved_choices(saved: dict[str, Any]) -> Choice | None:
    """What the saved run resolved `auto` to (None for a run saved without a `runtime` record)."""
    runtime = saved.get("runtime") or {}
    if runtime.get("dtype") is None:
        return None
    dtype = LEGACY_DTYPES.get(runtime["dtype"], runtime["dtype"])
    attention = runtime.get("attention")
    threads = int(runtime["threads"]) if runtime.get("threads") else None
    why = {"dtype": f"{dtype} as the saved run chose"}
    if attention is not None:
        why["attention"] = f"{attention} attention as the saved run chose"
    if threads is not None:
        why["threads"] = f"{threads} thread{'' if threads == 1 else 's'} as the saved run chose"
    return Choice(dtype, attention, threads, why)


def keep_saved_seed(cfg: RunConfig, saved: dict[str, Any]) -> RunConfig:
    """`cfg` with the saved run's seed: the data stream continues as it was."""
    train = cfg.train
    saved_seed = (saved.get("train") or {}).get("seed")
    if saved_seed is None or saved_seed == train.seed:
        return cfg
    print(f"gpt2: note: the run continues with its saved seed {saved_seed} (--train.seed "
          f"{train.seed} ignored)", file=sys.stderr)
    return dataclasses.replace(cfg, train=dataclasses.replace(train, seed=saved_seed))
