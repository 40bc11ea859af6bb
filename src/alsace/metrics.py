"""Disparity metrics over per-language accuracies.

`transfer_gap` follows XTREME: accuracy of the source language minus the mean accuracy of the others.
`spread` is max - min; `std` the population standard deviation over languages.
"""

from __future__ import annotations

import numpy as np


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose argmax class equals the label. `logits` (N, C), `labels` (N,)."""
    if len(labels) == 0:
        return float("nan")
    return float((logits.argmax(-1) == labels).mean())


def disparity(per_language: dict[str, float], source: str = "en",
              teachers: list[str] | None = None, students: list[str] | None = None) -> dict:
    """Average, transfer gap, spread and std over languages (plus teacher/student means if given)."""
    values = np.array(list(per_language.values()), dtype=float)
    others = [v for k, v in per_language.items() if k != source]
    out = {
        "average": float(values.mean()),
        "transfer_gap": float(per_language[source] - np.mean(others)) if source in per_language and others else None,
        "spread": float(values.max() - values.min()),
        "std": float(values.std()),
    }
    if teachers is not None:
        out["teacher_average"] = float(np.mean([per_language[t] for t in teachers]))
    if students is not None:
        out["student_average"] = float(np.mean([per_language[s] for s in students])) if students else None
    return out


def prediction_health(logits: np.ndarray) -> dict:
    """Collapse diagnostics: share of the most frequent predicted class and mean prediction entropy."""
    preds = logits.argmax(-1)
    counts = np.bincount(preds, minlength=logits.shape[-1])
    z = logits - logits.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    entropy = -(p * np.log(np.clip(p, 1e-12, None))).sum(-1)
    return {"majority_share": float(counts.max() / len(preds)), "mean_entropy": float(entropy.mean())}
