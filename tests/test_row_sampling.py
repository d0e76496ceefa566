"""Per-row sampling in one pass over the batch: each row's filters equal the reference
processors applied to that row alone, and its draws follow softmax(logits / T)."""

from __future__ import annotations

import torch

from gpt2.generation import SamplingOptions
from gpt2.generation.row_sampling import (
    RowSettings,
    filter_rows,
    gumbel_noise,
    penalise_rows,
    row_keys,
    sample_rows,
)
from gpt2.generation.sampling import apply_repetition_penalty, apply_top_k, apply_top_p

CPU = torch.device("cpu")
ROWS = [SamplingOptions(temperature=0), SamplingOptions(top_k=None), SamplingOptions(top_k=3),
        SamplingOptions(top_k=None, top_p=0.5), SamplingOptions(top_k=20, top_p=0.9, repetition_penalty=1.5),
        SamplingOptions(top_k=1000)]


def settings(options: list[SamplingOptions], vocab: int = 50) -> RowSettings:
    return RowSettings.of(options, list(range(len(options))), vocab, CPU)


def test_each_row_is_filtered_as_the_reference_filters_it_alone() -> None:
    torch.manual_seed(0)
    logits = torch.randn(len(ROWS), 50) * 3
    got = filter_rows(logits, settings(ROWS))
    for row, options in enumerate(ROWS):
        expected = logits[row:row + 1]
        if options.top_k is not None:
            expected = apply_top_k(expected, options.top_k)
        if options.top_p is not None:
            expected = apply_top_p(expected, options.top_p)
        assert torch.equal(got[row:row + 1], expected), options


def test_each_row_is_penalised_by_its_own_penalty() -> None:
    torch.manual_seed(1)
    logits, seen = torch.randn(len(ROWS), 50), torch.rand(len(ROWS), 50) < 0.3
    s = settings(ROWS)
    got = penalise_rows(logits, seen, s.penalty)
    for row, options in enumerate(ROWS):
        penalty = options.repetition_penalty
        expected = apply_repetition_penalty(logits[row:row + 1], seen[row:row + 1], penalty)
        assert torch.equal(got[row:row + 1], expected)


def test_greedy_rows_take_the_argmax_and_top_k_1_is_greedy() -> None:
    torch.manual_seed(2)
    logits = torch.randn(3, 50)
    options = [SamplingOptions(temperature=0), SamplingOptions(temperature=2.0, top_k=1),
               SamplingOptions(temperature=0)]
    for t in range(5):
        drawn = sample_rows(logits, settings(options), None, torch.full((3,), t))
        assert torch.equal(drawn, logits.argmax(-1))


def test_draws_follow_the_softmax_and_depend_only_on_key_and_counter() -> None:
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0, -1e9]])
    n = 20_000
    s = RowSettings.of([SamplingOptions(temperature=1.0, top_k=None)] * n, list(range(n)), 5, CPU)
    draws = sample_rows(logits.expand(n, 5), s, None, torch.zeros(n, dtype=torch.long))
    freq = torch.bincount(draws, minlength=5).float() / n
    torch.testing.assert_close(freq, torch.softmax(logits[0], -1), atol=0.015, rtol=0)  # 4 sigma ~ 0.013
    solo = RowSettings.of([SamplingOptions(temperature=1.0, top_k=None)], [17], 5, CPU)
    one = sample_rows(logits, solo, None, torch.tensor([0]))
    assert one.item() == draws[17].item()  # row 17 of the big batch drew what it draws alone


def test_noise_for_candidate_ids_equals_the_whole_vocabularys_at_those_ids() -> None:
    keys, counters = torch.tensor([5, 6]), torch.tensor([0, 9])
    whole = gumbel_noise(keys, counters, torch.arange(1000).expand(2, 1000))
    ids = torch.tensor([[3, 999, 17], [0, 500, 2]])
    assert torch.equal(gumbel_noise(keys, counters, ids), whole.gather(1, ids))
    assert not torch.equal(whole[0], gumbel_noise(keys[:1], counters[:1] + 1, torch.arange(1000)[None])[0])


def test_row_keys_are_reproducible_from_a_seed() -> None:
    a = row_keys(torch.Generator().manual_seed(3), 4)
    assert a == row_keys(torch.Generator().manual_seed(3), 4) and len(set(a)) == 4
    assert a[:2] == row_keys(torch.Generator().manual_seed(3), 2)
    assert a != row_keys(torch.Generator().manual_seed(4), 4)


def test_top_k_larger_than_the_vocabulary_keeps_everything() -> None:
    logits = torch.randn(1, 10)
    assert torch.equal(filter_rows(logits, settings([SamplingOptions(top_k=1000)], vocab=10)), logits)


def test_a_greedy_row_does_not_push_a_top_k_batch_onto_the_whole_vocabulary() -> None:
    torch.manual_seed(3)
    logits = torch.randn(2, 50)
    mixed = RowSettings.of([SamplingOptions(temperature=0), SamplingOptions(top_k=5)], [0, 11], 50, CPU)
    assert mixed.all_top_k  # only the sampled row's limit matters
    drawn = sample_rows(logits, mixed, None, torch.tensor([0, 4]))
    alone = RowSettings.of([SamplingOptions(top_k=5)], [11], 50, CPU)
    assert drawn[0] == logits[0].argmax()
    assert drawn[1] == sample_rows(logits[1:], alone, None, torch.tensor([4]))[0]
    unlimited = SamplingOptions(top_k=None, temperature=1.0)
    whole = RowSettings.of([unlimited, SamplingOptions(top_k=5)], [0, 11], 50, CPU)
    assert not whole.all_top_k and sample_rows(logits, whole, None, torch.tensor([0, 4]))[1] == drawn[1]
