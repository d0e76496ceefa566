"""The compiled decoding step (`decoder="compiled"`, `--compile true`) gives the dynamic step's
tokens and logits: float32 and the FBGEMM layers it calls as opaque operators, rows at different
lengths, a sliding window, one row (as loops, `one_row_linear`; bf16: within bf16's rounding);
each model gets its own program; without a C++ compiler it decodes eagerly with a warning;
`gpt2 generate --compile true` prints what it prints without; compiled at start-up (`gpt2
serve`), serving compiles nothing more."""

from __future__ import annotations

import os
import subprocess
import sys
from copy import deepcopy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config
from gpt2 import GPT2
from gpt2.checkpoint import save_checkpoint
from gpt2.generation import SamplingOptions, prepare_for_decoding
from gpt2.generation.compiled_step import cpp_compiler_found
from gpt2.generation.decode import generate_stream
from gpt2.generation.engine import Engine, RowSpec
from gpt2.generation.half_linear import quantize_fp16
from gpt2.generation.opaque_linear import OpaqueWhenCompiled, one_row_linear
from gpt2.generation.quantize import quantize_int8
from gpt2.generation.quantize_dynamic import activation_levels, quantize_int8_dynamic
from gpt2.generation.text import TextGenerator
from gpt2.runtime.hardware import fbgemm_fp16
from gpt2.tokenizers import CharTokenizer

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("error::RuntimeWarning"),  # no eager fallback
              pytest.mark.skipif(not cpp_compiler_found(), reason="torch.compile's CPU backend needs g++")]

PRECISIONS = {"float32": prepare_for_decoding, "fp16": quantize_fp16, "int8": quantize_int8,
              "int8-dynamic": quantize_int8_dynamic}
RUNS = {"fp16": fbgemm_fp16, "int8-dynamic": lambda: activation_levels() is not None}


@pytest.fixture(autouse=True)
def fresh_programs() -> None:
    """Each model gets programs of its own, and dynamo keeps at most 8 per function (then the
    step warns and runs eagerly): every test starts from none, as a process would."""
    torch._dynamo.reset()


def _model(precision: str, seed: int = 0) -> GPT2:
    if precision in RUNS and not RUNS[precision]():
        pytest.skip(f"{precision} needs FBGEMM (an x86 CPU)")
    torch.manual_seed(seed)
    return prepare_for_decoding(PRECISIONS[precision](GPT2(tiny_config()).eval()))


def _steps(model: GPT2, decoder: str, n: int = 40, rows: int = 3) -> list:
    """Three left-padded prompts (rows at different lengths; the last `rows` of them), greedy,
    and enough tokens that the window slides (7 + 40 > the context of 32)."""
    torch.manual_seed(1)
    idx = torch.randint(0, model.cfg.vocab_size, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, :4] = 0
    mask[2, :1] = 0
    return list(generate_stream(model, idx[-rows:], n, SamplingOptions(temperature=0),
                                attention_mask=mask[-rows:], window_stride=5, decoder=decoder))


def _same(dynamic: list, compiled: list) -> None:
    assert len(dynamic) == len(compiled) == 40
    for a, b in zip(dynamic, compiled, strict=True):
        assert torch.equal(a.tokens, b.tokens)
        torch.testing.assert_close(a.logits, b.logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("precision", sorted(PRECISIONS))
def test_compiled_step_gives_the_dynamic_steps_tokens(precision: str, one_thread: None) -> None:
    model = _model(precision)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    compiled = _steps(model, "compiled")
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs  # it did compile
    _same(_steps(model, "dynamic"), compiled)


@pytest.mark.parametrize("precision", sorted(PRECISIONS))
def test_one_row_gives_the_dynamic_steps_tokens(precision: str, one_thread: None) -> None:
    """One row is its own program, where products are loops (`Int8Linear.one_row_forward` for
    int8 weights, else `one_row_linear`): no kernel of the layers is called for one row then,
    except int8-dynamic's (loops would not round its activations to int8)."""
    model = _model(precision)
    one_row_calls = []
    for layer in model.blocks.modules():  # not the LM head: prefill's last position is one row
        if isinstance(layer, OpaqueWhenCompiled):
            def counted(x: torch.Tensor, kernel=layer.kernel_forward, layer=layer) -> torch.Tensor:
                one_row_calls.append(x.numel() == layer.in_features)
                return kernel(x)
            layer.kernel_forward = counted
    compiled = _steps(model, "compiled", rows=1)
    assert any(one_row_calls) == (precision == "int8-dynamic")  # prompts: many rows
    _same(_steps(model, "dynamic", rows=1), compiled)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["(out, in)", "(in, out)"])
def test_one_row_linear_is_f_linear(dtype: torch.dtype, layout: str) -> None:
    """Compiled, `one_row_linear` gives F.linear's product of the float32 values, rounded once
    to x's dtype, whatever the weight's layout in memory."""
    torch.manual_seed(0)
    x, w, b = (torch.randn(*shape).to(dtype) for shape in ((1, 1, 40), (24, 40), (24,)))
    if layout == "(in, out)":
        w = w.t().contiguous().t()
    with torch.no_grad():
        got = torch.compile(one_row_linear)(x, w, b)
    want = F.linear(x.float(), w.float(), b.float()).to(dtype)
    assert got.dtype == dtype
    step = {torch.float32: 1e-5, torch.bfloat16: 2 ** -7, torch.float16: 2 ** -10}[dtype]  # relative
    torch.testing.assert_close(got.float(), want.float(), rtol=step, atol=step)


