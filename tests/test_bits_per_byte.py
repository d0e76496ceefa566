"""Bits per byte in `gpt2 eval`: checked against a computation by hand for each tokenizer kind."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gpt2 import GPT2, GPT2Config
from gpt2.checkpoint import save_checkpoint
from gpt2.commands.eval import EvalOptions, evaluate_checkpoint
from gpt2.data.sources import CorpusOptions, resolve_sources
from gpt2.data.train_tokenizer import SentencePieceOptions, train_sentencepiece
from gpt2.runtime.options import DeviceOptions
from gpt2.tokenizers import CharTokenizer, GPT2BPETokenizer

pytestmark = pytest.mark.usefixtures("one_thread")
TEXT = "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.\n"


def _tokenizer(kind: str, tmp_path):
    if kind == "char":
        return CharTokenizer.from_text(TEXT)
    if kind == "gpt2":
        return GPT2BPETokenizer()
    (tmp_path / "corpus.txt").write_text(TEXT * 30)
    return train_sentencepiece(resolve_sources([str(tmp_path / "corpus.txt")]), CorpusOptions(),
                               SentencePieceOptions(vocab_size=300, threads=1))


@pytest.mark.parametrize("kind", ["char", "gpt2", "sentencepiece"])
def test_bits_per_byte_equals_a_hand_computation(kind, tmp_path):
    tok = _tokenizer(kind, tmp_path)
    ids = [*tok.encode(TEXT, allow_special=False), tok.eot_id]  # what gpt2 prepare / eval encode
    T = len(ids) - 1  # one window: every token but the first is predicted
    torch.manual_seed(0)
    model = GPT2(GPT2Config(vocab_size=tok.vocab_size, context_length=T, emb_dim=16, n_heads=2, n_layers=1,
                            drop_rate=0.0)).eval()
    save_checkpoint(tmp_path / "ck", model, tokenizer=tok)
    (tmp_path / "text.txt").write_text(TEXT)
    result = evaluate_checkpoint(EvalOptions(str(tmp_path / "ck"), str(tmp_path / "text.txt"), batch_size=1,
                                             context_length=T), DeviceOptions("cpu", "float32", 1))
    x, y = torch.tensor([ids[:-1]]), torch.tensor([ids[1:]])
    with torch.no_grad():
        nats = F.cross_entropy(model(x)[0], y[0], reduction="sum").item()
    predicted_text = tok.decode(ids[1:-1])  # the targets' text (end-of-text stands for none)
    expected = nats / math.log(2) / len(predicted_text.encode("utf-8"))
    assert result["tokens"] == T and result["bytes"] == len(predicted_text.encode("utf-8"))
    assert result["bits_per_byte"] == pytest.approx(expected, rel=1e-5)
