"""Teacher language selection (ALSACE stage 1): a pure function over class probabilities.

Given `probs` of shape `(T, N, C)` (languages x parallel items x classes):
1. pseudo label per item by majority vote of the languages' argmax predictions; a tie between
   classes goes to the tied class with the highest probability summed over languages (then the
   lowest class index);
2. confidence per language `s_t = mean_i probs[t, i, pseudo_i]`;
3. normalised scores `ŝ = softmax(s)` over languages;
4. teachers `ŝ_t >= θ`, students the rest; θ defaults to `mean(ŝ)` (= 1 / T).

`--selection_method` (this project's extension) replaces step 1-2's score `s_t` by another label-free
estimate of each language's accuracy; steps 3-4 stay the same:
- `paper`: the mean probability of the majority-vote pseudo label (above; the default);
- `dawid_skene`: each language is an annotator; the Dawid-Skene model (crowd-kit's `DawidSkene`) estimates
  every language's confusion matrix and each item's true-label posterior jointly by EM, and `s_t` is the
  expected accuracy of language t's predictions under that posterior. With most languages weak the
  majority vote is often wrong, and the paper's score then rewards languages that agree with it;
  Dawid-Skene weighs each language by its estimated reliability instead;
- `source_agreement`: the share of items where language t predicts what the source language predicts.
Every method's estimates and ranking are recorded (`Selection.estimates`), whichever one decides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from alsace.errors import UserError


@dataclass
class Selection:
    languages: list[str]
    scores: list[float]  # s_t
    normalized_scores: list[float]  # ŝ_t
    threshold: float | None  # θ (None for a fixed ranking)
    ranking: list[str]  # best first
    teachers: list[str]  # in ranking order
    students: list[str]  # in ranking order
    agreement: dict[str, float]  # share of items where the language's argmax equals the pseudo label
    num_items: int
    method: str  # "scores" or "fixed_rank"
    selection_method: str = "paper"  # which estimate decided the scores (SELECTION_METHODS)
    estimates: dict[str, dict[str, float]] | None = None  # every method's per-language estimate s_t
    source_guard: bool = False  # the source language was moved to the top of the ranking (a teacher)
    pool_accuracy: dict[str, float] | None = None  # accuracy on the pool's own labels (reported, never used)
    left_out: list[str] = field(default_factory=list)  # in no training pair (--skip_unreadable)
    target_accuracy: dict[str, float] | None = None  # each kind of per-item target on the pool's labels (reported)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path, pairs: list[tuple[str, str]]) -> None:
        """teacher_selection.json: this selection and the language pairs trained on."""
        from alsace.files import write_json

        write_json(path, {"selection": self.to_dict(), "pairs": pairs, "num_pairs": len(pairs)})

    @classmethod
    def load(cls, path) -> Selection:
        """The selection saved in teacher_selection.json (`save`)."""
        import json
        from pathlib import Path

        return cls(**json.loads(Path(path).read_bytes())["selection"])


def pseudo_labels(probs: np.ndarray) -> np.ndarray:
    """Majority-vote pseudo labels `(N,)` from `probs` `(T, N, C)`; ties by summed probability."""
    num_classes = probs.shape[-1]
    votes = np.eye(num_classes, dtype=np.int64)[probs.argmax(-1)].sum(0)  # (N, C)
    summed = probs.sum(0)  # (N, C)
    tied = votes == votes.max(-1, keepdims=True)  # (N, C)
    return np.where(tied, summed, -np.inf).argmax(-1)


SELECTION_METHODS = ("paper", "dawid_skene", "source_agreement")
TEACHER_TARGETS = ("mixture", "dawid_skene", "source")  # a frozen teacher's targets: its own distribution, the
# Dawid-Skene posterior, or the source language's distribution


def dawid_skene(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dawid-Skene over the languages' argmax predictions: `(T,)` expected accuracies and `(N, C)` posteriors.

    crowd-kit's EM (initialised from the majority vote; its defaults: at most 100 iterations, tolerance 1e-5)
    with languages as workers and pool items as tasks.
    A language's expected accuracy is the mean over items of the posterior probability of the label it
    predicted, which equals the prior-weighted diagonal of its estimated confusion matrix at convergence.
    Classes nobody predicted get posterior 0.
    """
    import pandas as pd
    from crowdkit.aggregation import DawidSkene

    num_langs, num_items, num_classes = probs.shape
    preds = probs.argmax(-1)  # (T, N)
    answers = pd.DataFrame({"task": np.tile(np.arange(num_items), num_langs),
                            "worker": np.repeat(np.arange(num_langs), num_items),
                            "label": preds.ravel()})
    model = DawidSkene().fit(answers)
    posterior = (model.probas_.sort_index().reindex(columns=np.arange(num_classes))  # items in order 0..N-1
                 .fillna(0.0).to_numpy(dtype=np.float64))  # (N, C)
    expected = posterior[np.arange(num_items)[None, :], preds].mean(1)  # (T,)
    return expected, posterior


