"""Disparity metrics over per-language accuracies.

`transfer_gap` follows XTREME: accuracy of the source language minus the mean accuracy of the others.
`spread` is max - min; `std` the population standard deviation over languages.
"""

from __future__ import annotations

import numpy as np

from alsace.selection import softmax


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose argmax class equals the label. `logits` (N, C), `labels` (N,). Axis 1: the classes."""
    if len(labels) == 0:
        return np.nan
    return float((logits.argmax(1) == labels).mean())


def disparity(per_language: dict[str, float], source: str = "en",
              teachers: list[str] | None = None, students: list[str] | None = None) -> dict:
    """Average, transfer gap, spread and std over languages (plus teacher/student means if given)."""
    values = np.array(list(per_language.values()))
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
    preds = logits.argmax(1)
    counts = np.bincount(preds)  # only the largest count is used: classes never predicted do not matter
    p = softmax(logits)  # (N, C)
    entropy = -(p * np.log(np.clip(p, 1e-12, None))).sum(1)
    return {"majority_share": float(counts.max() / len(preds)), "mean_entropy": float(entropy.mean())}


def class_metrics(logits: np.ndarray, labels: np.ndarray) -> dict:
    """Macro-F1 and the confusion matrix of the argmax predictions, `logits` `(N, C)`, `labels` `(N,)`.

    Macro-F1 averages over the classes present in the gold labels or the predictions (sklearn's default;
    a class that is neither counts 0 otherwise). Confusion matrix `(C, C)`: row = gold, column = predicted.
    """
    from sklearn.metrics import confusion_matrix, f1_score

    preds = logits.argmax(1)
    # macro-F1 averages only over classes in the labels or the predictions: every class's 2TP+FP+FN is > 0
    return {"macro_f1": float(f1_score(labels, preds, average="macro")),
            "confusion_matrix": confusion_matrix(labels, preds, labels=np.arange(logits.shape[1])).tolist()}


ECE_BINS = 15


def calibration(logits: np.ndarray, labels: np.ndarray, num_bins: int = ECE_BINS) -> dict:
    """Negative log-likelihood (scikit-learn's `log_loss`) and expected calibration error of `logits` `(N, C)`.

    ECE: the rows are binned by their top-class probability into `num_bins` equal-width bins of (0, 1]; it is
    the row-weighted mean over bins of |accuracy - mean top-class probability|.
    """
    from sklearn.metrics import log_loss

    if len(labels) == 0:
        return {"nll": np.nan, "ece": np.nan}
    probs = softmax(logits.astype(np.float64))  # (N, C)
    nll = float(log_loss(labels, probs, labels=np.arange(logits.shape[1])))
    confidence = probs.max(1)  # (N,)
    correct = probs.argmax(1) == labels  # (N,)
    bins = np.clip(np.ceil(confidence * num_bins).astype(int) - 1, 0, num_bins - 1)  # bin b holds (b/K, (b+1)/K]
    ece = sum(abs(correct[bins == b].mean() - confidence[bins == b].mean()) * (bins == b).mean()
              for b in np.unique(bins))
    return {"nll": nll, "ece": float(ece)}


def spearman(x, y) -> float:
    """Spearman rank correlation (scipy's `spearmanr`; ties get their average rank); NaN if a side is constant."""
    from scipy.stats import spearmanr

    if np.ptp(x) == 0 or np.ptp(y) == 0:  # no ranking on that side: undefined (scipy would warn and say NaN)
        return np.nan
    return float(spearmanr(x, y).statistic)


def selection_quality(languages: list[str], normalized_scores: list[float], accuracy_by_lang: dict[str, float],
                      estimates: dict[str, dict[str, float]] | None = None,
                      pool_accuracy: dict[str, float] | None = None) -> dict:
    """How well the label-free teacher scores ŝ rank the languages' true accuracy (reported, never used).

    With `estimates` (`{method: {lang: s_t}}`, `Selection.estimates`), each method's Spearman ρ too. With
    `pool_accuracy` (each language's accuracy on the pool's own labels), the ρ of that labelled ranking as a
    reference: a label-free estimate from the same pool can hardly rank the test accuracy better.
    """
    acc = [accuracy_by_lang[lang] for lang in languages]
    out = {"spearman_score_vs_accuracy": spearman(normalized_scores, acc), "num_languages": len(languages)}
    if estimates:
        out["by_method"] = {method: spearman([values[lang] for lang in languages], acc)
                            for method, values in estimates.items()}
    if pool_accuracy:
        out["pool_accuracy_reference"] = spearman([pool_accuracy[lang] for lang in languages], acc)
    return out
