"""`ShardView`: the tokens of one shard, read on demand, that fail in one line if the file
changes under a running job.

A memmap would be the obvious reader, but when the file is truncated while a job runs (a
re-run of `gpt2 prepare` elsewhere, a full disk, a careless `cp`), touching a page past the
new end kills the process with SIGBUS ("Bus error"), which Python cannot catch. So a view
keeps the file open and reads each window with one `pread`: a short read is a clear error,
and a file replaced by rename keeps being read as it was when the job opened it. A window
is a few KiB, so the cost is one system call per window.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gpt2.errors import GPT2Error


class ShardView:
    """(n_tokens,) tokens of a shard file: `len(view)`, and `view[a:b]` -> a numpy array."""

    def __init__(self, path: Path, dtype: np.dtype, n_tokens: int, offset: int) -> None:
        self.path, self.dtype, self.n_tokens, self.offset = Path(path), np.dtype(dtype), n_tokens, offset
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.n_tokens

    def __getitem__(self, index: slice | int) -> np.ndarray | np.integer:
        if isinstance(index, int):  # one token (tests, a first look)
            position = range(self.n_tokens)[index]
            return self[position:position + 1][0]
        start, stop, step = index.indices(self.n_tokens)
        if step != 1:
            raise TypeError("a shard view is read in contiguous slices")
        n = max(0, stop - start)
        size = self.dtype.itemsize
        data = os.pread(self._fd, n * size, self.offset + start * size)
        if len(data) != n * size:
            raise GPT2Error(f"{self.path}: the shard became shorter while this job was reading it (it was "
                            "truncated or overwritten in place); restore it or run `gpt2 prepare` again, "
                            "then continue with --resume true")
        return np.frombuffer(data, dtype=self.dtype)

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        """All the tokens (np.asarray(view), np.concatenate([...]))."""
        return self[:] if dtype is None else self[:].astype(dtype)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()
