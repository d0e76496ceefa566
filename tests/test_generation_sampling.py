"""Sampling knobs and stop conditions of generate()."""

import pytest
import torch

from conftest import tiny_config
from gpt2 import GPT2
from gpt2.generation import generate
from gpt2.generation.options import SamplingOptions
from gpt2.generation.sampling import apply_repetition_penalty, apply_top_k, apply_top_p
from gpt2.tokenizers import CharTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(vocab_size: int = 97) -> GPT2:
    torch.manual_seed(0)
    return GPT2(tiny_config(vocab_size=vocab_size, context_length=64)).eval()


PROMPT = torch.tensor([[4, 8, 15, 16]])


# --- the processors on their own ---------------------------------------------------------

def test_top_k_keeps_exactly_the_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, -2.0, 4.0]])
    kept = apply_top_k(logits, 2)
    assert torch.isfinite(kept).tolist() == [[False, True, False, False, True]]
    assert torch.equal(apply_top_k(logits, 10), logits)


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.05, 0.5, 0.3, 0.15]])
    logits = probs.log()
    # Sorted: 0.5, 0.3, 0.15, 0.05. p=0.7 needs 0.5 + 0.3; p=0.85 is reached exactly by three.
    assert torch.isfinite(apply_top_p(logits, 0.7)).tolist() == [[False, True, True, False]]
    assert torch.isfinite(apply_top_p(logits, 0.9)).tolist() == [[False, True, True, True]]
    assert torch.isfinite(apply_top_p(logits, 1e-9)).tolist() == [[False, True, False, False]]
    assert torch.equal(apply_top_p(logits, 1.0), logits)


def test_repetition_penalty_always_makes_seen_tokens_less_likely():
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0]])
    seen = torch.tensor([[True, True, False, False]])
    out = apply_repetition_penalty(logits, seen, 2.0)
    assert out.tolist() == [[1.0, -4.0, 2.0, -2.0]]


# --- inside generate() -------------------------------------------------------------------

def test_top_k_one_and_tiny_top_p_are_greedy():
    model = make_model()
    greedy = generate(model, PROMPT, 40, SamplingOptions(temperature=0))
    assert torch.equal(generate(model, PROMPT, 40, SamplingOptions(temperature=1.5, top_k=1), seed=1), greedy)
    assert torch.equal(generate(model, PROMPT, 40, SamplingOptions(temperature=1.5, top_p=1e-6),
                       seed=2), greedy)


def test_sampling_is_reproducible_with_a_seed_or_a_generator():
    model = make_model()
    a = generate(model, PROMPT, 40, SamplingOptions(temperature=1.0), seed=123)
    b = generate(model, PROMPT, 40, SamplingOptions(temperature=1.0),
                 seed=123)
    c = generate(model, PROMPT, 40, SamplingOptions(temperature=1.0),
                 generator=torch.Generator().manual_seed(123))
    d = generate(model, PROMPT, 40, SamplingOptions(temperature=1.0), seed=124)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(a, d)


def test_temperature_changes_how_spread_out_samples_are():
    # Random weights give nearly uniform logits; sharpen them so temperature matters.
    model = make_model()
    with torch.no_grad():
        model.tok_emb.weight.mul_(30)
    prompt = PROMPT.repeat(8, 1)
    cold = generate(model, prompt, 30, SamplingOptions(temperature=0.05), seed=0)[:, 4:]
    hot = generate(model, prompt, 30, SamplingOptions(temperature=5.0), seed=0)[:, 4:]
    greedy = generate(model, prompt, 30, SamplingOptions(temperature=0))[:, 4:]
    assert (cold == greedy).float().mean() > 0.9
    assert (hot == greedy).float().mean() < 0.5


def test_top_k_sampling_only_draws_among_the_k_best():
    model = make_model()
    with torch.no_grad():
        logits = model(PROMPT)[0, -1]
    allowed = set(torch.topk(logits, 3).indices.tolist())
    top3 = SamplingOptions(temperature=2.0, top_k=3)
    firsts = {int(generate(model, PROMPT, 1, top3, seed=s)[0, -1]) for s in range(30)}
    assert firsts <= allowed and len(firsts) > 1