def test_bf16_logits_stay_within_bf16_rounding(one_thread: None) -> None:
    """In bf16 the compiled step's fused loops keep float32 between operations where eager
    rounds each result to bf16: logits may differ by about one bf16 step (8 bits of mantissa),
    and greedy tokens can part at a near-tie, so here the first steps are compared, for three
    rows and for one (its products in loops)."""
    torch.manual_seed(0)
    model = prepare_for_decoding(GPT2(tiny_config()).to(torch.bfloat16).eval())
    idx = torch.randint(0, model.cfg.vocab_size, (3, 7))
    _bf16_steps_agree(model, idx)
    _bf16_steps_agree(model, idx[:1])


def _bf16_steps_agree(model: GPT2, idx: torch.Tensor) -> None:
    steps = {d: list(generate_stream(model, idx, 6, SamplingOptions(temperature=0), decoder=d))
             for d in ("dynamic", "compiled")}
    for a, b in zip(steps["dynamic"], steps["compiled"], strict=True):
        assert torch.equal(a.tokens, b.tokens)
        torch.testing.assert_close(a.logits.float(), b.logits.float(), rtol=2 ** -7, atol=2 ** -7)


def test_each_model_gets_its_own_program(one_thread: None) -> None:
    """The program calls its opaque layers by number: a second model of the same shapes must
    not run the first one's layers."""
    first, second = _model("fp16", seed=0), _model("fp16", seed=1)
    _same(_steps(first, "dynamic"), _steps(first, "compiled"))
    _same(_steps(second, "dynamic"), _steps(second, "compiled"))
    assert not torch.equal(_steps(first, "dynamic")[-1].logits, _steps(second, "dynamic")[-1].logits)


def test_without_a_compiler_it_decodes_eagerly_with_a_warning(tmp_path: Path) -> None:
    code = ("import warnings, torch\n"
            "from conftest import tiny_config\n"
            "from gpt2 import GPT2\n"
            "from gpt2.generation import SamplingOptions, generate\n"
            "torch.manual_seed(0); m = GPT2(tiny_config()).eval(); idx = torch.tensor([[1, 2, 3]])\n"
            "g = SamplingOptions(temperature=0)\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    a = generate(m, idx, 6, g, decoder='compiled')\n"
            "print(torch.equal(a, generate(m, idx, 6, g)))\n"
            "print([str(x.message).split(' (')[0] for x in w if x.category is RuntimeWarning])\n")
    env = {**os.environ, "CXX": "/nonexistent/c++", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(__file__), timeout=300)
    assert out.returncode == 0, out.stderr
    same, messages = out.stdout.strip().splitlines()
    assert same == "True"
    assert messages == "['the compiled decoding step is unavailable']"


def test_a_copy_of_a_model_calls_its_own_layers(one_thread: None) -> None:
    """A deep copy carries its original's layer numbers; registering gives it numbers of its
    own, so changing the copy's weights changes the copy's compiled logits only."""
    original = _model("fp16")
    _steps(original, "compiled")  # the original is registered and compiled first
    copy = deepcopy(original)
    with torch.no_grad():
        copy.lm_head.weight.mul_(2)  # a float16 buffer; the packed copy is remade below
    copy.lm_head._packed = None
    _same(_steps(copy, "dynamic"), _steps(copy, "compiled"))
    _same(_steps(original, "dynamic"), _steps(original, "compiled"))


def test_compile_true_prints_the_same_text_and_says_so(tmp_path: Path) -> None:
    text = "to be or not to be, that is the question\n"
    tokenizer = CharTokenizer.from_text(text)
    torch.manual_seed(0)
    model = GPT2(tiny_config(vocab_size=tokenizer.vocab_size))
    save_checkpoint(tmp_path / "char", model, tokenizer=tokenizer)
    command = [sys.executable, "-m", "gpt2", "generate", "--checkpoint", str(tmp_path / "char"),
               "--device", "cpu", "--dtype", "float32", "--prompt", "to be", "--temperature", "0",
               "--max_new_tokens", "12"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    compiled, eager = (subprocess.run(command + extra, capture_output=True, text=True, env=env, timeout=300)
                       for extra in (["--compile", "true"], []))
    assert compiled.returncode == eager.returncode == 0, compiled.stderr
    assert compiled.stdout == eager.stdout and len(eager.stdout) > len("to be")
    assert "compiling the decoding step" in compiled.stderr and "compil" not in eager.stderr
    assert "unavailable" not in compiled.stderr  # no fallback to eager


def test_after_compile_step_serving_compiles_nothing_more(one_thread: None) -> None:
    """`compile_step` (what `gpt2 serve` runs at start-up) makes every program an engine of that
    size needs: rows joining and leaving, one row or several, a row filling the context and its
    window sliding; so no request waits for a compile."""
    model = _model("float32")
    text = TextGenerator(model, CharTokenizer.from_text("abcdefgh"), decoder="compiled")
    text.compile_step(rows=3)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    engine = Engine(model, 3, decoder="compiled")
    greedy = SamplingOptions(temperature=0)
    with torch.no_grad():
        engine.add(RowSpec(list(range(1, 30)), 12, greedy))  # fills the context of 32, then slides
        for n in range(10):
            if n in (2, 4):
                engine.add(RowSpec([1, 2, 3], 2 + n, greedy))  # joins, leaves at another step
            assert engine.step()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs
