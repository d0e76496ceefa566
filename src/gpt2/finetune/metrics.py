"""Classification metrics: accuracy, per-class precision and recall, the confusion matrix.

Written out rather than taken from scikit-learn (a dev dependency only); the tests compare
them with scikit-learn's on the same predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def classification_report(truth: Sequence[int], predicted: Sequence[int],
                          classes: list[str]) -> dict[str, Any]:
    """{"accuracy", "n", "majority_baseline", "classes", "confusion", "per_class"}: confusion[i][j]
    counts examples of class i predicted as j; precision = tp / predicted as the class,
    recall = tp / examples of the class (0 where nothing was predicted / present)."""
    k = len(classes)
    confusion = [[0] * k for _ in range(k)]
    for t, p in zip(truth, predicted, strict=True):
        confusion[t][p] += 1
    n = len(truth)
    per_class = {}
    for i, name in enumerate(classes):
        tp, as_class, actual = confusion[i][i], sum(row[i] for row in confusion), sum(confusion[i])
        per_class[name] = {"precision": tp / as_class if as_class else 0.0,
                           "recall": tp / actual if actual else 0.0, "support": actual}
    correct = sum(confusion[i][i] for i in range(k))
    majority = max((sum(row) for row in confusion), default=0)
    return {"accuracy": correct / n if n else float("nan"), "n": n,
            "majority_baseline": majority / n if n else float("nan"), "classes": list(classes),
            "confusion": confusion, "per_class": per_class}


def format_report(report: dict[str, Any]) -> str:
    """The report as a few lines of text: accuracy, a precision/recall table, the confusion matrix."""
    classes = report["classes"]
    width = max(8, *(len(c) for c in classes))
    lines = [f"accuracy {report['accuracy']:.4f} on {report['n']} examples "
             f"(majority class: {report['majority_baseline']:.4f})",
             f"{'class':>{width}}  precision  recall  support"]
    for name in classes:
        c = report["per_class"][name]
        lines.append(f"{name:>{width}}  {c['precision']:9.4f}  {c['recall']:6.4f}  {c['support']:7d}")
    lines.append("confusion (rows: true class, columns: predicted):")
    lines.append(" " * width + "  " + " ".join(f"{c[:8]:>8}" for c in classes))
    for name, row in zip(classes, report["confusion"], strict=True):
        lines.append(f"{name:>{width}}  " + " ".join(f"{v:8d}" for v in row))
    return "\n".join(lines)
