"""Paired bootstrap for before -> after accuracy changes measured on the same test rows.

Both models are scored on identical rows, so a language's accuracy change is the mean over rows of
`d_i = correct_after_i - correct_before_i` (each -1, 0 or +1). A bootstrap replicate resamples the N
rows with replacement; all that changes between replicates is how often each distinct value of `d`
is drawn. The replicates are therefore drawn exactly as multinomial counts over the distinct values:
a `(B, K)` array with K <= 3 instead of `(B, N)` row indices, which makes 10,000 replicates for
15 languages x 5,010 rows take milliseconds.

The average and the transfer gap are linear in the per-language accuracies, so their changes are also
means over items of one per-item value. When every language has the same number of rows (the
row-parallel XNLI / PAWS-X test sets), items are resampled jointly across languages, which keeps the
correlation between translations of the same item; otherwise each language is resampled on its own.

Reported per quantity: the observed change, a percentile confidence interval, and a two-sided p-value
for "no change": the share of replicates at least as far from the observed change as the observed
change is from zero (the shifted-bootstrap test), with +1 smoothing so it is never exactly 0. Across
languages the p-values are also Holm-adjusted, since 15 languages are 15 tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alsace.errors import UserError

NUM_SAMPLES = 10_000
CONFIDENCE = 0.95


def bootstrap_means(values: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """`num_samples` bootstrap replicates `(B,)` of `values.mean()` for `values` `(N,)`.

    Exact resampling with replacement, drawn as multinomial counts of the distinct values.
    """
    distinct, counts = np.unique(values, return_counts=True)  # (K,), (K,)
    draws = rng.multinomial(len(values), counts / len(values), size=num_samples)  # (B, K)
    return draws @ distinct.astype(np.float64) / len(values)


def summarize(observed: float, replicates: np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """Observed change, percentile CI and two-sided shifted-bootstrap p-value for `replicates` `(B,)`."""
    alpha = 1.0 - confidence
    low, high = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    # A tiny tolerance so that float noise in replicates never counts against an exact 0 change.
    extreme = np.abs(replicates - observed) >= abs(observed) - 1e-12
    p_value = (1 + int(extreme.sum())) / (len(replicates) + 1)
    return {"delta": float(observed), "ci_low": float(low), "ci_high": float(high), "p_value": float(p_value)}


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values `(M,)` (family-wise error over the M tests)."""
    p_values = np.asarray(p_values, dtype=np.float64)
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    scaled = (m - np.arange(m)) * p_values[order]  # smallest p times m, next times m-1, ...
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def paired_significance(correct_before: dict[str, np.ndarray], correct_after: dict[str, np.ndarray],
                        source_language: str = "en", num_samples: int = NUM_SAMPLES, seed: int = 0,
                        confidence: float = CONFIDENCE, teachers: list[str] | None = None) -> dict:
    """Paired bootstrap of each language's accuracy change and of the average and transfer gap.

    `correct_before[lang]`, `correct_after[lang]`: `(N_lang,)` booleans, row i of both is the same test
    row. Changes are fractions (0.01 = one accuracy point).
    """
    langs = list(correct_before)
    if list(correct_after) != langs:
        raise ValueError(f"languages differ: {langs} vs {list(correct_after)}")
    rng = np.random.default_rng(seed)
    diffs = {lang: correct_after[lang].astype(np.int8) - correct_before[lang].astype(np.int8) for lang in langs}

    per_language, replicates = {}, {}
    for lang in langs:
        replicates[lang] = bootstrap_means(diffs[lang], num_samples, rng)  # (B,)
        per_language[lang] = {**summarize(diffs[lang].mean(), replicates[lang], confidence), "n": len(diffs[lang])}
    for lang, p in zip(langs, holm(np.array([r["p_value"] for r in per_language.values()]))):
        per_language[lang]["p_holm"] = float(p)

    others = [lang for lang in langs if lang != source_language]
    parallel = len({len(d) for d in diffs.values()}) == 1
    if parallel:
        d = np.stack([diffs[lang] for lang in langs]).astype(np.float64)  # (L, N)
        avg_items = d.mean(0)  # (N,) each item's contribution to the average change
        average = summarize(avg_items.mean(), bootstrap_means(avg_items, num_samples, rng), confidence)
    else:
        reps = np.stack([replicates[lang] for lang in langs], 1)  # (B, L), languages resampled independently
        average = summarize(np.mean([diffs[lang].mean() for lang in langs]), reps.mean(1), confidence)

    gap = None
    if source_language in langs and others:
        if parallel:
            gap_items = d[langs.index(source_language)] - d[[langs.index(o) for o in others]].mean(0)  # (N,)
            gap = summarize(gap_items.mean(), bootstrap_means(gap_items, num_samples, rng), confidence)
        else:
            observed = diffs[source_language].mean() - np.mean([diffs[o].mean() for o in others])
            gap_reps = replicates[source_language] - np.stack([replicates[o] for o in others], 1).mean(1)
            gap = summarize(observed, gap_reps, confidence)

    teacher_average = None  # drawn last, so the numbers above do not depend on whether it is asked for
    if teachers:
        if parallel:
            t_items = d[[langs.index(t) for t in teachers]].mean(0)  # (N,)
            teacher_average = summarize(t_items.mean(), bootstrap_means(t_items, num_samples, rng), confidence)
        else:
            teacher_average = summarize(np.mean([diffs[t].mean() for t in teachers]),
                                        np.stack([replicates[t] for t in teachers], 1).mean(1), confidence)

    out = {"method": "paired bootstrap", "num_samples": num_samples, "seed": seed, "confidence": confidence,
           "resampling": "items jointly across languages" if parallel else "rows within each language",
           "per_language": per_language, "average": average, "transfer_gap": gap}
    if teacher_average is not None:
        out["teacher_average"] = teacher_average
    return out


