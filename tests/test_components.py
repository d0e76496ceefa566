"""Each component on its own: the readable reference against the fast path and torch."""

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config
from gpt2.attention import (
    KVCache,
    MultiHeadAttention,
    explicit_attention,
    one_query_attention,
    sdpa_attention,
)
from gpt2.layer_norm import LayerNorm, layer_norm_reference
from gpt2.mlp import GELU, MLP, gelu_reference
from gpt2.transformer_block import TransformerBlock


def test_layer_norm_matches_torch_and_reference():
    torch.manual_seed(0)
    x = torch.randn(4, 7, 64) * 3 + 1
    ours = LayerNorm(64)
    ref = torch.nn.LayerNorm(64)
    with torch.no_grad():
        ours.weight.normal_()
        ours.bias.normal_()
        ref.weight.copy_(ours.weight)
        ref.bias.copy_(ours.bias)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-6, rtol=0)
    written_out = layer_norm_reference(x, ours.weight, ours.bias, ours.eps)
    torch.testing.assert_close(written_out, ref(x), atol=1e-6, rtol=0)


def test_layer_norm_without_bias():
    x = torch.randn(3, 16)
    ln = LayerNorm(16, bias=False)
    assert ln.bias is None
    torch.testing.assert_close(ln(x), F.layer_norm(x, (16,)), atol=1e-6, rtol=0)


def test_gelu_is_the_tanh_form():
    x = torch.linspace(-6, 6, 1001)
    torch.testing.assert_close(GELU()(x), gelu_reference(x), atol=1e-6, rtol=0)
    # The tanh form is not the exact erf GELU: make sure we did not pick that one.
    assert (gelu_reference(x) - F.gelu(x)).abs().max() > 1e-4


def test_mlp_expands_four_times():
    mlp = MLP(tiny_config())
    assert mlp.fc.out_features == 4 * 32 and mlp.proj.in_features == 4 * 32
    assert mlp(torch.randn(2, 5, 32)).shape == (2, 5, 32)


@pytest.mark.parametrize("t_q, t_k", [(9, 9), (1, 9), (4, 9)])
def test_explicit_and_sdpa_attention_agree(t_q, t_k):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, t_q, 8), torch.randn(2, 3, t_k, 8), torch.randn(2, 3, t_k, 8)
    # Query i sits at position t_k - t_q + i and may see keys up to there.
    mask = None
    if t_q not in (1, t_k):
        q_pos = torch.arange(t_k - t_q, t_k)[:, None]
        mask = (torch.arange(t_k)[None, :] <= q_pos)[None, None]
    a = explicit_attention(q, k, v, mask, 0.0)
    b = sdpa_attention(q, k, v, mask, 0.0)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("masked", [False, True])
def test_one_bf16_query_on_cpu_matches_float32_attention(masked):
    """The decoding step's case (one bf16 query, which sdpa_attention computes with the written-out
    formula on CPU) gives float32 attention's values within bf16 rounding, with a row mask too."""
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 4, 1, 16), torch.randn(3, 4, 40, 16), torch.randn(3, 4, 40, 16)
    mask = (torch.arange(40)[None, :] < torch.tensor([[40], [25], [3]]))[:, None, None, :] if masked else None
    want = sdpa_attention(q, k, v, mask, 0.0)  # float32: torch's fused kernel
    got = sdpa_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask, 0.0)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, atol=3e-2, rtol=0)
    if masked:  # row 2 sees keys 0..2 only: its output is the attention over those alone
        alone = sdpa_attention(q[2:], k[2:, :, :3], v[2:, :, :3], None, 0.0)
        torch.testing.assert_close(got[2:].float(), alone, atol=3e-2, rtol=0)


@pytest.mark.parametrize("masked", [False, True])
def test_one_query_attention_equals_the_explicit_formula(masked):
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 4, 1, 16), torch.randn(3, 4, 40, 16), torch.randn(3, 4, 40, 16)
    mask = (torch.arange(40)[None, :] < torch.tensor([[40], [25], [3]]))[:, None, None, :] if masked else None
    got = one_query_attention(q, k, v, mask, 0.0)
    assert got.shape == (3, 4, 1, 16)
    torch.testing.assert_close(got, explicit_attention(q, k, v, mask, 0.0), atol=1e-5, rtol=0)


@pytest.mark.parametrize("t_q", [1, 2])
def test_compiled_one_query_attention_calls_no_fused_kernel(t_q):
    """Traced by torch.compile (the compiled decoding step), one query takes the summed form, which
    the compiler fuses into loops; more queries keep torch's fused kernel. Same values either way."""
    graphs = []

    def record(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        graphs.append([node.target for node in gm.graph.nodes])
        return gm.forward

    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, t_q, 8), torch.randn(2, 3, 9, 8), torch.randn(2, 3, 9, 8)
    mask = torch.ones(1, 1, t_q, 9, dtype=torch.bool)
    got = torch.compile(sdpa_attention, backend=record, fullgraph=True)(q, k, v, mask, 0.0)
    torch.testing.assert_close(got, explicit_attention(q, k, v, mask, 0.0), atol=1e-5, rtol=0)
    assert (F.scaled_dot_product_attention in graphs[0]) == (t_q > 1)


def test_attention_is_causal():
    """Changing a later token must not change earlier outputs."""
    torch.manual_seed(0)
    for impl in ("explicit", "sdpa"):
        attn = MultiHeadAttention(tiny_config(attention=impl)).eval()
        x = torch.randn(1, 10, 32)
        y = x.clone()
        y[:, 6:] = torch.randn(1, 4, 32)
        torch.testing.assert_close(attn(x)[:, :6], attn(y)[:, :6])
        assert not torch.allclose(attn(x)[:, 6:], attn(y)[:, 6:])


def test_attention_with_cache_equals_without():
    torch.manual_seed(0)
    cfg = tiny_config()
    attn = MultiHeadAttention(cfg).eval()
    x = torch.randn(2, 12, 32)
    full = attn(x)
    cache = KVCache(cfg, batch_size=2, max_len=12).layers[0]
    prefix = attn(x[:, :8], cache=cache)
    steps = [attn(x[:, t:t + 1], cache=cache) for t in range(8, 12)]
    torch.testing.assert_close(torch.cat([prefix, *steps], dim=1), full, atol=1e-5, rtol=0)


def test_block_shapes_and_residual():
    block = TransformerBlock(tiny_config()).eval()
    x = torch.randn(2, 5, 32)
    out = block(x)
    assert out.shape == x.shape and not torch.equal(out, x)


def test_cross_entropy_is_the_written_out_definition():
    from gpt2.loss import cross_entropy_loss, cross_entropy_reference

    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    targets = torch.randint(0, 11, (3, 5))
    targets[0, :2] = -100  # ignored positions
    torch.testing.assert_close(cross_entropy_loss(logits, targets), cross_entropy_reference(logits, targets))
