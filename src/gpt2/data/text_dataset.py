"""The original project's data path: raw text -> sliding windows -> torch DataLoader.

Kept with the original names and arguments so its training loop runs unchanged; for
large corpora use `gpt2 prepare` and the shard loaders instead.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from gpt2.errors import GPT2Error
from gpt2.tokenizers import Tokenizer, get_tokenizer


class GPTDatasetV1(Dataset):
    """Windows of max_length tokens every `stride` tokens; target = input shifted by one."""

    def __init__(self, txt: str, tokenizer: Any, max_length: int, stride: int) -> None:
        if max_length < 1 or stride < 1:
            raise GPT2Error(f"max_length ({max_length}) and stride ({stride}) must be >= 1")
        if isinstance(tokenizer, Tokenizer):
            token_ids = tokenizer.encode(txt)
        else:  # a tiktoken Encoding, as in the original project
            token_ids = tokenizer.encode(txt, allowed_special={"<|endoftext|>"})
        if len(token_ids) <= max_length:
            raise GPT2Error(f"the text has {len(token_ids):,} tokens, fewer than one window of "
                             f"max_length + 1 = {max_length + 1:,}; use a smaller max_length or more text")
        ids = torch.tensor(token_ids, dtype=torch.long)
        starts = range(0, len(token_ids) - max_length, stride)
        self.input_ids = [ids[i:i + max_length] for i in starts]  # each (max_length,)
        self.target_ids = [ids[i + 1:i + max_length + 1] for i in starts]

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.input_ids[idx], self.target_ids[idx]


def create_dataloader_v1(txt: str, tokenizer: Any = None, batch_size: int = 4, max_length: int = 256,
                         stride: int = 128, shuffle: bool = True, drop_last: bool = True,
                         num_workers: int = 0) -> DataLoader:
    """DataLoader of (input, target) (batch_size, max_length) batches; GPT-2 BPE by default."""
    tokenizer = get_tokenizer("gpt2") if tokenizer is None else tokenizer
    dataset = GPTDatasetV1(txt, tokenizer, max_length, stride)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      num_workers=num_workers)
