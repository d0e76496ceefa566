"""`gpt2 verify DIR`: check a checkpoint or a prepared data folder without using it."""

from __future__ import annotations

from pathlib import Path

from gpt2.errors import GPT2Error
from gpt2.files import read_json, readable_dir


def verify(dir: str) -> None:
    """Check a checkpoint or a prepared data folder, file by file, without using it.

    Every file of a checkpoint is checked against its manifest's sizes and sha256, every shard of
    a data folder made by `gpt2 prepare` against meta.json; exit 1 on the first problem, naming
    the file.

    Args:
        dir: A checkpoint directory or a prepared data folder.
    """
    # Imported here, not at the top, so that --help does not import torch (see commands/__init__.py).
    from gpt2.checkpoint import MANIFEST, read_config, readable_path, verify_checkpoint
    from gpt2.data.shards import META_FILE, open_data, read_meta, verify_shards
    from gpt2.tokenizers import find_tokenizer

    path = Path(dir)
    if (readable_dir(path, META_FILE) / META_FILE).is_file():
        _, tokenizer = open_data(path)
        shards = verify_shards(path)
        tokens = {split: info["tokens"] for split, info in read_meta(path)["splits"].items()}
        counts = ", ".join(f"{split} {n:,} tokens" for split, n in tokens.items())
        print(f"{path}: data OK: {shards} shards verified ({counts}), tokenizer {tokenizer.name}")
    elif (readable_path(path) / MANIFEST).is_file():
        verify_checkpoint(path)
        files = read_json(readable_path(path) / MANIFEST, "re-save the checkpoint")["files"]
        cfg = read_config(path)
        tokenizer = find_tokenizer(readable_path(path))
        print(f"{path}: checkpoint OK: {len(files)} files verified, {cfg.n_layers} layers x {cfg.emb_dim}, "
              f"vocab {cfg.vocab_size:,}, tokenizer {tokenizer.name if tokenizer else 'none'}")
    else:
        raise GPT2Error(f"{path}: neither a checkpoint ({MANIFEST}) nor a prepared data folder ({META_FILE})")
