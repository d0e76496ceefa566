"""The README's own-text recipe, run as written on a corpus it has never seen (Nepali, made up
here): tokenizer -> prepare -> train -> eval -> generate, with only the paths swapped in and
the run shortened for the test."""

from __future__ import annotations

import json
import random
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from gpt2 import GPT2, GPT2Config
from gpt2.checkpoint import save_checkpoint
from gpt2.data.shards import open_data
from train_helpers import ROOT, make_char_data, run_gpt2

WORDS = ("नेपाल हिमाल पहाड तराई गाउँ सहर नदी खोला जङ्गल बाटो घर आमा बुबा दाजु दिदी भाइ बहिनी साथी "
         "किताब विद्यालय शिक्षक विद्यार्थी खेत किसान धान मकै आलु पानी आकाश घाम जून तारा बादल हावा "
         "राम्रो ठूलो सानो नयाँ पुरानो सुन्दर मीठो छ थियो हुन्छ गर्छ जान्छ आउँछ पढ्छ लेख्छ खान्छ")


def nepali_corpus(folder: Path, files: int = 3, lines: int = 1500) -> Path:
    """A few files of made-up Nepali sentences (~300 KB): a script the shipped configs never saw."""
    rng, words = random.Random(0), WORDS.split()
    folder.mkdir()
    for i in range(files):
        text = "\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + "।"
                         for _ in range(lines))
        (folder / f"part{i}.txt").write_text(text + "\n", encoding="utf-8")
    return folder


PROMPT = "a prompt in your language"  # the README's stand-in for --prompt


def bash_commands(text: str, heading: str) -> list[list[str]]:
    """The commands of the first bash block after `heading` in markdown `text`."""
    block = re.search(r"```bash\n(.*?)```", text.split(heading, 1)[1], flags=re.S)[1]
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def readme_recipe() -> list[list[str]]:
    """The commands of the first bash block under '## Your own text' in README.md."""
    return bash_commands((ROOT / "README.md").read_text(encoding="utf-8"), "## Your own text")


def notebook_recipe() -> list[list[str]]:
    """The commands of notebook 06's 'Doing it for real' (a markdown cell)."""
    cells = json.loads((ROOT / "notebooks" / "06-your-language.ipynb").read_text(encoding="utf-8"))["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return bash_commands(text, "## Doing it for real")


def test_notebook_06_and_the_docs_give_the_readme_recipe() -> None:
    """One recipe: notebook 06 and docs/data.md repeat the README's commands with the names filled
    in (the README's are run below, on a corpus they never saw)."""
    names = {"my_texts/": "nepali/", "tok/mine": "tok/nepali", "data/mine": "data/nepali",
             "runs/mine/best": "runs/nepali/best", "runs/mine": "runs/nepali", PROMPT: "नेपाल"}
    filled = [[names.get(a, a) for a in command] for command in readme_recipe()]
    assert notebook_recipe() == filled
    data_md = (ROOT / "docs" / "data.md").read_text(encoding="utf-8")
    nepali = [c for c in bash_commands(data_md, "# Data") if "nepali/" in c]
    assert nepali and all(c in filled for c in nepali)


def test_what_the_recipe_writes_is_ignored_by_git() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    outputs = [a for c in readme_recipe() for a in c if a.startswith(("tok/", "data/", "runs/"))]
    assert {o.split("/")[0] for o in outputs} == {"tok", "data", "runs"}
    for path in [*outputs, "notebooks/learn_out/06-your-language/run_sp"]:  # and the notebooks' own
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
        assert ignored.returncode == 0, f"{path} would show up in git status"


@pytest.mark.slow
def test_the_readme_own_text_recipe_runs_on_a_new_corpus(tmp_path: Path) -> None:
    corpus = nepali_corpus(tmp_path / "my_texts")
    commands = readme_recipe()
    assert [c[:2] for c in commands] == [["gpt2", "tokenizer"], ["gpt2", "prepare"], ["gpt2", "train"],
                                         ["gpt2", "eval"], ["gpt2", "generate"]]
    where = {"my_texts/": str(corpus), "tok/mine": str(tmp_path / "tok"), "data/mine": str(tmp_path / "data"),
             "runs/mine": str(tmp_path / "runs")}
    outputs = []
    for command in commands:
        args = [where.get(a, a).replace("runs/mine", where["runs/mine"]) for a in command[1:]]
        if command[1] == "train":  # the same recipe, shortened for a test
            args += ["--train.max_steps=40", "--eval.interval=20", "--eval.batches=2",
                     "--system.progress=false"]
        if command[1] == "generate":
            args = [a if a != PROMPT else "नेपाल" for a in args]
        proc = run_gpt2(args, timeout=300)
        assert proc.returncode == 0, f"{' '.join(command)}:\n{proc.stderr}"
        outputs.append(proc)
    pieces = int(re.search(r"([\d,]+) pieces, end-of-text", outputs[0].stdout)[1].replace(",", ""))
    assert "1,500 pieces suggested" in outputs[0].stderr and pieces < 1_500  # lowered to fit the corpus
    assert "loss" in outputs[3].stdout
    generated = outputs[4].stdout
    assert generated.startswith("नेपाल") and len(generated) > 50
    assert sum("\u0900" <= ch <= "\u097f" for ch in generated) > 20  # Devanagari, not mojibake


@pytest.mark.slow
def test_the_finetune_own_recipe_starts_from_a_small_checkpoint(tmp_path: Path) -> None:
    """configs/finetune_own.yaml on a checkpoint of 32 positions: the window is the model's own
    (GPT-2's recipe, 256 tokens, is refused in one line saying so)."""
    data = make_char_data(tmp_path / "data")
    tokenizer = open_data(data)[1]
    base = tmp_path / "base"
    save_checkpoint(base, GPT2(GPT2Config(vocab_size=tokenizer.vocab_size, context_length=32, emb_dim=32,
                                          n_heads=2, n_layers=2)), tokenizer=tokenizer)
    quick = ["--train.max_steps=3", "--eval.interval=0", "--eval.batches=1", "--eval.sample_tokens=0",
             "--model.attention=explicit", "--system.device=cpu", "--system.dtype=float32",
             "--system.threads=1", "--system.progress=false"]
    tuned = tmp_path / "tuned"
    proc = run_gpt2(["train", "--config", "configs/finetune_own.yaml", f"--model.init={base}",
                     f"--data.dir={data}", f"--train.out_dir={tuned}", *quick])
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((tuned / "latest" / "train_config.json").read_text())
    header = json.loads((tuned / "metrics.jsonl").read_text().splitlines()[0])
    assert header["tokens_per_step"] == saved["train"]["batch_size"] * 32  # the loaded model's context
    old = run_gpt2(["train", "--config", "configs/finetune_gpt2.yaml", f"--model.init={base}",
                    f"--data.dir={data}", f"--train.out_dir={tmp_path / 'old'}", *quick])
    assert old.returncode == 1 and "Traceback" not in old.stderr
    assert "--train.context_length 256 is longer than the model's context_length 32; lower it or leave it " \
           "unset (it defaults to the loaded model's)" in old.stderr