def frozen_targets(logits: dict[str, np.ndarray], languages: list[str], kind: str,
                   source_language: str | None = None) -> dict[str, np.ndarray]:
    """The frozen teacher's target logits on the pool, `{lang: (N, C)}`, for `--teacher_targets kind`.

    `mixture`: each language's own starting logits (a student paired with several teachers learns their
    mixture). `dawid_skene`: for every language the log of the item's Dawid-Skene posterior from all
    languages' starting predictions (clipped at 1e-6, so a class the posterior rules out stays finite).
    `source`: for every language the source language's starting logits on the same item (`logits` must hold
    the source language even when it is not in `languages`).
    """
    if kind == "mixture":
        return {lang: logits[lang] for lang in languages}
    if kind == "source":
        if source_language not in logits:
            raise ValueError(f"teacher targets 'source' need the source language's pool logits ({source_language})")
        return {lang: logits[source_language] for lang in languages}
    probs = np.stack([softmax(logits[lang]) for lang in languages])  # (T, N, C)
    posterior = np.log(np.clip(dawid_skene(probs)[1], 1e-6, None)).astype(np.float32)  # (N, C)
    return {lang: posterior for lang in languages}


def target_accuracy(logits: dict[str, np.ndarray], languages: list[str], source_language: str,
                    labels: np.ndarray) -> dict[str, float]:
    """How often each label-free per-item target of the pool is the gold label (evaluation only, never used).

    Over `languages`' starting logits `{lang: (N, C)}` and the pool's labels `(N,)` (the items are parallel):
    `majority_vote` (the paper's pseudo label), `dawid_skene` (the posterior's argmax, `--teacher_targets
    dawid_skene`) and, when the source language is among them, `source` (its own argmax, `--teacher_targets
    source`). Tells whether the shared targets are better or worse than the source language alone.
    """
    probs = np.stack([softmax(logits[lang]) for lang in languages])  # (T, N, C)
    labels = np.asarray(labels)
    out = {"majority_vote": float((pseudo_labels(probs) == labels).mean()),
           "dawid_skene": float((dawid_skene(probs)[1].argmax(1) == labels).mean())}
    if source_language in languages:
        out["source"] = float((logits[source_language].argmax(1) == labels).mean())
    return out


def language_estimates(probs: np.ndarray, languages: list[str], source_language: str | None) -> dict:
    """Every selection method's label-free per-language estimate `s_t`, `{method: (T,) array}`."""
    items = np.arange(probs.shape[1])
    preds = probs.argmax(-1)  # (T, N)
    out = {"paper": probs[:, items, pseudo_labels(probs)].mean(1), "dawid_skene": dawid_skene(probs)[0]}
    if source_language in languages:
        out["source_agreement"] = (preds == preds[languages.index(source_language)]).mean(1)
    return out


def max_normalized_score(num_languages: int) -> float:
    """The largest ŝ_t any scores s in [0, 1] allow: one language at 1, the rest at 0: e / (e + T - 1)."""
    return float(np.e / (np.e + num_languages - 1))


