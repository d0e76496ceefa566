"""Shard format and loaders: exact resume, rank striding, sequential coverage, v1 DataLoader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpt2.data.loaders import RandomWindowLoader, SequentialLoader, create_dataloader_v1
from gpt2.data.meta import ShardsMeta, SplitInfo
from gpt2.data.shards import HEADER_SIZE, dtype_for_vocab, open_shard, read_header, write_shard
from gpt2.tokenizers import CharTokenizer


def make_data_dir(path, splits: dict[str, list[np.ndarray]], vocab_size: int = 1000):
    """A shard folder written directly with the shard API (independent of `gpt2 prepare`)."""
    path.mkdir(parents=True, exist_ok=True)
    infos = {}
    for split, arrays in splits.items():
        shards = tuple(write_shard(path / f"{split}_{i:06d}.bin", a, dtype_for_vocab(vocab_size))
                       for i, a in enumerate(arrays))
        infos[split] = SplitInfo(shards, sum(s.tokens for s in shards))
    ShardsMeta(infos, split={"val_ratio": 0.1}).write(path)
    return path


@pytest.fixture
def data_dir(tmp_path):
    rng = np.random.default_rng(0)
    train = [rng.integers(0, 1000, n) for n in (500, 37, 1200)]  # the 37-token shard is too short
    val = [np.arange(0, 203) % 1000, np.arange(1000, 1100) % 1000]
    return make_data_dir(tmp_path / "data", {"train": train, "val": val})


def test_shard_round_trip_and_dtype(tmp_path):
    tokens = np.array([0, 1, 65535, 7], dtype=np.int64)
    info = write_shard(tmp_path / "a.bin", tokens, dtype_for_vocab(65536))
    assert info.tokens == 4
    assert (tmp_path / "a.bin").stat().st_size == HEADER_SIZE + 4 * 2
    np.testing.assert_array_equal(open_shard(tmp_path / "a.bin"), tokens)
    assert dtype_for_vocab(65537) == np.dtype("<u4")
    write_shard(tmp_path / "b.bin", np.array([70000]), dtype_for_vocab(70001))
    assert open_shard(tmp_path / "b.bin")[0] == 70000
    with pytest.raises(ValueError, match="too large for uint32 shards"):
        dtype_for_vocab(2**32 + 1)
    with pytest.raises(ValueError, match="65,537 ids is too large for uint16 shards; use --token_dtype"):
        dtype_for_vocab(65537, "uint16")


def test_corrupt_shards_are_refused(tmp_path):
    write_shard(tmp_path / "a.bin", np.arange(10), np.uint16)
    data = (tmp_path / "a.bin").read_bytes()
    (tmp_path / "t.bin").write_bytes(data[:-2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_header(tmp_path / "t.bin")
    (tmp_path / "m.bin").write_bytes(b"X" + data[1:])
    with pytest.raises(ValueError, match="bad magic"):
        read_header(tmp_path / "m.bin")


def test_random_windows_are_shifted_windows_of_the_shards(data_dir):
    loader = RandomWindowLoader(data_dir, batch_size=16, context_length=64, seed=1)
    shards = [open_shard(data_dir / f"train_{i:06d}.bin") for i in range(3)]
    x, y = loader.next_batch()
    assert x.shape == y.shape == (16, 64) and x.dtype == y.dtype == torch.int64
    torch.testing.assert_close(x[:, 1:], y[:, :-1])
    for row, (s, o) in zip(x, loader.window_starts(0), strict=True):
        shard = [a for a in shards if len(a)][s]
        assert o + 65 <= len(shard)
        np.testing.assert_array_equal(row.numpy(), shard[o:o + 64])


def test_random_windows_resume_exactly(data_dir):
    a = RandomWindowLoader(data_dir, batch_size=4, context_length=32, seed=7)
    for _ in range(5):
        a.next_batch()
    state = a.state_dict()
    expected = [a.next_batch() for _ in range(3)]
    b = RandomWindowLoader(data_dir, batch_size=4, context_length=32, seed=0)
    b.load_state_dict(state)
    for (xe, ye), (xb, yb) in zip(expected, (b.next_batch() for _ in range(3)), strict=True):
        torch.testing.assert_close(xb, xe)
        torch.testing.assert_close(yb, ye)
    c = RandomWindowLoader(data_dir, batch_size=8, context_length=32)
    with pytest.raises(ValueError, match="global_batch_size"):
        c.load_state_dict(state)


def test_resume_refuses_other_data_with_the_same_token_count(data_dir, tmp_path):
    a = RandomWindowLoader(data_dir, batch_size=4, context_length=32, seed=7)
    a.next_batch()
    rng = np.random.default_rng(1)  # the same shard sizes, other ids
    other = make_data_dir(tmp_path / "other", {"train": [rng.integers(0, 1000, n) for n in (500, 37, 1200)],
                                               "val": [np.arange(0, 203) % 1000]})
    b = RandomWindowLoader(other, batch_size=4, context_length=32, seed=7)
    assert b.n_tokens == a.n_tokens
    with pytest.raises(ValueError, match="not the ones the run was trained on"):
        b.load_state_dict(a.state_dict())


def test_two_ranks_of_b_equal_one_rank_of_2b(data_dir):
    whole = RandomWindowLoader(data_dir, batch_size=6, context_length=16, seed=3)
    ranks = [RandomWindowLoader(data_dir, batch_size=3, context_length=16, seed=3, rank=r, world_size=2)
             for r in range(2)]
    for _ in range(4):
        x, y = whole.next_batch()
        parts = [r.next_batch() for r in ranks]
        torch.testing.assert_close(torch.cat([p[0] for p in parts]), x)
        torch.testing.assert_close(torch.cat([p[1] for p in parts]), y)


def test_different_seeds_give_different_streams(data_dir):
    x0, _ = RandomWindowLoader(data_dir, batch_size=8, context_length=16, seed=0).next_batch()
    x1, _ = RandomWindowLoader(data_dir, batch_size=8, context_length=16, seed=1).next_batch()
    assert not torch.equal(x0, x1)


def test_sequential_covers_every_window_once(data_dir):
    loader = SequentialLoader(data_dir, "val", batch_size=3, context_length=10)
    batches = list(loader)
    assert len(batches) == len(loader) == 10  # (202 // 10) + (99 // 10) = 29 windows, batches of 3
    targets = torch.cat([y for _, y in batches])
    assert targets.shape == (29, 10)
    first = np.arange(1, 201).reshape(20, 10)  # shard 0 targets: tokens 1..200
    np.testing.assert_array_equal(targets[:20].numpy(), first)
    split = [SequentialLoader(data_dir, "val", batch_size=3, context_length=10, rank=r, world_size=2)
             for r in range(2)]
    both = sorted(tuple(row) for ld in split for _, y in ld for row in y.tolist())
    assert both == sorted(tuple(row) for row in targets.tolist())
    assert len(SequentialLoader(data_dir, "val", batch_size=3, context_length=10, max_batches=2)) == 2


def test_too_short_split_is_a_clear_error(data_dir):
    with pytest.raises(ValueError, match=r"fewer than one window of context_length \+ 1 = 1,201"):
        RandomWindowLoader(data_dir, context_length=1200)
    with pytest.raises(ValueError, match="fewer than one window"):
        SequentialLoader(data_dir, "val", context_length=500)
    with pytest.raises(ValueError, match="rank 2"):
        RandomWindowLoader(data_dir, rank=2, world_size=2)


def test_missing_meta_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `gpt2 prepare` first"):
        RandomWindowLoader(tmp_path)


def test_create_dataloader_v1_sliding_windows():
    text = "abcdefghij" * 5
    tok = CharTokenizer.from_text(text)
    loader = create_dataloader_v1(text, tok, batch_size=2, max_length=8, stride=4, shuffle=False)
    x, y = next(iter(loader))
    assert x.shape == y.shape == (2, 8)
    assert tok.decode(x[0].tolist()) == "abcdefgh" and tok.decode(y[0].tolist()) == "bcdefghi"
    assert tok.decode(x[1].tolist()) == "efghijab"
    assert len(loader.dataset) == len(range(0, 50 - 8, 4))
    with pytest.raises(ValueError, match="fewer than one window"):
        create_dataloader_v1("abc", tok, max_length=8)


def test_create_dataloader_v1_default_gpt2_and_tiktoken():
    text = "Hello world. " * 40
    x, y = next(iter(create_dataloader_v1(text, batch_size=2, max_length=4, stride=4, shuffle=False)))
    assert x[0].tolist() == [15496, 995, 13, 18435]
    torch.testing.assert_close(x[:, 1:], y[:, :-1])
    from gpt2.tokenizers import GPT2BPETokenizer

    enc = GPT2BPETokenizer().encoding  # a tiktoken Encoding, as the original project passed
    x2, _ = next(iter(create_dataloader_v1(text, enc, batch_size=2, max_length=4, stride=4, shuffle=False)))
    torch.testing.assert_close(x2, x)


def test_sequential_skips_shards_shorter_than_a_window(data_dir):
    shards = [open_shard(data_dir / f"train_{i:06d}.bin") for i in range(3)]  # 500, 37, 1200 tokens
    expected = [shard[k * 64:k * 64 + 65] for shard in shards for k in range((len(shard) - 1) // 64)]
    loader = SequentialLoader(data_dir, "train", batch_size=4, context_length=64)
    assert loader.n_windows == len(expected) == 7 + 0 + 18
    got = [row for x, y in loader for row in torch.cat([x, y[:, -1:]], dim=1).numpy()]
    np.testing.assert_array_equal(np.stack(got), np.stack(expected))
