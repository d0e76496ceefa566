"""generate() with a KV cache against the readable uncached reference generate_text()."""

import pytest
import torch

from conftest import tiny_config
from gpt2 import GPT2
from gpt2.generation import generate, generate_stream, generate_text
from gpt2.generation.options import SamplingOptions

pytestmark = pytest.mark.usefixtures("one_thread")


CONFIGS = {
    "sdpa": dict(),
    "explicit": dict(attention="explicit"),
    "no-bias-1-head": dict(bias=False, n_heads=1, n_layers=3),
    "wide-8-heads": dict(emb_dim=64, n_heads=8, n_layers=1, context_length=48),
}


def make_model(seed: int = 0, **overrides) -> GPT2:
    torch.manual_seed(seed)
    return GPT2(tiny_config(**overrides)).eval()


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("prompt_len", [1, 6, 17])
def test_greedy_with_cache_equals_reference(name, prompt_len):
    model = make_model(**CONFIGS[name])
    ctx = model.cfg.context_length
    idx = torch.randint(0, model.cfg.vocab_size, (2, prompt_len), generator=torch.Generator().manual_seed(1))
    new = ctx - prompt_len  # fill the context exactly: no sliding yet
    expected = generate_text(model, idx, new, ctx)
    got = generate(model, idx, new, SamplingOptions(temperature=0))
    assert got.shape == (2, ctx)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name", CONFIGS)
def test_cached_logits_equal_uncached_logits_at_every_step(name):
    model = make_model(**CONFIGS[name])
    idx = torch.randint(0, model.cfg.vocab_size, (3, 5), generator=torch.Generator().manual_seed(2))
    seq = idx
    steps = 0
    for step in generate_stream(model, idx, model.cfg.context_length - 5, SamplingOptions(temperature=0)):
        with torch.no_grad():
            uncached = model(seq)[:, -1, :]  # (B, V): the whole sequence re-read
        torch.testing.assert_close(step.logits, uncached, atol=1e-5, rtol=0)
        seq = torch.cat((seq, step.tokens[:, None]), dim=1)
        steps += 1
    assert steps == model.cfg.context_length - 5


def left_pad(prompts: list[torch.Tensor], pad_id: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack prompts of different lengths, padded on the left; mask 1 = real token."""
    width = max(len(p) for p in prompts)
    idx = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for row, p in enumerate(prompts):
        idx[row, width - len(p):] = p
        mask[row, width - len(p):] = 1
    return idx, mask


@pytest.mark.parametrize("name", ["sdpa", "explicit"])
def test_batched_padded_prompts_equal_each_prompt_alone(name):
    model = make_model(**CONFIGS[name])
    gen = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, 97, (n,), generator=gen) for n in (2, 9, 5, 1)]
    idx, mask = left_pad(prompts)
    new = model.cfg.context_length - idx.size(1)
    batched = list(generate_stream(model, idx, new, SamplingOptions(temperature=0), attention_mask=mask))
    batched_tokens = torch.stack([s.tokens for s in batched], dim=1)  # (B, new)
    for row, prompt in enumerate(prompts):
        alone = list(generate_stream(model, prompt[None], new, SamplingOptions(temperature=0)))
        assert torch.equal(batched_tokens[row], torch.stack([s.tokens[0] for s in alone]))
        for b_step, a_step in zip(batched, alone, strict=True):
            torch.testing.assert_close(b_step.logits[row], a_step.logits[0], atol=1e-5, rtol=0)


def test_generate_returns_prompt_then_new_tokens_with_padding_kept():
    model = make_model()
    idx, mask = left_pad([torch.tensor([5, 6, 7]), torch.tensor([8])])
    out = generate(model, idx, 4, SamplingOptions(temperature=0), attention_mask=mask)
    assert out.shape == (2, 7)
    assert torch.equal(out[:, :3], idx)


def test_all_ones_mask_is_the_same_as_no_mask():
    model = make_model()
    idx = torch.randint(0, 97, (2, 4))
    with_mask = generate(model, idx, 10, SamplingOptions(temperature=0), attention_mask=torch.ones_like(idx))
    assert torch.equal(with_mask, generate(model, idx, 10, SamplingOptions(temperature=0)))


@pytest.mark.parametrize("prompt_len", [1, 10, 32])
def test_sliding_window_with_stride_one_equals_reference_past_the_context(prompt_len):
    model = make_model()
    ctx = model.cfg.context_length
    idx = torch.randint(0, 97, (2, prompt_len), generator=torch.Generator().manual_seed(4))
    new = 2 * ctx
    expected = generate_text(model, idx, new, ctx)
    assert torch.equal(generate(model, idx, new, SamplingOptions(temperature=0), window_stride=1), expected)


@pytest.mark.parametrize("stride", [None, 5, 32])
def test_sliding_window_rebuilds_the_cache_from_the_window(stride):
    model = make_model()
    ctx = model.cfg.context_length
    idx = torch.randint(0, 97, (1, 20), generator=torch.Generator().manual_seed(5))
    steps = list(generate_stream(model, idx, 3 * ctx, SamplingOptions(temperature=0), window_stride=stride))
    assert len(steps) == 3 * ctx
    seq = torch.cat((idx, torch.stack([s.tokens for s in steps], dim=1)), dim=1)
    # Replay: at each step the logits must be those of an uncached read of the window the
    # cache holds, which always ends at the newest token and never exceeds the context.
    stride = stride or ctx // 4
    start, n = 0, idx.size(1)
    for step in steps:
        if n - start > ctx:  # the window slid
            start = n - (ctx - stride + 1)
        with torch.no_grad():
            expected = model(seq[:, start:n])[:, -1, :]
        torch.testing.assert_close(step.logits, expected, atol=1e-5, rtol=0)
        n += 1


def test_sliding_window_with_left_padding_keeps_going():
    model = make_model()
    idx, mask = left_pad([torch.tensor([1, 2, 3, 4, 5, 6]), torch.tensor([7, 8])])
    out = generate(model, idx, 70, SamplingOptions(temperature=0), attention_mask=mask, window_stride=8)
    assert out.shape == (2, 76)
    # Until the first slide each row is still exactly what it gives alone.
    alone = generate(model, torch.tensor([[7, 8]]), 26, SamplingOptions(temperature=0))
    assert torch.equal(out[1, 6:32], alone[0, 2:])


def test_generation_runs_in_eval_mode_and_restores_training_mode():
    model = make_model(drop_rate=0.5)
    model.train()
    idx = torch.randint(0, 97, (1, 3))
    a = generate(model, idx, 12, SamplingOptions(temperature=0))
    b = generate(model, idx, 12, SamplingOptions(temperature=0))
    assert torch.equal(a, b)  # dropout was off
    assert model.training


def test_zero_new_tokens_returns_the_prompt():
    model = make_model()
    idx = torch.randint(0, 97, (2, 3))
    assert torch.equal(generate(model, idx, 0), idx)


def test_callback_sees_each_step_in_order():
    model = make_model()
    idx = torch.randint(0, 97, (1, 3))
    seen = []
    out = generate(model, idx, 7, SamplingOptions(temperature=0), callback=lambda t: seen.append(int(t[0])))
    assert seen == out[0, 3:].tolist()


def test_bfloat16_model_generates_with_a_bfloat16_cache():
    model = make_model().to(torch.bfloat16)
    out = generate(model, torch.tensor([[1, 2, 3]]), 20, SamplingOptions(temperature=0))
    assert out.shape == (1, 23)


@pytest.mark.parametrize("kwargs, message", [
    (dict(idx=torch.zeros(1, 0, dtype=torch.long)), "prompt is empty"),
    (dict(idx=torch.zeros(1, 33, dtype=torch.long)), "context is 32"),
    (dict(idx=torch.tensor([[1, 200]])), "outside the vocabulary"),
    (dict(idx=torch.tensor([1, 2])), "shape (batch, seq_len)"),
    (dict(temperature=-0.5), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_k=0), "top_k"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(window_stride=0), "window_stride"),
    (dict(stop_strings=["x"]), "tokenizer"),
    (dict(seed=1, generator=torch.Generator()), "either seed or generator"),
    (dict(attention_mask=torch.tensor([[1, 1, 0]])), "left padding"),
    (dict(attention_mask=torch.tensor([[1, 1]])), "shape"),
])
def test_bad_requests_raise_a_clear_error_before_any_work(kwargs, message):
    model = make_model()
    args = dict(idx=torch.tensor([[1, 2, 3]]), max_new_tokens=5)
    args.update(kwargs)
    knobs = {k: args.pop(k) for k in ("temperature", "top_k", "top_p", "repetition_penalty") if k in args}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        generate(model, args.pop("idx"), args.pop("max_new_tokens"), SamplingOptions(**knobs), **args)
