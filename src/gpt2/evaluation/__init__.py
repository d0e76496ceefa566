"""Evaluation on benchmark tasks scored by likelihood: multiple choice (HellaSwag's shape and a
generic one) and last-word cloze (LAMBADA's shape), on local JSON-lines files.

    tasks.py       task files -> `Example`s, with one-line errors naming file and line
    encoding.py    an example's context and endings -> token ids (shared by both scorers)
    packing.py     an example's endings laid out after its context in one masked sequence
    scoring.py     the fast path: packed examples in padded batches, the head at scored positions
    reference.py   the readable reference: one example, one ending, one forward pass at a time
    metrics.py     acc, acc_norm per token, acc_norm per byte, cloze accuracy
    results.py     one JSON line per run appended to a results file
    run.py         checkpoint + task file -> metrics (what `gpt2 eval --task` runs)
    make_tasks.py  a made-up multiple-choice task from the built-in Shakespeare corpus
    options.py     TaskOptions (without torch, for the command line)

Names are imported on first use (`gpt2.lazy`), so importing `gpt2.evaluation.options` does not
import torch.
"""

from __future__ import annotations

from gpt2.lazy import lazy_exports

_HOMES = {"Example": "gpt2.evaluation.tasks", "read_task": "gpt2.evaluation.tasks",
          "score_examples": "gpt2.evaluation.scoring",
          "score_examples_reference": "gpt2.evaluation.reference",
          "EndingScore": "gpt2.evaluation.encoding", "task_metrics": "gpt2.evaluation.metrics",
          "evaluate_task": "gpt2.evaluation.run", "TaskOptions": "gpt2.evaluation.options"}
__all__ = list(_HOMES)
__getattr__ = lazy_exports(__name__, _HOMES)
