"""The README's own-text recipe, run as written on a corpus it has never seen (Nepali, made up
here): tokenizer -> prepare -> train -> eval -> generate, with only the paths swapped in and
the run shortened for the test."""

from __future__ import annotations

import random
import re
import shlex
from pathlib import Path

import pytest

from train_helpers import ROOT, run_gpt2

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


def readme_recipe() -> list[list[str]]:
    """The commands of the first bash block under '## Your own text' in README.md."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Your own text", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S)[1]
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


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
            args = [a if a != "the first words" else "नेपाल" for a in args]
        proc = run_gpt2(args, timeout=300)
        assert proc.returncode == 0, f"{' '.join(command)}:\n{proc.stderr}"
        outputs.append(proc)
    pieces = int(re.search(r"([\d,]+) pieces, end-of-text", outputs[0].stdout)[1].replace(",", ""))
    assert "1,500 pieces suggested" in outputs[0].stderr and pieces < 1_500  # lowered to fit the corpus
    assert "loss" in outputs[3].stdout
    generated = outputs[4].stdout
    assert generated.startswith("नेपाल") and len(generated) > 50
    assert sum("\u0900" <= ch <= "\u097f" for ch in generated) > 20  # Devanagari, not mojibake