def load_predictions(run_dir, split: str, lang: str) -> tuple[np.ndarray, np.ndarray]:
    """`(N, C)` logits and `(N,)` labels from `predictions/<lang>_<split>_{logits,labels}.npy` (pickles refused)."""
    base = Path(run_dir) / "predictions" / f"{lang}_{split}"
    try:
        return np.load(f"{base}_logits.npy", allow_pickle=False), np.load(f"{base}_labels.npy", allow_pickle=False)
    except FileNotFoundError as err:
        raise UserError(f"{err.filename}: missing per-example predictions; rerun the evaluation") from None


@dataclass(frozen=True)
class RunPredictions:
    """One run's saved per-row predictions on a split, every language read once (`load_predictions`)."""

    run_dir: Path
    split: str
    logits: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]

    @classmethod
    def load(cls, run_dir, split: str, languages: list[str]) -> RunPredictions:
        rows = {lang: load_predictions(run_dir, split, lang) for lang in languages}
        return cls(Path(run_dir), split, {k: v[0] for k, v in rows.items()}, {k: v[1] for k, v in rows.items()})

    def correct(self) -> dict[str, np.ndarray]:
        """Per-language `(N,)` booleans: the argmax class is the label."""
        return {lang: self.logits[lang].argmax(1) == self.labels[lang] for lang in self.logits}


def source_changes(before: RunPredictions, after: RunPredictions, source_language: str) -> dict:
    """What the source language's accuracy change is made of, from two runs' predictions on the same rows.

    `right_to_wrong` / `wrong_to_right`: rows whose correctness flipped; `changed`: rows whose predicted class
    changed. When every language has the same rows (a parallel test set) and there are others, also
    `to_others_majority`: how many changed rows now predict the other languages' majority vote of the same
    row after distillation (the consistency loss pulls every language towards a shared prediction, on unseen
    rows too), and the accuracy of the source and of the others' majority vote before (fractions).
    """
    from alsace.selection import pseudo_labels, softmax

    labels = before.labels[source_language]
    b, a = before.logits[source_language].argmax(1), after.logits[source_language].argmax(1)
    out = {"n": len(labels), "right_to_wrong": int(np.sum((b == labels) & (a != labels))),
           "wrong_to_right": int(np.sum((b != labels) & (a == labels))), "changed": int(np.sum(b != a))}
    others = [lang for lang in before.logits if lang != source_language]
    if others and all(len(before.labels[lang]) == len(labels) for lang in others):
        vote_before = pseudo_labels(np.stack([softmax(before.logits[lang]) for lang in others]))
        vote_after = pseudo_labels(np.stack([softmax(after.logits[lang]) for lang in others]))
        out.update(to_others_majority=int(np.sum((b != a) & (a == vote_after))),
                   source_accuracy_before=float(np.mean(b == labels)),
                   others_majority_accuracy_before=float(np.mean(vote_before == labels)))
    return out


def significance_between_runs(before: RunPredictions, after: RunPredictions, source_language: str,
                              num_samples: int = NUM_SAMPLES, seed: int = 0, teachers: list[str] | None = None) -> dict:
    """`paired_significance` from two runs' saved predictions, checking they share rows."""
    for lang in before.labels:
        if not np.array_equal(before.labels[lang], after.labels[lang]):
            raise UserError(f"{before.run_dir} and {after.run_dir}: {lang} {before.split} predictions are not on the "
                            "same rows (labels differ); a paired test needs both models scored on identical rows")
    return paired_significance(before.correct(), after.correct(), source_language, num_samples, seed,
                               teachers=teachers)
