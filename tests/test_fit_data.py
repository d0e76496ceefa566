"""Settings a run takes from its data: max_steps capped by --train.max_passes, and the sample
prompt taken from the validation split when none is given."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from gpt2.checkpoint import read_config
from gpt2.cli import main
from gpt2.data.shards import write_prepared
from gpt2.tokenizers import get_tokenizer
from gpt2.training.config import EvalSection, RunConfig, TrainSection
from gpt2.training.fit_data import capped_steps, fit_to_data, prompt_from_data
from train_helpers import TEXT, make_char_data, tiny_args

NEPALI = "नेपाल एक सुन्दर देश हो।\nहिमाल पहाड तराई।\n" * 60


def test_steps_are_capped_by_passes_over_the_data() -> None:
    assert capped_steps(1000, 5.0, train_tokens=10_000, tokens_per_step=128) == 390  # 5 * 10000 / 128
    assert capped_steps(100, 5.0, train_tokens=10_000, tokens_per_step=128) == 100  # under the cap
    assert capped_steps(1000, 0.0, train_tokens=10_000, tokens_per_step=128) == 1000  # 0: no cap
    assert capped_steps(1000, 0.01, train_tokens=100, tokens_per_step=128) == 1  # at least one step


def test_the_prompt_is_the_first_full_line_of_the_validation_split(tmp_path: Path) -> None:
    text = "abc def\nghi jkl\nmno pqrstuvwxyz abc def\nxyz\n" * 3
    tok = get_tokenizer("char", text=text)
    ids = np.array(tok.encode(text))
    data = write_prepared(tmp_path, tok, {"train": ids[:10], "val": ids[10:]}, split={"val_ratio": 0.9})
    # val starts inside "ghi jkl" (a cut line): the first whole line after it, 12 characters at most
    assert prompt_from_data(data, tok) == "mno pqrstuvw"


def test_a_run_on_a_small_corpus_is_capped_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                       one_thread: None) -> None:
    data = make_char_data(tmp_path / "data")  # 5,364 train tokens; 128 tokens per step
    out = tmp_path / "run"
    args = tiny_args(data, out, steps=1000, **{"train.max_passes": 0.5, "eval.interval": 0})
    main(args)  # `gpt2 train`, in this process
    assert "--train.max_steps lowered from 1000 to 20: --train.max_passes 0.5" in capsys.readouterr().err
    header = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert header["planned_tokens"] == 20 * 128 and any("lowered" in n for n in header["notes"])
    saved = json.loads((out / "latest" / "train_config.json").read_text())
    assert saved["train"]["max_steps"] == 20  # the schedule the run really followed
    main([*args, "--resume=true"])
    again = capsys.readouterr().err  # the same command resolves the same way
    assert "changed for this resume" not in again and "at step 20 of 20" in again


def test_a_corpus_without_latin_letters_samples_from_its_own_text(tmp_path: Path, one_thread: None) -> None:
    tok = get_tokenizer("char", text=NEPALI)
    ids = np.array(tok.encode(NEPALI))
    data = write_prepared(tmp_path / "data", tok, {"train": ids[:2000], "val": ids[2000:]},
                          split={"val_ratio": 0.1})
    out = tmp_path / "run"
    main(tiny_args(data, out, steps=4))
    prompt = json.loads((out / "latest" / "train_config.json").read_text())["eval"]["prompt"]
    assert prompt in NEPALI.splitlines() or any(line.startswith(prompt) for line in NEPALI.splitlines())
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["eval_prompt"] == prompt
    samples = [json.loads(r)["sample"] for r in (out / "metrics.jsonl").read_text().splitlines()
               if "sample" in json.loads(r)]
    assert samples and all(s.startswith(prompt) for s in samples)
    assert read_config(out / "latest").vocab_size == tok.vocab_size


def test_gpt2_train_without_a_config_runs_the_cpu_recipe(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                         one_thread: None) -> None:
    data = make_char_data(tmp_path / "data")
    out = tmp_path / "run"
    main(["train", f"--data.dir={data}", f"--train.out_dir={out}", "--system.progress=false",
          "--system.device=cpu", "--system.dtype=float32", "--system.threads=1",
          "--eval.interval=0", "--train.max_passes=2"])
    saved = json.loads((out / "latest" / "train_config.json").read_text())
    assert saved["model"]["preset"] == "cpu-tiny" and saved["optim"]["name"] == "muon"
    assert saved["train"]["max_steps"] == 6  # 1,100 lowered: 2 passes x 5,364 tokens / (12 x 128)
    assert "--train.max_steps lowered from 1100 to 6" in capsys.readouterr().err


def test_the_prompt_stops_at_end_of_text_and_survives_an_empty_split(tmp_path: Path) -> None:
    tok = get_tokenizer("char", text="abcdefghijklmnopqrstuvwxyz \n")
    eot = [tok.eot_id]
    docs = tok.encode("xx one two\nfour five six seven eight nine\ntail") + eot + tok.encode("next doc")
    data = write_prepared(tmp_path / "a", tok, {"train": np.array(docs), "val": np.array(docs)},
                          split={"val_ratio": 0.5})
    assert prompt_from_data(data, tok) == "four five si"  # 12 characters of the first whole line
    one_line = tok.encode("head") + eot + tok.encode("one two three") + eot + tok.encode("x")
    data = write_prepared(tmp_path / "b", tok, {"train": np.array(one_line), "val": np.array(one_line)},
                          split={"val_ratio": 0.5})
    assert prompt_from_data(data, tok) == "one two thre"  # documents end at end-of-text, not in it
    empty = write_prepared(tmp_path / "c", tok, {"train": np.array(docs), "val": np.array([], dtype=int)},
                           split={"val_ratio": 0.0})
    assert prompt_from_data(empty, tok) == ""  # samples then start from end-of-text


def test_warmup_and_eval_interval_are_lowered_with_the_steps(tmp_path: Path) -> None:
    tok = get_tokenizer("char", text=TEXT)
    ids = np.array(tok.encode(TEXT))
    data = write_prepared(tmp_path, tok, {"train": ids[:5000], "val": ids[5000:]}, split={"val_ratio": 0.1})
    cfg = RunConfig(train=TrainSection(max_steps=1000, max_passes=1.0, batch_size=4))  # warmup 50
    fitted, notes = fit_to_data(cfg, data, tok, window=32)
    assert fitted.train.max_steps == 39 and fitted.optim.warmup_steps == 3  # 5,000 / 128; a tenth
    assert any("--optim.warmup_steps lowered from 50 to 3" in n for n in notes)
    assert fitted.eval.interval == 4  # 250 would evaluate only at the end: 8 evaluations in 39 steps
    assert any("--eval.interval lowered from 250 to 4: 8 evaluations in 39 steps" in n for n in notes)
    at_end_only = dataclasses.replace(cfg, eval=EvalSection(interval=0))
    assert fit_to_data(at_end_only, data, tok, window=32)[0].eval.interval == 0  # as asked
    uncapped = RunConfig(train=TrainSection(max_steps=20, max_passes=1.0, batch_size=4))
    assert fit_to_data(uncapped, data, tok, window=32)[0].eval.interval == 250  # not lowered: left alone
    assert fitted.eval.prompt and fitted.eval.prompt in TEXT
