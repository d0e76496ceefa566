"""Settings a run takes from its data: the length cap in passes and the sample prompt.

A config written for one corpus is often run on another. Two settings go wrong silently
when that happens: `train.max_steps` may repeat a small corpus hundreds of times, and
`eval.prompt` may hold characters the new tokenizer has never seen. `fit_to_data` resolves
both once, before the run starts (and before a resume compares its settings, which then
resolve to the same values); a lowered max_steps is printed as a note, and so are the warmup
and the evaluation interval lowered with it (a short run still warms up in a tenth of its
steps and still has FITTED_EVALS validation points, so the best checkpoint can be chosen).
"""

from __future__ import annotations

import dataclasses
import math
from itertools import groupby
from pathlib import Path

from gpt2.data.meta import ShardsMeta
from gpt2.data.shards import open_shard, split_shards
from gpt2.tokenizers import Tokenizer
from gpt2.training.config import RunConfig

PROMPT_MAX_TOKENS = 12  # a short line start: enough to show the model continues it
PROMPT_SCAN_TOKENS = 4096  # how far into the validation split to look for a line start
FITTED_EVALS = 8  # evaluations in a run whose length was lowered to fit its data


def capped_steps(max_steps: int, max_passes: float, train_tokens: int, tokens_per_step: int) -> int:
    """max_steps, lowered so the run makes at most `max_passes` passes over `train_tokens`
    (at least one step; max_passes 0 = no cap)."""
    if max_passes <= 0:
        return max_steps
    return max(1, min(max_steps, math.floor(max_passes * train_tokens / tokens_per_step)))


def prompt_from_data(data_dir: Path, tokenizer: Tokenizer) -> str:
    """The start of the first full line of the validation split (at most PROMPT_MAX_TOKENS
    tokens): text in the data's own script, which its tokenizer can always encode. Lines
    end at newlines and at end-of-text; "" (sample from end-of-text) if there is no text."""
    shards = split_shards(data_dir, "val")
    ids = open_shard(shards[0])[:PROMPT_SCAN_TOKENS].tolist() if shards else []
    runs = groupby(ids, lambda i: i == tokenizer.eot_id)  # documents, and the end-of-text between
    documents = "\n".join(tokenizer.decode(list(doc)) for is_eot, doc in runs if not is_eot)
    lines = [line.strip() for line in documents.split("\n")]
    line = next((line for line in lines[1:-1] if line), documents.strip())  # the ends may be cut mid-line
    prompt = tokenizer.decode(tokenizer.encode(line)[:PROMPT_MAX_TOKENS])
    return prompt.rstrip("\ufffd")  # a multi-byte character cut by the token limit


def fit_to_data(cfg: RunConfig, data_dir: Path, tokenizer: Tokenizer,
                window: int) -> tuple[RunConfig, list[str]]:
    """`cfg` with max_steps capped by max_passes and a missing eval.prompt taken from the data;
    and a note for a lowered max_steps. window: tokens per training sequence."""
    t, notes = cfg.train, []
    train_tokens = ShardsMeta.read(data_dir).splits["train"].tokens
    steps = capped_steps(t.max_steps, t.max_passes, train_tokens, t.batch_size * window)
    if steps != t.max_steps:
        notes.append(f"--train.max_steps lowered from {t.max_steps} to {steps}: --train.max_passes "
                     f"{t.max_passes:g} over {train_tokens:,} train tokens")
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(t, max_steps=steps))
        warmup = min(cfg.optim.warmup_steps, steps // 10)  # the schedule must still reach its peak and decay
        if warmup != cfg.optim.warmup_steps:
            notes.append(f"--optim.warmup_steps lowered from {cfg.optim.warmup_steps} to {warmup}, "
                         "a tenth of the steps")
            cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, warmup_steps=warmup))
        interval = min(cfg.eval.interval, max(1, steps // FITTED_EVALS))  # 0 (only at the end) stays 0
        if interval != cfg.eval.interval:
            notes.append(f"--eval.interval lowered from {cfg.eval.interval} to {interval}: "
                         f"{FITTED_EVALS} evaluations in {steps} steps")
            cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, interval=interval))
    if cfg.eval.prompt is None:  # the run header shows it
        prompt = prompt_from_data(data_dir, tokenizer)
        cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, prompt=prompt))
    return cfg, notes
