"""lm-evaluation-harness runs our checkpoint (its own `hf` model on our Hugging Face export) with
the task config of docs/evaluation.md, offline, and agrees with `gpt2 eval --task` on it:
every per-ending log-likelihood, acc, acc_bytes (our acc_norm_byte) and acc_norm."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from eval_helpers import bpe_checkpoint, shakespeare_task
from gpt2.evaluation.metrics import task_metrics
from gpt2.evaluation.scoring import score_examples
from gpt2.evaluation.tasks import read_task
from train_helpers import ROOT, VENV_BIN

pytest.importorskip("lm_eval")
DOCS = ROOT / "docs" / "evaluation.md"


def _documented_task_config() -> str:
    """The YAML block that follows the lm-eval-task marker in docs/evaluation.md."""
    match = re.search(r"<!-- lm-eval-task.*?-->\n```yaml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert match, "docs/evaluation.md lost its lm-eval task config"
    return match[1]


def _run_lm_eval(folder: Path, checkpoint: Path) -> tuple[dict, list[dict]]:
    """(aggregated results, per-example samples) of the documented command run in `folder`."""
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(folder / "hf"),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    args = [str(VENV_BIN / "lm_eval"), "--model", "hf", "--model_args",
            f"pretrained={checkpoint},tokenizer={checkpoint},dtype=float32", "--tasks", "gpt2_choice",
            "--include_path", "tasks", "--device", "cpu", "--batch_size", "8", "--output_path", "out",
            "--log_samples"]
    done = subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(next((folder / "out").rglob("results_*.json")).read_text())["results"]["gpt2_choice"]
    lines = next((folder / "out").rglob("samples_*.jsonl")).read_text().splitlines()
    samples = [json.loads(line) for line in lines]
    return results, sorted(samples, key=lambda s: s["doc_id"])


@pytest.mark.slow
def test_lm_eval_agrees_with_gpt2_eval(tmp_path, one_thread):
    model, tokenizer = bpe_checkpoint(tmp_path / "ckpt")
    task = shakespeare_task(tmp_path / "shakespeare_next_line.jsonl", examples=16)
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "gpt2_choice.yaml").write_text(_documented_task_config())
    results, samples = _run_lm_eval(tmp_path, tmp_path / "ckpt")

    examples = read_task("choice", task)
    ours = score_examples(model, tokenizer, examples, batch_size=8)
    theirs = [[float(resp[0]) for resp in sample["filtered_resps"]] for sample in samples]
    assert len(theirs) == len(examples)
    for mine, other in zip(ours, theirs, strict=True):
        assert [s.logprob for s in mine] == pytest.approx(other, abs=2e-3)
    metrics = task_metrics("choice", examples, ours)
    assert all(ex.context.isascii() and all(c.isascii() for c in ex.choices) for ex in examples)
    assert results["acc,none"] == pytest.approx(metrics["acc"])
    assert results["acc_bytes,none"] == pytest.approx(metrics["acc_norm_byte"])
    assert results["acc_norm,none"] == pytest.approx(metrics["acc_norm_byte"])  # characters = bytes here