def test_repetition_penalty_matches_a_written_out_greedy_loop():
    model = make_model()
    penalty = 3.0
    got = generate(model, PROMPT, 25, SamplingOptions(temperature=0, repetition_penalty=penalty))
    seq = PROMPT[0].tolist()
    for _ in range(25):
        with torch.no_grad():
            logits = model(torch.tensor([seq]))[0, -1]
        for token in set(seq):
            logits[token] = logits[token] / penalty if logits[token] > 0 else logits[token] * penalty
        seq.append(int(logits.argmax()))
    assert got[0].tolist() == seq
    assert got[0].tolist() != generate(model, PROMPT, 25, SamplingOptions(temperature=0))[0].tolist()


def test_repetition_penalty_ignores_padding():
    model = make_model()
    pad = 50  # an id that only occurs as padding
    idx = torch.tensor([[pad, pad, 4, 8], [1, 2, 3, 5]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    batched = generate(model, idx, 15, SamplingOptions(temperature=0, repetition_penalty=2.0),
                       attention_mask=mask)
    alone = generate(model, torch.tensor([[4, 8]]), 15, SamplingOptions(temperature=0,
                                                                        repetition_penalty=2.0))
    assert batched[0, 4:].tolist() == alone[0, 2:].tolist()


def test_stops_at_the_end_of_text_id_and_pads_finished_rows():
    model = make_model()
    free = generate(model, PROMPT, 30, SamplingOptions(temperature=0))[0, 4:].tolist()
    eos = free[6]
    first = free.index(eos)
    out = generate(model, PROMPT, 30, SamplingOptions(temperature=0), eos_id=eos)
    assert out[0, 4:].tolist() == free[: first + 1]
    # In a batch, the row that stopped is padded with eos while the other goes on.
    other = torch.tensor([[60, 61, 62, 63]])
    other_free = generate(model, other, 30, SamplingOptions(temperature=0))[0, 4:].tolist()
    assert eos not in other_free
    both = generate(model, torch.cat((PROMPT, other)), 30, SamplingOptions(temperature=0), eos_id=eos)
    assert both.shape == (2, 34)
    assert both[0, 4:].tolist() == free[: first + 1] + [eos] * (29 - first)
    assert both[1, 4:].tolist() == other_free


def char_model_and_tokenizer():
    tokenizer = CharTokenizer.from_text("abcdefghij klmnop\n")
    torch.manual_seed(0)
    model = GPT2(tiny_config(vocab_size=tokenizer.vocab_size, context_length=64)).eval()
    return model, tokenizer


def test_stop_strings_end_generation_where_the_string_first_completes():
    model, tok = char_model_and_tokenizer()
    prompt = torch.tensor([tok.encode("abc")])
    free = generate(model, prompt, 40, SamplingOptions(temperature=1.0), seed=7)[0, 3:].tolist()
    stop = tok.decode(free[10:12])
    end = next(k for k in range(1, 41) if stop in tok.decode(free[:k]))  # first token completing it
    out = generate(model, prompt, 40, SamplingOptions(temperature=1.0), seed=7, stop_strings=[stop,
                                                                                              "never"],
                                                                                                  tokenizer=tok)
    assert out[0, 3:].tolist() == free[:end]


def test_a_stop_string_in_the_prompt_does_not_stop_generation():
    model, tok = char_model_and_tokenizer()
    prompt = torch.tensor([tok.encode("abc")])
    out = generate(model, prompt, 10, SamplingOptions(temperature=0), stop_strings=["abc"], tokenizer=tok)
    free = generate(model, prompt, 10, SamplingOptions(temperature=0))[0, 3:].tolist()
    end = next((k for k in range(1, 11) if "abc" in tok.decode(free[:k])), 10)
    assert out[0, 3:].tolist() == free[:end]
    assert len(out[0]) > 3


@pytest.mark.parametrize("bad", [[""], [3]])
def test_bad_stop_strings_are_refused(bad):
    model, tok = char_model_and_tokenizer()
    with pytest.raises((ValueError, TypeError)):
        generate(model, torch.tensor([[1]]), 5, stop_strings=bad, tokenizer=tok)