def score_bound(num_languages: int, name_t: bool = False) -> str:
    """The upper bound of ŝ as the messages about θ state it: `ŝ = softmax(s) ... is at most e/(e+T−1) = ...`."""
    over = f" over T = {num_languages} languages" if name_t else ""
    return f"ŝ = softmax(s){over} with s in [0, 1] is at most e/(e+T−1) = {max_normalized_score(num_languages):.3f}"


def min_normalized_score(num_languages: int) -> float:
    """The smallest ŝ_t any scores s in [0, 1] allow: one language at 0, the rest at 1: 1 / (1 + (T - 1) e)."""
    return float(1 / (1 + (num_languages - 1) * np.e))


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (the one softmax of the package: classes, or languages for ŝ)."""
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def select_teachers(probs: np.ndarray, languages: list[str], threshold: float | None = None,
                    method: str = "paper", source_language: str | None = None) -> Selection:
    """Score languages (`method`'s estimate; the paper: confidence in the pseudo labels), split them at θ."""
    if probs.ndim != 3 or probs.shape[0] != len(languages):
        raise ValueError(f"probs must be (languages, items, classes), got {probs.shape}")
    if method not in SELECTION_METHODS:
        raise ValueError(f"unknown selection method {method!r}")  # pragma: no mutate
    labels = pseudo_labels(probs)  # (N,)
    estimates = language_estimates(probs, languages, source_language)
    if method not in estimates:
        raise UserError(f"--selection_method {method}: needs the source language {source_language} among "
                        "--languages")  # pragma: no mutate
    scores = estimates[method]  # (T,)
    normalized = softmax(scores)
    theta = float(normalized.mean()) if threshold is None else float(threshold)
    order = np.argsort(-normalized, kind="stable")
    ranking = [languages[i] for i in order]
    teachers = [languages[i] for i in order if normalized[i] >= theta]
    students = [languages[i] for i in order if normalized[i] < theta]
    agreement = {lang: float((probs[t].argmax(1) == labels).mean()) for t, lang in enumerate(languages)}
    if (not teachers or not students) and threshold is None:  # θ = mean(ŝ): only equal scores do this
        raise UserError(
            f"--selection_method {method}: the {len(languages)} languages scored the same (ŝ "
            f"{normalized.min():.4f}..{normalized.max():.4f}), so no θ can split them into teachers and students "
            "(every language predicts the same labels on the pool?); fine-tune the checkpoint further, raise "
            "--pool_size, try another --selection_method, or fix the split with --lang_rank and --num_students")
    if not teachers or not students:
        which = "no teacher" if not teachers else "no student"
        why = ""
        if not teachers:  # ŝ = softmax(s) with s in [0, 1] stays close to 1/T
            why = f" ({score_bound(len(languages), name_t=True)} and near 1/T = {1 / len(languages):.3f} for realistic scores)"
        raise UserError(
            f"--teacher_threshold {theta:.4f} leaves {which}: normalised scores range "
            f"{normalized.min():.4f}..{normalized.max():.4f} over {len(languages)} languages{why}; "
            "pick θ inside that range or use the default (mean)"
        )
    return Selection(languages=list(languages), scores=scores.tolist(), normalized_scores=normalized.tolist(),
                     threshold=theta, ranking=ranking, teachers=teachers, students=students,
                     agreement=agreement, num_items=int(probs.shape[1]), method="scores",
                     selection_method=method, estimates=_estimates_dict(estimates, languages))


def _estimates_dict(estimates: dict, languages: list[str]) -> dict[str, dict[str, float]]:
    return {m: {lang: float(v) for lang, v in zip(languages, values)} for m, values in estimates.items()}


def guard_source(selection: Selection, source_language: str) -> Selection:
    """The source language first in the ranking, and a teacher (this project's `--source_guard`).

    In every pair the higher-ranked language is the teacher side, so the labelled source language is
    then never the side that learns from another language's predictions.
    """
    if source_language not in selection.languages:
        return selection
    ranking = [source_language] + [lang for lang in selection.ranking if lang != source_language]
    teachers = [lang for lang in ranking if lang in selection.teachers or lang == source_language]
    students = [lang for lang in ranking if lang not in teachers]
    if not students:
        raise UserError(f"--source_guard: making {source_language} a teacher leaves no student")
    return replace(selection, ranking=ranking, teachers=teachers, students=students, source_guard=True)


def leave_out(selection: Selection, languages: list[str], source_language: str) -> Selection:
    """`selection` with `languages` in no training pair (this project's `--skip_unreadable`): they keep their
    scores and rank, and are neither teachers nor students. The source language is never left out."""
    out = [lang for lang in selection.ranking if lang in languages and lang != source_language]
    if not out:
        return selection
    teachers = [lang for lang in selection.teachers if lang not in out]
    students = [lang for lang in selection.students if lang not in out]
    if not teachers or not students:
        raise UserError(f"--skip_unreadable: leaving out {', '.join(out)} leaves no "
                        f"{'teacher' if not teachers else 'student'}; pass --skip_unreadable false")
    return replace(selection, teachers=teachers, students=students, left_out=out)


def score_spread_warning(normalized: list[float], min_relative_spread: float = 0.01) -> str | None:
    """A warning when the normalised scores are too close to separate teachers from students, else None.

    The spread max(ŝ) − min(ŝ) is compared with the mean 1/T: below 1 % of it the split follows noise
    (an untuned model scores every language alike).
    """
    spread = max(normalized) - min(normalized)
    relative = spread * len(normalized)
    if relative >= min_relative_spread:
        return None
    return (f"TEACHER SCORES TOO CLOSE TO SEPARATE: normalised scores span {spread:.2e} "
            f"({relative:.2%} of their mean 1/{len(normalized)}, below {min_relative_spread:.0%}); the teacher/student "
            "split follows noise. Is the checkpoint fine-tuned for the task?")


def fixed_rank(ranking: list[str], num_students: int, languages: list[str],
               probs: np.ndarray | None = None, source_language: str | None = None) -> Selection:
    """The original code's selection: a given ranking, the last `num_students` are students."""
    missing = [lang for lang in languages if lang not in ranking]
    extra = [lang for lang in ranking if lang not in languages]
    if extra or missing:
        raise UserError(
            f"--lang_rank must list each language of the run once: "
            f"{'unknown ' + ', '.join(extra) if extra else ''}{'; missing ' + ', '.join(missing) if missing else ''}"
        )
    if not 0 < num_students < len(ranking):
        raise UserError(f"--num_students {num_students}: must be between 1 and {len(ranking) - 1}")
    agreement, scores, estimates = {}, [], None
    if probs is not None:  # still record the evidence, for comparison with the fixed choice
        labels = pseudo_labels(probs)
        agreement = {lang: float((probs[t].argmax(1) == labels).mean()) for t, lang in enumerate(languages)}
        by_method = language_estimates(probs, languages, source_language)
        scores, estimates = by_method["paper"].tolist(), _estimates_dict(by_method, languages)
    return Selection(languages=list(languages), scores=scores,
                     normalized_scores=softmax(np.array(scores)).tolist() if scores else [],
                     threshold=None, ranking=list(ranking), teachers=list(ranking[:-num_students]),
                     students=list(ranking[-num_students:]), agreement=agreement,
                     num_items=int(probs.shape[1]) if probs is not None else 0, method="fixed_rank",
                     selection_method="fixed_rank", estimates=estimates)


def selection_table(sel: Selection) -> str:
    """Ranked table: language, score, normalised score, agreement, role."""
    lines = [f"{'rank':>4}  {'lang':<6}{'s':>8}{'ŝ':>8}{'agree':>8}  role"]
    for i, lang in enumerate(sel.ranking, start=1):
        t = sel.languages.index(lang)
        s = f"{sel.scores[t]:8.4f}" if sel.scores else f"{'-':>8}"
        n = f"{sel.normalized_scores[t]:8.4f}" if sel.normalized_scores else f"{'-':>8}"
        a = f"{sel.agreement[lang]:8.3f}" if sel.agreement else f"{'-':>8}"
        role = "teacher" if lang in sel.teachers else "student"
        lines.append(f"{i:>4}  {lang:<6}{s}{n}{a}  {role}")
    if sel.threshold is not None:
        lines.append(f"θ = {sel.threshold:.4f}")
    return "\n".join(lines)
