"""`gpt2 generate` end to end: checkpoints with a tokenizer, streamed UTF-8 output, bad input."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

from gpt2 import GPT2, GPT2Config
from gpt2.checkpoint import save_checkpoint
from gpt2.cli import main
from gpt2.commands.generate import GenerateOptions, load_session
from gpt2.generation import generate
from gpt2.generation.options import SamplingOptions
from gpt2.generation.streaming import REPLACEMENT
from gpt2.runtime.hardware import fbgemm_fp16
from gpt2.runtime.options import DeviceOptions
from gpt2.tokenizers import CharTokenizer, get_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")
# The in-process expectations run float32 on the CPU; so must the command, whatever `auto`
# would pick on this machine (a GPU, a CPU with native bf16).
PINNED = ["--device", "cpu", "--dtype", "float32"]


CORPUS = "नमस्ते दुनिया 😀🙏🏽🎉 काठमाडौं"


def tiny_model(vocab_size: int, seed: int = 0) -> GPT2:
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab_size, context_length=64, emb_dim=32, n_heads=2, n_layers=2,
                     drop_rate=0.0)
    return GPT2(cfg).eval()


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    char, bpe = CharTokenizer.from_text(CORPUS), get_tokenizer("gpt2")
    save_checkpoint(root / "char", tiny_model(char.vocab_size), tokenizer=char)
    save_checkpoint(root / "bpe", tiny_model(bpe.vocab_size), tokenizer=bpe)
    save_checkpoint(root / "bare-char", tiny_model(char.vocab_size))  # no tokenizer saved
    save_checkpoint(root / "bare-gpt2", tiny_model(bpe.vocab_size))  # no tokenizer, GPT-2 vocab size
    hf = root / "hf"  # what a Hugging Face GPT-2 directory holds: weights, config, vocab.json, merges.txt
    hf.mkdir()
    for name in ("config.json", "model.safetensors", "vocab.json", "merges.txt"):
        shutil.copy(root / "bpe" / name, hf / name)
    return {"root": root, "char": char, "bpe": bpe}


def run_cli(*args, stdin: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    """The real command in a fresh process; stdout is read as bytes and decoded strictly."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    command = [sys.executable, "-m", "gpt2", "generate", *PINNED, *map(str, args)]
    proc = subprocess.run(command, input=stdin.encode(), capture_output=True, env=full_env, timeout=120)
    proc.stdout = proc.stdout.decode("utf-8")  # strict: a broken UTF-8 sequence fails the test here
    proc.stderr = proc.stderr.decode("utf-8")
    return proc


def expected_text(ckpt_dir, tokenizer, prompt: str, new: int, seed: int | None = None, **sampling) -> str:
    """What the command should print: the continuation generate() gives in-process, up to end-of-text."""
    model = GPT2.from_pretrained(ckpt_dir)
    ids = tokenizer.encode(prompt) or [tokenizer.eot_id]
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    out = generate(model, torch.tensor([ids]), new, SamplingOptions(**sampling), eos_id=tokenizer.eot_id,
                   generator=gen)
    new_ids = out[0, len(ids):].tolist()
    if tokenizer.eot_id in new_ids:
        new_ids = new_ids[: new_ids.index(tokenizer.eot_id)]
    return tokenizer.decode(new_ids).rstrip(REPLACEMENT)


