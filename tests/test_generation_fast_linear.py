"""prepare_for_decoding: faster weight layouts that change nothing but speed."""

import copy

import pytest
import torch

from conftest import tiny_config
from gpt2 import GPT2
from gpt2.generation import generate, generate_text
from gpt2.generation.fast_linear import PackedLinear, _mkldnn_packed, prepare_for_decoding
from gpt2.generation.options import SamplingOptions
from gpt2.training.optim import build_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(**overrides) -> GPT2:
    torch.manual_seed(0)
    return GPT2(tiny_config(**overrides)).eval()


def test_float32_relayout_keeps_values_names_and_tying():
    model = make_model()
    idx = torch.randint(0, 97, (2, 20))
    with torch.no_grad():
        before = model(idx)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    prepare_for_decoding(model)
    assert model.blocks[0].mlp.fc.weight.t().is_contiguous()  # wide: (in, out) in memory
    model.blocks[0].mlp.proj.weight.data = model.blocks[0].mlp.proj.weight.data.t().contiguous().t()
    prepare_for_decoding(model)  # a narrow weight found as (in, out), e.g. by an earlier version
    assert model.blocks[0].mlp.proj.weight.is_contiguous()  # narrow (128 -> 32): (out, in)
    assert model.lm_head.weight is model.tok_emb.weight
    after = model.state_dict()
    assert list(after) == list(state)
    assert all(torch.equal(after[k], state[k]) for k in state)
    with torch.no_grad():
        torch.testing.assert_close(model(idx), before, atol=1e-5, rtol=0)
    ctx = model.cfg.context_length
    prompt, new = idx[:, :5], ctx - 5
    assert torch.equal(generate(model, prompt, new,
                       SamplingOptions(temperature=0)), generate_text(model, prompt, new, ctx))


def test_generate_lays_out_an_eval_model_but_never_a_training_one():
    prompt, greedy = torch.tensor([[1, 2, 3]]), SamplingOptions(temperature=0)
    training = make_model().train()
    out = generate(training, prompt, 5, greedy)
    assert training.training and training.blocks[0].mlp.fc.weight.is_contiguous()  # untouched
    inference = make_model()  # eval mode, like from_pretrained's models
    assert torch.equal(generate(inference, prompt, 5, greedy), out)
    assert inference.blocks[0].mlp.fc.weight.t().is_contiguous()  # the (in, out) decoding layout


def test_training_after_the_relayout_gives_the_same_weights():
    plain, relaid = make_model().train(), prepare_for_decoding(make_model()).train()
    for model in (plain, relaid):
        opt = build_optimizer(model, lr=1e-2)
        for seed in range(3):
            x = torch.randint(0, 97, (2, 16), generator=torch.Generator().manual_seed(seed))
            opt.zero_grad()
            model(x).logsumexp(-1).mean().backward()
            opt.step()
    assert not relaid.blocks[0].mlp.fc.weight.is_contiguous()  # still the decoding layout
    for a, b in zip(plain.parameters(), relaid.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


needs_bf16 = pytest.mark.skipif(not _mkldnn_packed(torch.bfloat16), reason="no oneDNN bf16 on this CPU/torch")
needs_onednn = pytest.mark.skipif(not _mkldnn_packed(torch.float32), reason="no oneDNN in this torch build")


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@needs_onednn
def test_float32_on_two_threads_multiplies_by_the_packed_copy_and_gives_the_reference(two_threads):
    model = make_model()
    idx = torch.randint(0, 97, (3, 17))
    with torch.no_grad():
        reference = model(idx)
    prepare_for_decoding(model)
    assert isinstance(model.lm_head, PackedLinear) and model.lm_head.weight is model.tok_emb.weight
    with torch.no_grad():
        fast = model(idx)
    assert model.lm_head._packed is not None  # the oneDNN path really ran
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)  # summation order only
    ctx = model.cfg.context_length
    prompt, new = idx[:, :5], ctx - 5
    assert torch.equal(generate(model, prompt, new, SamplingOptions(temperature=0)),
                       generate_text(make_model(), prompt, new, ctx))


@needs_onednn
def test_float32_on_one_thread_keeps_torchs_own_product_and_makes_no_copy():
    model = prepare_for_decoding(make_model())
    with torch.no_grad():
        model(torch.randint(0, 97, (1, 9)))
    assert isinstance(model.blocks[0].mlp.fc, PackedLinear)
    assert all(m._packed is None for m in model.modules() if isinstance(m, PackedLinear))


@needs_bf16
def test_packed_bf16_linear_gives_the_reference_logits():
    model = make_model().to(torch.bfloat16)
    idx = torch.randint(0, 97, (3, 17))
    with torch.no_grad():
        reference = model(idx).float()
    prepare_for_decoding(model)
    assert isinstance(model.lm_head, PackedLinear) and isinstance(model.blocks[1].attn.qkv, PackedLinear)
    assert model.lm_head.weight is model.tok_emb.weight
    with torch.no_grad():
        fast = model(idx).float()
    assert model.lm_head._packed is not None  # the fast path really ran
    torch.testing.assert_close(fast, reference, atol=2e-2, rtol=2e-2)  # bf16 rounding only


@needs_bf16
def test_generate_prepares_a_bf16_model_itself_and_it_still_copies():
    model = make_model().to(torch.bfloat16)
    out = generate(model, torch.tensor([[1, 2, 3]]), 5, SamplingOptions(temperature=0))
    assert isinstance(model.lm_head, PackedLinear) and model.lm_head._packed is not None
    twin = copy.deepcopy(model)  # the opaque packed weight is left behind and rebuilt
    assert twin.lm_head._packed is None
    assert torch.equal(generate(twin, torch.tensor([[1, 2, 3]]), 5, SamplingOptions(temperature=0)), out)


@needs_bf16
def test_packed_copy_follows_weight_updates_and_training_uses_the_reference():
    model = prepare_for_decoding(make_model().to(torch.bfloat16))
    idx = torch.randint(0, 97, (1, 9))
    with torch.no_grad():
        model(idx)
        model.blocks[0].mlp.fc.weight.mul_(-2.0)  # an in-place update, like an optimizer step
        fast = model(idx).float()
        model.train()
        reference = model(idx).float()  # training mode: plain F.linear
    torch.testing.assert_close(fast, reference, atol=2e-2, rtol=2e-2)
    loss = model(idx).float().logsumexp(-1).mean()
    loss.backward()
    assert model.blocks[0].mlp.fc.weight.grad is not None
    assert set(model.state_dict()) == set(make_model().state_dict())
