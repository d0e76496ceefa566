"""`gpt2 finetune` end to end, as a user runs it: a classifier reaching 100% on a separable set
(and `gpt2 classify` on it), chat fine-tuning with LoRA resuming bit for bit, bad data refused
in one line naming the file and line, and nothing left behind by a refused run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gpt2 import GPT2, GPT2Config
from gpt2.checkpoint import save_checkpoint
from gpt2.cli import main
from gpt2.finetune.lora import add_lora
from gpt2.finetune.saved import checkpoint_writer, finetune_info
from gpt2.tokenizers import get_tokenizer
from train_helpers import fails

LETTERS = "abcdefghijklmnopqrstuvwxyz"
TEMPLATE_CHARS = "SystemUserAssistant: \n,.0123456789?+"


def _base(path: Path, seed: int = 0) -> Path:
    """A fresh 2-layer char model whose vocabulary covers the examples: a base to fine-tune."""
    tok = get_tokenizer("char", text=LETTERS + LETTERS.upper() + TEMPLATE_CHARS)
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=tok.vocab_size, context_length=48, emb_dim=32, n_heads=2, n_layers=2,
                     drop_rate=0.0)
    return save_checkpoint(path, GPT2(cfg), tokenizer=tok)


def _opts(base: Path, out: Path, steps: int, **extra: object) -> list[str]:
    opts = {"model.init": base, "train.out_dir": out, "train.max_steps": steps, "train.batch_size": 8,
            "train.log_interval": 1, "train.seed": 3, "optim.lr": 3e-3, "optim.warmup_steps": 2,
            "eval.interval": 5, "eval.batches": 2, "system.device": "cpu", "system.progress": False,
            "system.threads": 1, "system.dtype": "float32"}
    opts.update(extra)
    return [f"--{k}={v}" for k, v in opts.items()]


def _separable(path: Path, n: int, seed: int) -> Path:
    """Texts of letters from the first half of the alphabet are 'early', from the second 'late'."""
    rng = random.Random(seed)
    rows = ["text,label"]
    for i in range(n):
        label = "early" if i % 2 else "late"
        letters = LETTERS[:13] if label == "early" else LETTERS[13:]
        rows.append(f"{''.join(rng.choice(letters) for _ in range(rng.randint(4, 12)))},{label}")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.slow
def test_classifier_reaches_100_percent_on_a_separable_set(tmp_path, capsys, one_thread):
    base = _base(tmp_path / "base")
    train, val = _separable(tmp_path / "train.csv", 160, 0), _separable(tmp_path / "val.csv", 40, 1)
    out = tmp_path / "clf"
    main(["finetune", "--task", "classify", "--trainable", "last",
          *_opts(base, out, 60, **{"data.train": train, "data.val": val, "eval.interval": 0})])
    report = json.loads((out / "classification.json").read_text())
    assert report["accuracy"] == 1.0 and report["n"] == 40 and report["majority_baseline"] == 0.5
    assert report["confusion"] == [[20, 0], [0, 20]]
    printed = capsys.readouterr().out
    assert "accuracy 1.0000 on 40 examples" in printed and "confusion" in printed
    # Only the last block, the final norm and the head were trained: the embedding is the base's.
    tuned = load_file(out / "latest" / "model.safetensors")
    before = load_file(base / "model.safetensors")
    assert torch.equal(tuned["transformer.wte.weight"], before["transformer.wte.weight"])
    assert not torch.equal(tuned["transformer.h.1.mlp.c_fc.weight"],
                           load_file(base / "model.safetensors")["transformer.h.1.mlp.c_fc.weight"])

    main(["classify", "--checkpoint", str(out / "latest"), "--file", str(val), "--out",
          str(tmp_path / "r.json"),
          "--text", "abcabc", "--device", "cpu"])
    printed = capsys.readouterr().out
    assert printed.startswith("early\t") and "accuracy 1.0000" in printed
    assert json.loads((tmp_path / "r.json").read_text())["confusion"] == report["confusion"]
    # `gpt2 eval` on the classifier: the same report, appended to the results file.
    main(["eval", "--checkpoint", str(out / "latest"), "--data", str(val), "--results",
          str(tmp_path / "results.jsonl"), "--device", "cpu", "--threads", "1"])
    assert "accuracy 1.0000 on 40 examples" in capsys.readouterr().out
    record = json.loads((tmp_path / "results.jsonl").read_text())
    assert record["task"] == "classify" and record["metrics"] == {"accuracy": 1.0}
    assert record["report"]["confusion"] == report["confusion"] and record["chance"] == 0.5
    err = fails(["eval", "--checkpoint", str(out / "latest"), "--data", str(val), "--task", "choice"], capsys)
    assert "is a classifier; leave --task out" in err


def _chats(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        a, b = rng.randrange(10), rng.randrange(10)
        lines.append(json.dumps({"messages": [{"role": "user", "content": f"{a}+{b}?"},
                                              {"role": "assistant", "content": str(a + b)}]}))
    path.write_text("\n".join(lines) + "\n")
    return path


def _losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train_loss"] for r in rows if "train_loss" in r}


@pytest.mark.slow
def test_lora_chat_run_resumes_bit_for_bit(tmp_path, one_thread):
    """Dropout on, LoRA adapters: 8 steps in one go == 4 steps, stop, resume for 4 more."""
    base, data = _base(tmp_path / "base"), _chats(tmp_path / "chats.jsonl", 60, 0)
    opts = ["--task", "chat", "--lora.rank", "4", "--lora.dropout", "0.1", "--model.drop_rate", "0.1",
            "--lora.targets", "[attn.qkv,mlp.fc]"]
    main(["finetune", *opts, *_opts(base, tmp_path / "a", 8, **{"data.train": data})])
    stop = {"data.train": data, "train.stop_after_steps": 4}
    main(["finetune", *opts, *_opts(base, tmp_path / "b", 8, **stop)])
    assert _losses(tmp_path / "b").keys() == {1, 2, 3, 4}
    main(["finetune", *opts, "--resume", "true", *_opts(base, tmp_path / "b", 8, **{"data.train": data})])
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    a, b = (load_file(tmp_path / run / "latest" / "adapter_model.safetensors") for run in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.endswith("lora_B.weight") and a[k].abs().sum() > 0 for k in a)  # it trained
    assert not (tmp_path / "a" / "latest" / "model.safetensors").exists()
    info = json.loads((tmp_path / "a" / "latest" / "finetune.json").read_text())
    assert info["task"] == "chat" and info["lora"]["rank"] == 4 and Path(info["base"]) == base.resolve()


def test_full_classifier_run_resumes_bit_for_bit(tmp_path, one_thread):
    """Full fine-tuning (every weight and the head), dropout on: 6 steps in one go == 3, stop, 3 more."""
    base, data = _base(tmp_path / "base"), _separable(tmp_path / "d.csv", 60, 0)
    opts = ["--task", "classify", "--model.drop_rate", "0.1"]
    main(["finetune", *opts, *_opts(base, tmp_path / "a", 6, **{"data.train": data})])
    stop = {"data.train": data, "train.stop_after_steps": 3}
    main(["finetune", *opts, *_opts(base, tmp_path / "b", 6, **stop)])
    assert _losses(tmp_path / "b").keys() == {1, 2, 3}
    main(["finetune", *opts, "--resume", "true", *_opts(base, tmp_path / "b", 6, **{"data.train": data})])
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b") and len(_losses(tmp_path / "a")) == 6
    for name in ("model.safetensors", "head.safetensors"):
        a, b = (load_file(tmp_path / run / "latest" / name) for run in "ab")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    tuned, before = (load_file(d / "model.safetensors") for d in (tmp_path / "a" / "latest", base))
    assert not torch.equal(tuned["transformer.wte.weight"], before["transformer.wte.weight"])  # all trained



@pytest.mark.parametrize(("task", "name", "content", "message"), [
    ("chat", "c.jsonl", '{"messages": [{"role": "user", "content": "hi"}]}\n'
                        '{"messages": [{"role": "user", "content": "a"}]}\n',
     "c.jsonl line 1: the conversation has no assistant turn"),
    ("chat", "c.jsonl", '{"messages": [{"role": "user", "content": "a"}, '
                        '{"role": "assistant", "content": "b"}]}\n'
                        '\n{"messages": [{"role": "robot", "content": "a"}]}\n',
     "c.jsonl line 3: message 1 has the unknown role 'robot'"),
    ("chat", "c.jsonl", '{"messages": []}\n{"oops": 1\n', "c.jsonl line 2: not JSON"),
    ("classify", "d.csv", "text,category\nabc,x\nabd,y\n",
     "d.csv line 2: no 'label' column (the label_field option names it)"),
    ("classify", "d.csv", "", "d.csv: the file holds no examples"),
    ("chat", "e.jsonl", "\n\n", "e.jsonl: the file holds no examples"),
])
def test_bad_data_is_refused_in_one_line_naming_file_and_line(tmp_path, capsys, task, name, content, message):
    base = _base(tmp_path / "base")
    (tmp_path / name).write_text(content)
    err = fails(["finetune", "--task", task, *_opts(base, tmp_path / "run", 2,
                                                     **{"data.train": tmp_path / name})], capsys)
    assert message in err
    assert not (tmp_path / "run").exists()  # nothing written


def test_scratch_and_a_chat_checkpoint_are_refused_where_they_cannot_work(tmp_path, capsys):
    err = fails(["finetune", "--task", "chat", "--model.init", "scratch"], capsys)
    assert "--model.init scratch: fine-tuning starts from a model" in err
    base = _base(tmp_path / "base")
    err = fails(["classify", "--checkpoint", str(base), "--text", "abc", "--device", "cpu"], capsys)
    assert "not a fine-tuned checkpoint" in err
    model = GPT2.from_pretrained(base)
    add_lora(model, 2, 4.0, 0.0, ["attn.qkv"])
    lora = {"rank": 2, "alpha": 4.0, "dropout": 0.0, "targets": ["attn.qkv"]}
    checkpoint_writer(finetune_info("chat", str(base), None, lora))(tmp_path / "adapters", model)
    err = fails(["finetune", "--task", "chat", "--model.init", str(tmp_path / "adapters")], capsys)
    assert "holds LoRA adapters only" in err and "gpt2 merge" in err
    err = fails(["eval", "--checkpoint", str(tmp_path / "adapters"), "--data", "x.txt"], capsys)
    assert "holds LoRA adapters only" in err and "gpt2 merge" in err
    err = fails(["eval", "--checkpoint", str(base), "--data", "x.txt", "--results", "r.jsonl"], capsys)
    assert "--results goes with --task (a benchmark task file) or a classifier checkpoint" in err


@pytest.mark.slow
def test_fine_tunes_a_plain_hugging_face_gpt2_folder(tmp_path, one_thread):
    """A folder as transformers writes it (config.json, model.safetensors, vocab.json, merges.txt):
    GPT-2's BPE encodes the examples, and the fine-tuned checkpoint loads back in transformers."""
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_positions=32, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "hf")
    get_tokenizer("gpt2").save(tmp_path / "hf")
    (tmp_path / "hf" / "gpt2_tokenizer.json").unlink()  # a plain Hugging Face folder
    data = _chats(tmp_path / "chats.jsonl", 20, 0)
    main(["finetune", "--task", "chat", *_opts(tmp_path / "hf", tmp_path / "run", 2, **{"data.train": data})])
    tuned = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "run" / "latest")
    before = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf")
    assert not torch.equal(tuned.transformer.h[0].mlp.c_fc.weight, before.transformer.h[0].mlp.c_fc.weight)