@pytest.mark.slow
def test_cli_streams_devanagari_and_emoji_from_a_char_checkpoint(ckpts):
    prompt, ckpt = "नमस्ते 😀", ckpts["root"] / "char"
    # A seed whose sample does not hit end-of-text early (1 in 22 per step for this vocabulary).
    seed, cont = next((s, c) for s in range(50)
                      if len(c := expected_text(ckpt, ckpts["char"], prompt, 40, seed=s, temperature=1.0,
                                                 top_k=200)) >= 20)
    # A latin-1 stdout would fail on the first Devanagari letter: the command must switch to UTF-8.
    proc = run_cli("--checkpoint", ckpt, "--prompt", prompt, "--max_new_tokens", 40,
                   "--temperature", 1.0, "--seed", seed, env={"PYTHONIOENCODING": "latin-1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == prompt + cont + "\n"
    assert all(len(ch.encode("utf-8")) > 1 for ch in cont.replace(" ", ""))  # Devanagari and emoji only
    assert REPLACEMENT not in proc.stdout


@pytest.mark.slow
def test_cli_streams_gpt2_bpe_text_with_no_broken_characters(ckpts):
    prompt = "नमस्ते 😀 दुनिया"
    proc = run_cli("--checkpoint", ckpts["root"] / "bpe", "--prompt", prompt, "--max_new_tokens", 30,
                   "--temperature", 0)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == prompt + expected_text(ckpts["root"] / "bpe", ckpts["bpe"], prompt, 30,
                                                 temperature=0) + "\n"
    assert not proc.stdout.endswith(REPLACEMENT + "\n")


class Recorder:
    """A text stream that keeps each write separately, to see what was printed when."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass


def test_each_piece_is_written_as_soon_as_it_is_complete(ckpts):
    options = GenerateOptions(checkpoint=str(ckpts["root"] / "bpe"), seed=5, max_new_tokens=25)
    session = load_session(options, SamplingOptions(temperature=1.0), DeviceOptions("cpu", "float32"))
    out = Recorder()
    session.run("दुनिया 🙏🏽", 1, out, echo=True)
    pieces = out.writes[1:-1]  # between the echoed prompt and the final newline
    assert len(pieces) > 5
    assert all(p and REPLACEMENT not in p[-1] for p in pieces)


def test_empty_prompt_starts_from_end_of_text(ckpts, capsys):
    main(["generate", *PINNED, "--checkpoint", str(ckpts["root"] / "char"), "--prompt", "",
          "--temperature", "0", "--max_new_tokens", "12"])
    cont = expected_text(ckpts["root"] / "char", ckpts["char"], "", 12, temperature=0)
    assert capsys.readouterr().out == cont + "\n"


def test_num_samples_and_seed_are_reproducible(ckpts, capsys):
    args = ["generate", "--checkpoint", str(ckpts["root"] / "char"), "--prompt", "न", "--num_samples", "3",
            "--max_new_tokens", "15", "--seed", "7", "--temperature", "1.5"]
    main(args)
    first = capsys.readouterr().out
    main(args)
    assert capsys.readouterr().out == first
    samples = first.split("\n" + "-" * 40 + "\n")
    assert len(samples) == 3 and len(set(samples)) == 3


def test_prompt_file_and_stdin(ckpts, tmp_path, capsys, monkeypatch):
    import io

    file = tmp_path / "prompt.txt"
    file.write_text("काठमाडौं", encoding="utf-8")
    base = ["generate", "--checkpoint", str(ckpts["root"] / "char"), "--temperature", "0",
            "--max_new_tokens", "10"]
    main([*base, "--prompt_file", str(file)])
    from_file = capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", io.StringIO("काठमाडौं"))
    main(base)
    assert capsys.readouterr().out == from_file
    assert from_file.startswith("काठमाडौं")


def test_hugging_face_directory_and_gpt2_fallback(ckpts, capsys):
    args = ["--prompt", "Hello world", "--temperature", "0", "--max_new_tokens", "8"]
    main(["generate", *PINNED, "--checkpoint", str(ckpts["root"] / "bpe"), *args])
    ours = capsys.readouterr().out
    main(["generate", *PINNED, "--checkpoint", str(ckpts["root"] / "hf"), *args])
    assert capsys.readouterr().out == ours  # vocab.json + merges.txt: the same tokenizer
    main(["generate", *PINNED, "--checkpoint", str(ckpts["root"] / "bare-gpt2"), *args])
    captured = capsys.readouterr()
    assert "GPT-2's BPE is used" in captured.err
    assert captured.out.startswith("Hello world")


@pytest.mark.slow
def test_interactive_mode_answers_each_line_and_survives_a_bad_one(ckpts):
    proc = run_cli("--checkpoint", ckpts["root"] / "char", "--interactive", "true", "--temperature", 0,
                   "--max_new_tokens", 10, stdin="नमस्ते\nx\n😀\n")
    assert proc.returncode == 0, proc.stderr
    expected = [expected_text(ckpts["root"] / "char", ckpts["char"], p, 10, temperature=0)
                for p in ("नमस्ते", "😀")]
    assert proc.stdout == "".join(e + "\n" for e in expected)
    assert "not in the char tokenizer's vocabulary" in proc.stderr


BAD = {
    "unknown checkpoint": (["--checkpoint", "{root}/missing"], "no such directory"),
    "no tokenizer": (["--checkpoint", "{root}/bare-char"], "holds no tokenizer"),
    "prompt too long": (["--checkpoint", "{root}/char", "--prompt", "न" * 65], "context is 64"),
    "negative temperature": (["--checkpoint", "{root}/char", "--temperature", "-0.1"], "temperature"),
    "top_p zero": (["--checkpoint", "{root}/char", "--top_p", "0"], "top_p"),
    "top_p above one": (["--checkpoint", "{root}/char", "--top_p", "1.5"], "top_p"),
    "top_k zero": (["--checkpoint", "{root}/char", "--top_k", "0"], "top_k"),
    "prompt and file": (["--checkpoint", "{root}/char", "--prompt", "a", "--prompt_file", "f"], "not both"),
    "missing prompt file": (["--checkpoint", "{root}/char", "--prompt_file", "{root}/no"], "no such file"),
    "no samples": (["--checkpoint", "{root}/char", "--num_samples", "0"], "num_samples"),
    "unknown dtype": (["--checkpoint", "{root}/char", "--dtype", "int3"], "unknown dtype"),
    "unknown quantization": (["--checkpoint", "{root}/char", "--quantize", "int4"], "--quantize 'int4'"),
    "int8 with bf16": (["--checkpoint", "{root}/char", "--quantize", "int8", "--dtype", "bf16"], "float32"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_clear_line_and_exit_1(case, ckpts, capsys):
    args, message = BAD[case]
    with pytest.raises(SystemExit) as stop:
        main(["generate", *PINNED, *(a.format(root=ckpts["root"]) for a in args)])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("gpt2: error: ") and message in err
    assert "Traceback" not in err and err.count("\n") == 1


@pytest.mark.slow
def test_bad_input_in_a_real_process_has_no_traceback(ckpts):
    proc = run_cli("--checkpoint", ckpts["root"] / "char", "--top_p", "1.5")
    assert proc.returncode == 1
    assert proc.stderr.startswith("gpt2: error: top_p") and "Traceback" not in proc.stderr


def test_bf16_generation_from_the_command_line(ckpts, capsys):
    main(["generate", *PINNED, "--checkpoint", str(ckpts["root"] / "bpe"), "--prompt", "Hello",
          "--dtype", "bf16", "--temperature", "0", "--max_new_tokens", "6"])
    out = capsys.readouterr().out
    assert out.startswith("Hello") and len(out) > len("Hello\n")


@pytest.mark.slow
def test_a_reader_that_stops_early_gets_no_traceback(ckpts):
    cmd = [sys.executable, "-m", "gpt2", "generate", *PINNED, "--checkpoint", str(ckpts["root"] / "bpe"),
           "--prompt", "Hello", "--temperature", "0", "--max_new_tokens", "2000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    proc.stdout.read(5)  # like `| head -c 5`: read a little, then hang up
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert "Traceback" not in err


@pytest.mark.parametrize("mode", ["int8", "int8-dynamic", "fp16"])
def test_int8_generation_from_the_command_line(ckpts, capsys, mode):
    main(["generate", *PINNED, "--checkpoint", str(ckpts["root"] / "char"), "--prompt", CORPUS[:6],
          "--quantize", mode, "--temperature", "0", "--max_new_tokens", "8"])
    out = capsys.readouterr().out
    assert out.startswith(CORPUS[:6]) and len(out) > len(CORPUS[:6]) + 1


def test_every_reader_reads_a_checkpoint_in_the_middle_of_a_save(ckpts, tmp_path, capsys):
    """Between a save's two renames only `.NAME.old` exists: generate and eval read it, as
    from_pretrained and info do, and touch nothing."""
    import shutil

    shutil.copytree(ckpts["root"] / "char", tmp_path / ".ck.old")
    main(["generate", *PINNED, "--checkpoint", str(tmp_path / "ck"), "--prompt", CORPUS[:4],
          "--temperature", "0", "--max_new_tokens", "5"])
    assert capsys.readouterr().out.startswith(CORPUS[:4])
    text = tmp_path / "t.txt"
    text.write_text(CORPUS * 4, encoding="utf-8")
    main(["eval", *PINNED, "--checkpoint", str(tmp_path / "ck"), "--data", str(text),
          "--context_length", "8"])
    assert "bits/byte" in capsys.readouterr().out
    assert not (tmp_path / "ck").exists()


@pytest.mark.skipif(not fbgemm_fp16(), reason="FBGEMM's float16 GEMM needs an x86 CPU")
def test_auto_decodes_with_float16_weights_on_a_cpu_with_fbgemm(ckpts, capsys):
    """`--dtype auto` (the default) on such a CPU: float16 linear weights, float32 activations,
    said on stderr; the text is float32's (greedy) on this small model."""
    from gpt2.generation.half_linear import HalfLinear
    from gpt2.generation.text import TextGenerator
    from gpt2.runtime.options import DeviceOptions

    text = TextGenerator.load(ckpts["root"] / "char", None, DeviceOptions(device="cpu"))
    assert isinstance(text.model.blocks[0].mlp.fc, HalfLinear)
    args = ["--checkpoint", str(ckpts["root"] / "char"), "--prompt", CORPUS[:6], "--temperature", "0",
            "--max_new_tokens", "12", "--device", "cpu"]
    main(["generate", *args])
    auto = capsys.readouterr()
    assert "float16 weights (float32 activations)" in auto.err
    main(["generate", *args, "--dtype", "float32"])
    assert capsys.readouterr().out == auto.out

