"""`gpt2 verify DIR`: check a checkpoint or a prepared data folder without using it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpt2.errors import GPT2Error
from gpt2.files import read_json, readable_dir


def verify(dir: str) -> None:
    """Check a checkpoint or a prepared data folder, file by file, without using it.

    Every file of a checkpoint is checked against its manifest's sizes and sha256, and the
    checkpoint is loaded (weights against config.json, tokenizer, training state); every shard of
    a data folder made by `gpt2 prepare` against meta.json; exit 1 on the first problem, naming
    the file.

    Args:
        dir: A checkpoint directory or a prepared data folder.
    """
    # Imported here, not at the top, so that --help does not import torch (see commands/__init__.py).
    from gpt2.checkpoint import MANIFEST, read_config, readable_path, verify_checkpoint
    from gpt2.data.meta import META_FILE, ShardsMeta
    from gpt2.data.shards import open_data, verify_shards
    from gpt2.tokenizers import find_tokenizer

    path = Path(dir)
    if (readable_dir(path, META_FILE) / META_FILE).is_file():
        _, tokenizer = open_data(path)
        shards = verify_shards(path)
        splits = ShardsMeta.read(path).splits
        counts = ", ".join(f"{split} {info.tokens:,} tokens" for split, info in splits.items())
        print(f"{path}: data OK: {shards} shards verified ({counts}), tokenizer {tokenizer.name}")
    elif (readable_path(path) / MANIFEST).is_file():
        verify_checkpoint(path)  # every file against the manifest's size and sha256
        files = read_json(readable_path(path) / MANIFEST, "re-save the checkpoint")["files"]
        cfg = read_config(path)
        tokenizer = find_tokenizer(readable_path(path))
        _loads(path, tokenizer, cfg.vocab_size)
        print(f"{path}: checkpoint OK: {len(files)} files verified, {cfg.n_layers} layers x {cfg.emb_dim}, "
              f"vocab {cfg.vocab_size:,}, tokenizer {tokenizer.name if tokenizer else 'none'}")
    else:
        raise GPT2Error(f"{path}: neither a checkpoint ({MANIFEST}) nor a prepared data folder ({META_FILE})")


def _loads(path: Path, tokenizer: Any, vocab_size: int) -> None:
    """"OK" means this loads: the weights are built from the files (memory checked first; every
    tensor's shape and dtype against config.json, finite values), the tokenizer's ids fit the
    model, and a training state has every part a resume reads."""
    from gpt2.checkpoint import TRAINING_STATE, load_training_state, readable_path
    from gpt2.gpt_model import GPT2
    from gpt2.training.checkpointing import check_training_state

    GPT2.from_pretrained(path)
    if tokenizer is not None and tokenizer.vocab_size > vocab_size:
        raise GPT2Error(f"{path}: its tokenizer has {tokenizer.vocab_size:,} ids but the model only "
                        f"{vocab_size:,}; the checkpoint is damaged or was assembled by hand")
    state = load_training_state(path)
    if state is not None:
        check_training_state(state, readable_path(path) / TRAINING_STATE)
