"""Sharper checks of the method's core, written against mutation testing (run_script/mutation.sh).

Each test names the mistake it catches. Fixtures are asymmetric on purpose: three classes with unequal
probabilities, options given different values, batches where a reduction over the wrong axis differs.
"""

from __future__ import annotations

import math
import re
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from alsace.errors import UserError
from alsace.losses import LossConfig, consistency_loss, pair_loss, supervised_loss
from alsace.metrics import accuracy, class_metrics, disparity, prediction_health, spearman
from alsace.pairs import PairCollator, pool_passes, steps_for_passes
from alsace.report.significance import (RunPredictions, bootstrap_means, holm, paired_significance,
                                        significance_between_runs, summarize)
from alsace.scoring import ClassScorer
from alsace.selection import (fixed_rank, max_normalized_score, score_spread_warning, select_teachers, selection_table,
                              softmax)


def kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def probs(logits):
    z = [math.exp(x) for x in logits]
    return [v / sum(z) for v in z]


# ---------------------------------------------------------------------------------------------- losses

def test_confidence_filter_reads_each_row_over_its_classes_and_averages_the_kept_rows():
    # Three rows, three classes. Softmax over the batch axis (instead of the classes) gives other maxima.
    a = [[2.0, 0.0, -1.0], [0.0, 0.1, 0.2], [0.0, 3.0, 0.5]]
    b = [[0.5, 0.2, 0.1], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    per_pair = [kl(probs(x), probs(y)) for x, y in zip(a, b)]
    conf = [max(probs(x)) for x in a]  # 0.84, 0.37, 0.87: rows 1 and 3 pass 0.5
    assert conf[0] > 0.5 > conf[1] and conf[2] > 0.5
    got = consistency_loss(torch.tensor(a), torch.tensor(b), LossConfig(min_teacher_confidence=0.5)).item()
    assert got == pytest.approx((per_pair[0] + per_pair[2]) / 2, rel=1e-5)  # mean over the 2 kept rows


def test_confidence_filter_keeps_a_row_exactly_at_the_threshold():
    a = torch.tensor([[0.0, 0.0], [math.log(9.0), 0.0]])  # maxima exactly 0.5 and 0.9
    b = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    kl0 = kl([0.5, 0.5], probs([1.0, 0.0]))
    kl1 = kl([0.9, 0.1], [0.5, 0.5])
    assert consistency_loss(a, b, LossConfig(min_teacher_confidence=0.5)).item() == pytest.approx((kl0 + kl1) / 2, rel=1e-5)


def test_unknown_direction_names_the_value():
    with pytest.raises(ValueError, match="unknown kl direction 'backwards'"):
        consistency_loss(torch.zeros(1, 2), torch.zeros(1, 2), LossConfig(kl_direction="backwards"))


class Table(torch.nn.Module):
    """A classifier whose class logits are the row of a weight table named by the first input id."""

    config = SimpleNamespace(is_encoder_decoder=False)

    def __init__(self, rows):
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor(rows))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return SimpleNamespace(logits=self.table[input_ids[:, 0]])


ROWS = [[0.0, 0.0, 0.0], [1.0, 0.0, -1.0], [0.0, 2.0, 0.5], [-1.0, 0.5, 1.5]]


def test_pair_loss_gradient_reaches_the_teacher_side_unless_detached():
    batch = PairCollator(pad_token_id=9)([{"a": {"input_ids": [1]}, "b": {"input_ids": [2]}}])
    for detach, teacher_learns in ((False, True), (True, False)):
        model = Table(ROWS)
        loss, _ = pair_loss(model, batch, LossConfig(detach_teacher=detach))
        loss.backward()
        assert (model.table.grad[1].abs().sum() > 0) == teacher_learns  # row 1: the teacher side
        assert model.table.grad[2].abs().sum() > 0  # the student side learns either way
    model = Table(ROWS)
    pair_loss(model, batch)[0].backward()  # the default: both sides learn (the paper)
    assert model.table.grad[1].abs().sum() > 0


def test_pair_loss_passes_every_option_to_the_kl():
    # Online pairs: teacher rows 1 and 3, students rows 2 and 0; each option at a value of its own.
    batch = PairCollator(pad_token_id=9)([{"a": {"input_ids": [1]}, "b": {"input_ids": [2]}},
                                      {"a": {"input_ids": [3]}, "b": {"input_ids": [0]}}])
    teacher, student = torch.tensor([ROWS[1], ROWS[3]]), torch.tensor([ROWS[2], ROWS[0]])
    for kwargs in ({}, {"kl_direction": "student_target"}, {"temperature": 2.0},
                   {"temperature": 2.0, "teacher_temperature": 0.5}, {"min_teacher_confidence": 0.68}):
        loss, out = pair_loss(Table(ROWS), batch, LossConfig(**{"kl_direction": "teacher_target", **kwargs}))
        expected = consistency_loss(teacher, student, LossConfig(**kwargs))
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6), kwargs
        assert torch.equal(out, student)
    # The values differ, so a swapped or dropped option shows.
    values = {pair_loss(Table(ROWS), batch, LossConfig(**kw))[0].item() for kw in (
        {}, {"kl_direction": "student_target"}, {"temperature": 2.0}, {"temperature": 2.0, "teacher_temperature": 0.5},
        {"min_teacher_confidence": 0.68})}
    assert len(values) == 5


def test_pair_loss_teacher_temperature_by_hand():
    batch = PairCollator(pad_token_id=9)([{"a": {"input_ids": [1]}, "b": {"input_ids": [2]}}])
    loss, _ = pair_loss(Table(ROWS), batch, LossConfig(temperature=2.0, teacher_temperature=0.5))
    expected = kl(probs([x / 0.5 for x in ROWS[1]]), probs([x / 2.0 for x in ROWS[2]]))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_anchor_weight_without_anchor_rows_is_the_consistency_loss_alone():
    batch = PairCollator(pad_token_id=9)([{"a": {"input_ids": [1]}, "b": {"input_ids": [2]}}])
    loss, _ = pair_loss(Table(ROWS), batch, LossConfig(anchor_weight=0.5))
    assert loss.item() == pytest.approx(kl(probs(ROWS[1]), probs(ROWS[2])), rel=1e-5)


class VocabMLM(torch.nn.Module):
    """A masked LM shaped as `class_logits` reads it (BERT layout): hidden state = embedding of the token,
    vocabulary logits = decoder(hidden)."""

    config = SimpleNamespace(is_encoder_decoder=False, model_type="bert")

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.embed = torch.nn.Parameter(torch.randn(6, 4, generator=generator))
        decoder = torch.nn.Linear(4, 6)
        with torch.no_grad():
            decoder.weight.copy_(torch.randn(6, 4, generator=generator))
            decoder.bias.copy_(torch.randn(6, generator=generator))
        self.cls = SimpleNamespace(predictions=SimpleNamespace(transform=lambda h: h, decoder=decoder))
        self.decoder = decoder

    def base_model(self, input_ids, attention_mask=None):
        return (self.embed[input_ids],)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):  # classification-style batches
        return SimpleNamespace(logits=self.decoder(self.embed[input_ids[:, 0]])[:, :3])


def test_supervised_loss_full_vocab_and_label_words_by_hand():
    model = VocabMLM()
    inputs = {"input_ids": torch.tensor([[0, 5], [0, 4]]), "attention_mask": torch.ones(2, 2, dtype=torch.long),
              "mask_pos": torch.tensor([1, 1]), "label_token_ids": torch.tensor([[1, 2, 3], [3, 2, 1]]),
              "labels": torch.tensor([2, 0])}
    with torch.no_grad():
        vocab = model.decoder(model.embed[torch.tensor([5, 4])])  # (2, V) at the mask
    gold_words = torch.tensor([3, 3])  # row 0: class 2 -> word 3; row 1: class 0 -> word 3
    cls = vocab.gather(1, inputs["label_token_ids"])
    full = torch.nn.functional.cross_entropy(vocab, gold_words).item()
    words = torch.nn.functional.cross_entropy(cls, inputs["labels"]).item()
    assert abs(full - words) > 1e-3  # the two losses differ on this batch
    loss, logits = supervised_loss(model, inputs, "full_vocab")
    assert loss.item() == pytest.approx(full, rel=1e-5) and torch.allclose(logits, cls, atol=1e-6)
    loss, logits = supervised_loss(model, inputs, "label_words")
    assert loss.item() == pytest.approx(words, rel=1e-5) and torch.allclose(logits, cls, atol=1e-6)
    # A classification batch (no label words) takes the class cross-entropy whatever the loss name.
    plain = {"input_ids": torch.tensor([[5], [4]]), "labels": torch.tensor([2, 0])}
    expected = torch.nn.functional.cross_entropy(vocab[:, :3], plain["labels"]).item()
    assert supervised_loss(model, plain, "full_vocab")[0].item() == pytest.approx(expected, rel=1e-5)


def test_the_scorer_is_fed_the_sides_only():
    """The forward of the module the Trainer wraps (a ClassScorer, passed through unchanged) receives the
    stacked sides' model inputs, never the pair count, the frozen teacher's logits or the anchor batch."""
    seen = []

    class Recording(ClassScorer):
        def forward(self, labels=None, return_vocab=False, **batch):
            seen.append(sorted(batch))
            return super().forward(labels, return_vocab, **batch)

    examples = [{"b": {"input_ids": [2]}, "teacher_logits": [0.0, 1.0, 0.0], "anchor": {"input_ids": [1], "labels": 0}}]
    batch = PairCollator(pad_token_id=9, frozen_teacher=True, anchors=True)(examples)
    assert {"num_pairs", "teacher_logits", "anchor"} <= set(batch)
    pair_loss(Recording(Table(ROWS)), batch, LossConfig(anchor_weight=0.5))
    assert seen == [["attention_mask", "input_ids"], ["attention_mask", "input_ids"]]  # the sides, then the anchor


# ----------------------------------------------------------------------------------- report/significance

def test_summarize_percentile_interval_and_p_value_by_hand():
    replicates = np.arange(1001) / 1000  # 0, 0.001, ..., 1: quantile q is exactly q
    out = summarize(0.3, replicates, confidence=0.9)
    assert out["ci_low"] == pytest.approx(0.05) and out["ci_high"] == pytest.approx(0.95)
    # |r - 0.3| >= 0.3: r <= 0 (1 value) or r >= 0.6 (401 values); +1 smoothing
    assert out["p_value"] == pytest.approx((1 + 402) / 1002) and out["delta"] == 0.3
    out = summarize(0.3, replicates)  # 95 %
    assert out["ci_low"] == pytest.approx(0.025) and out["ci_high"] == pytest.approx(0.975)


def test_holm_caps_at_one():
    np.testing.assert_allclose(holm(np.array([0.6, 0.2, 0.9])), [1.0, 0.6, 1.0])


def _correct(rng, n, p):
    return rng.random(n) < p


def test_paired_significance_uses_the_confidence_everywhere_and_records_its_settings():
    rng = np.random.default_rng(5)
    before = {lang: _correct(rng, 60, 0.5) for lang in ("en", "fr", "de")}
    after = {lang: _correct(rng, 60, 0.6) for lang in ("en", "fr", "de")}
    wide = paired_significance(before, after, num_samples=400, confidence=0.95)
    narrow = paired_significance(before, after, num_samples=400, confidence=0.5)
    for key in ("average", "transfer_gap"):
        assert narrow[key]["ci_high"] - narrow[key]["ci_low"] < wide[key]["ci_high"] - wide[key]["ci_low"]
    for lang in before:
        assert (narrow["per_language"][lang]["ci_high"] - narrow["per_language"][lang]["ci_low"]
                < wide["per_language"][lang]["ci_high"] - wide["per_language"][lang]["ci_low"])
    assert wide["method"] == "paired bootstrap" and wide["confidence"] == 0.95 and narrow["confidence"] == 0.5
    assert wide["num_samples"] == 400
    assert wide["seed"] == 0 and wide == paired_significance(before, after, num_samples=400, seed=0)
    assert wide["resampling"] == "items jointly across languages"


def test_unequal_row_counts_resample_each_language_on_its_own_by_hand():
    rng = np.random.default_rng(1)
    sizes = {"en": 50, "fr": 40, "de": 30}
    before = {lang: _correct(rng, n, 0.5) for lang, n in sizes.items()}
    after = {lang: _correct(rng, n, 0.5 + 0.1 * i) for i, (lang, n) in enumerate(sizes.items())}
    out = paired_significance(before, after, num_samples=300, seed=4, confidence=0.8)
    assert out["resampling"] == "rows within each language"
    # The same draws by hand: one bootstrap per language, in order, from the seeded generator.
    draw = np.random.default_rng(4)
    diffs = {lang: after[lang].astype(int) - before[lang].astype(int) for lang in sizes}
    reps = {lang: bootstrap_means(diffs[lang], 300, draw) for lang in sizes}
    average = summarize(np.mean([d.mean() for d in diffs.values()]), np.mean([reps[lang] for lang in sizes], 0), 0.8)
    gap_observed = diffs["en"].mean() - (diffs["fr"].mean() + diffs["de"].mean()) / 2
    gap = summarize(gap_observed, reps["en"] - (reps["fr"] + reps["de"]) / 2, 0.8)
    assert out["average"] == pytest.approx(average) and out["transfer_gap"] == pytest.approx(gap)
    assert out["per_language"]["fr"] == pytest.approx({**summarize(diffs["fr"].mean(), reps["fr"], 0.8), "n": 40,
                                                       "p_holm": out["per_language"]["fr"]["p_holm"]})


def test_no_gap_without_the_source_language_and_languages_must_match():
    rng = np.random.default_rng(2)
    before = {lang: _correct(rng, 20, 0.5) for lang in ("fr", "de")}
    after = {lang: _correct(rng, 20, 0.7) for lang in ("fr", "de")}
    assert paired_significance(before, after, source_language="en", num_samples=50)["transfer_gap"] is None
    with pytest.raises(ValueError, match=r"languages differ: \['fr', 'de'\] vs \['de', 'fr'\]"):
        paired_significance(before, {"de": after["de"], "fr": after["fr"]}, num_samples=50)


def _save_predictions(run_dir, lang, correct, labels):
    logits = np.zeros((len(labels), 3), dtype=np.float32)
    logits[np.arange(len(labels)), np.where(correct, labels, (labels + 1) % 3)] = 1.0
    (run_dir / "predictions").mkdir(parents=True, exist_ok=True)
    np.save(run_dir / "predictions" / f"{lang}_test_logits.npy", logits)
    np.save(run_dir / "predictions" / f"{lang}_test_labels.npy", labels)


def test_significance_between_runs_passes_source_and_seed_through(tmp_path):
    rng = np.random.default_rng(3)
    labels = {lang: rng.integers(0, 3, 30) for lang in ("en", "fr")}
    before = {lang: _correct(rng, 30, 0.5) for lang in labels}
    after = {lang: _correct(rng, 30, 0.7) for lang in labels}
    for lang in labels:
        _save_predictions(tmp_path / "b", lang, before[lang], labels[lang])
        _save_predictions(tmp_path / "a", lang, after[lang], labels[lang])
    b, a = (RunPredictions.load(tmp_path / d, "test", ["en", "fr"]) for d in ("b", "a"))
    got = significance_between_runs(b, a, "fr", num_samples=200, seed=7)
    assert got == paired_significance(before, after, "fr", num_samples=200, seed=7)
    assert got["seed"] == 7 and got["transfer_gap"]["delta"] == pytest.approx(
        (after["fr"].mean() - before["fr"].mean()) - (after["en"].mean() - before["en"].mean()))
    default = significance_between_runs(b, a, "en", num_samples=200)
    assert default["seed"] == 0 and default == paired_significance(before, after, "en", num_samples=200, seed=0)
    # Other rows: the message names both runs, the language and why.
    _save_predictions(tmp_path / "o", "en", after["en"], (labels["en"] + 1) % 3)
    _save_predictions(tmp_path / "o", "fr", after["fr"], labels["fr"])
    other = RunPredictions.load(tmp_path / "o", "test", ["en", "fr"])
    runs = f"{re.escape(str(tmp_path / 'b'))} and {re.escape(str(tmp_path / 'o'))}"
    with pytest.raises(UserError, match=rf"^{runs}: en test predictions are not on the same rows \(labels differ\); "
                                        r"a paired test needs both models scored on identical rows$"):
        significance_between_runs(b, other, "en", num_samples=20)


def _save_classes(run_dir, lang, classes, labels):
    logits = np.zeros((len(classes), 3), dtype=np.float32)
    logits[np.arange(len(classes)), classes] = 2.0
    (run_dir / "predictions").mkdir(parents=True, exist_ok=True)
    np.save(run_dir / "predictions" / f"{lang}_test_logits.npy", logits)
    np.save(run_dir / "predictions" / f"{lang}_test_labels.npy", np.asarray(labels))


def test_source_changes_by_hand(tmp_path):
    """6 rows, labels 0 1 2 0 1 2. fr is the source (listed second). Before, fr predicts 0 1 2 1 1 0 (rows 3, 5
    wrong); after 0 2 2 0 1 1: row 1 right -> wrong, row 3 wrong -> right, row 5 changed but still wrong,
    so 3 changed. en and sw vote 1 2 2 2 0 1 after; the changed rows 1, 3, 5 predict 2, 0, 1 after: rows
    1 and 5 are on their majority (the unchanged row 2 is on it too, and is not counted). Their
    majority before, 0 1 2 0 0 1 (en and sw agree except row 4), is right on rows 0-3: 4 of 6."""
    from alsace.report.results import source_changes_line
    from alsace.report.significance import source_changes

    labels = [0, 1, 2, 0, 1, 2]
    _save_classes(tmp_path / "b", "fr", [0, 1, 2, 1, 1, 0], labels)
    _save_classes(tmp_path / "a", "fr", [0, 2, 2, 0, 1, 1], labels)
    _save_classes(tmp_path / "b", "en", [0, 1, 2, 0, 0, 1], labels)
    _save_classes(tmp_path / "b", "sw", [0, 1, 2, 0, 2, 1], labels)  # row 4: en 0, sw 2: a tie, broken towards 0
    _save_classes(tmp_path / "a", "en", [1, 2, 2, 2, 0, 1], labels)
    _save_classes(tmp_path / "a", "sw", [1, 2, 2, 2, 0, 1], labels)
    def changes(languages, source):
        b, a = (RunPredictions.load(tmp_path / d, "test", languages) for d in ("b", "a"))
        return source_changes(b, a, source)

    got = changes(["en", "fr", "sw"], "fr")
    assert got == {"n": 6, "right_to_wrong": 1, "wrong_to_right": 1, "changed": 3, "to_others_majority": 2,
                   "source_accuracy_before": pytest.approx(4 / 6), "others_majority_accuracy_before": pytest.approx(4 / 6)}
    assert source_changes_line(got, "fr") == (
        "fr's change is made of flipped rows: 1 right → wrong and 1 wrong → right of 6 (3 predictions changed; "
        "2 of them now predict the other languages' majority vote, which was right on 66.7 % of the rows before, "
        "fr on 66.7 %).")
    # Another source, so other rows: en 0 1 2 0 0 1 -> 1 2 2 2 0 1 flips rows 0, 1, 3 right -> wrong.
    got = changes(["en", "fr", "sw"], "en")
    assert (got["right_to_wrong"], got["wrong_to_right"], got["changed"]) == (3, 0, 3)
    # A language with other rows (not a parallel test set): only the flips.
    _save_classes(tmp_path / "b", "sw", [0, 1, 2], [0, 1, 2])
    got = changes(["en", "fr", "sw"], "fr")
    assert set(got) == {"n", "right_to_wrong", "wrong_to_right", "changed"}
    assert source_changes_line(got, "fr").endswith("of 6 (3 predictions changed).")
    with pytest.raises(UserError, match=r"de_test_logits.npy: missing per-example predictions"):
        changes(["de", "fr"], "fr")


def test_run_predictions_refuse_pickled_arrays_and_name_a_missing_file(tmp_path):
    _save_predictions(tmp_path, "en", np.array([True, False]), np.array([0, 1]))
    _save_predictions(tmp_path, "fr", np.array([False, False, True]), np.array([2, 0, 1]))
    saved = RunPredictions.load(tmp_path, "test", ["en", "fr"])
    assert {k: v.tolist() for k, v in saved.correct().items()} == {"en": [True, False], "fr": [False, False, True]}
    assert saved.labels["fr"].tolist() == [2, 0, 1] and saved.logits["fr"].shape == (3, 3)
    with pytest.raises(UserError, match=r"de_test_logits.npy: missing per-example predictions; rerun the evaluation"):
        RunPredictions.load(tmp_path, "test", ["en", "de"])
    for name in ("en_test_logits.npy", "en_test_labels.npy"):
        _save_predictions(tmp_path, "en", np.array([True, False]), np.array([0, 1]))
        np.save(tmp_path / "predictions" / name, np.array([{"x": 1}, None], dtype=object), allow_pickle=True)
        with pytest.raises(ValueError, match="allow_pickle"):
            RunPredictions.load(tmp_path, "test", ["en"])


# ---------------------------------------------------------------------------------------------- selection

# 4 languages x 3 items x 3 classes; majority labels 0, 1, 2. de disagrees everywhere, sw once.
SEL_PROBS = np.array([
    [[.6, .3, .1], [.2, .7, .1], [.1, .2, .7]],  # en
    [[.5, .4, .1], [.3, .6, .1], [.2, .2, .6]],  # fr
    [[.2, .7, .1], [.6, .2, .2], [.5, .4, .1]],  # de
    [[.7, .2, .1], [.2, .3, .5], [.1, .1, .8]],  # sw
])
SEL_LANGS = ["en", "fr", "de", "sw"]


def test_softmax_of_large_scores_is_finite():
    np.testing.assert_allclose(softmax(np.array([1000.0, 1001.0])), [1 / (1 + math.e), math.e / (1 + math.e)])
    np.testing.assert_allclose(softmax(np.array([[0.0, math.log(3.0)], [5.0, 5.0]])), [[0.25, 0.75], [0.5, 0.5]])


def test_select_teachers_ranks_four_languages_by_hand():
    sel = select_teachers(SEL_PROBS, SEL_LANGS)
    s = [(.6 + .7 + .7) / 3, (.5 + .6 + .6) / 3, (.2 + .2 + .1) / 3, (.7 + .3 + .8) / 3]
    assert sel.scores == pytest.approx(s)
    assert sel.ranking == ["en", "sw", "fr", "de"]  # 0.667, 0.6, 0.567, 0.167
    assert sel.teachers == ["en", "sw", "fr"] and sel.students == ["de"]
    assert sel.agreement == pytest.approx({"en": 1.0, "fr": 1.0, "de": 0.0, "sw": 2 / 3})
    assert sel.threshold == pytest.approx(0.25) and sel.num_items == 3 and sel.method == "scores"
    assert sel.languages == SEL_LANGS
    high = select_teachers(SEL_PROBS, SEL_LANGS, threshold=sel.normalized_scores[3] + 1e-9)  # between sw and en
    assert high.teachers == ["en"] and high.students == ["sw", "fr", "de"]
    at = select_teachers(SEL_PROBS, SEL_LANGS, threshold=sel.normalized_scores[1])  # exactly fr's: fr is a teacher
    assert at.teachers == ["en", "sw", "fr"] and at.students == ["de"]


def test_select_teachers_checks_the_shape_and_explains_an_empty_side():
    with pytest.raises(ValueError, match=r"probs must be \(languages, items, classes\), got \(4, 3\)"):
        select_teachers(SEL_PROBS[:, :, 0], SEL_LANGS)
    with pytest.raises(ValueError, match=r"got \(4, 3, 3\)"):
        select_teachers(SEL_PROBS, SEL_LANGS[:3])
    with pytest.raises(UserError) as none_taught:
        select_teachers(SEL_PROBS, SEL_LANGS, threshold=0.9)
    message = str(none_taught.value)
    assert message.startswith("--teacher_threshold 0.9000 leaves no teacher: normalised scores range ")
    assert f"e/(e+T−1) = {max_normalized_score(4):.3f} and near 1/T = 0.250" in message
    assert message.endswith("pick θ inside that range or use the default (mean)")
    with pytest.raises(UserError) as none_taught:
        select_teachers(SEL_PROBS, SEL_LANGS, threshold=0.01)
    assert str(none_taught.value).startswith("--teacher_threshold 0.0100 leaves no student: normalised scores range ")
    assert str(none_taught.value).endswith(" over 4 languages; pick θ inside that range or use the default (mean)")
    assert max_normalized_score(4) == pytest.approx(math.e / (math.e + 3))


def test_spread_warning_edge_and_text():
    # Spread 2 / 512 over 4 languages: relative 4 x 2 / 512 = 1/64 exactly (binary fractions): at the edge, no
    # warning; just above it, a warning.
    edge = [0.25, 0.25 + 1 / 512, 0.25 - 1 / 512, 0.25]
    assert score_spread_warning(edge, min_relative_spread=1 / 64) is None
    assert score_spread_warning(edge, min_relative_spread=1 / 64 + 1e-9) is not None
    warning = score_spread_warning([0.25, 0.2501, 0.2499, 0.25])
    assert warning == ("TEACHER SCORES TOO CLOSE TO SEPARATE: normalised scores span 2.00e-04 (0.08% of their "
                       "mean 1/4, below 1%); the teacher/student split follows noise. Is the checkpoint fine-tuned "
                       "for the task?")
    assert score_spread_warning([0.25, 0.2501, 0.2499, 0.25], min_relative_spread=0.0005) is None


def test_fixed_rank_keeps_the_given_order_and_records_the_evidence():
    sel = fixed_rank(["sw", "de", "en", "fr"], 2, SEL_LANGS, SEL_PROBS)
    assert sel.teachers == ["sw", "de"] and sel.students == ["en", "fr"] and sel.ranking == ["sw", "de", "en", "fr"]
    assert sel.method == "fixed_rank" and sel.threshold is None and sel.num_items == 3
    assert sel.scores == pytest.approx(select_teachers(SEL_PROBS, SEL_LANGS).scores)  # the same evidence
    assert sel.normalized_scores == pytest.approx(softmax(np.array(sel.scores)).tolist())
    assert sel.agreement == pytest.approx({"en": 1.0, "fr": 1.0, "de": 0.0, "sw": 2 / 3})
    bare = fixed_rank(["sw", "de", "en", "fr"], 1, SEL_LANGS)
    assert bare.students == ["fr"] and bare.scores == [] and bare.normalized_scores == [] and bare.agreement == {}
    assert bare.num_items == 0


def test_fixed_rank_names_what_is_wrong():
    with pytest.raises(UserError, match=r"^--lang_rank must list each language of the run once: unknown xx, yy$"):
        fixed_rank(["en", "fr", "de", "sw", "xx", "yy"], 1, SEL_LANGS)
    with pytest.raises(UserError, match=r"^--lang_rank must list each language of the run once: ; missing de, sw$"):
        fixed_rank(["en", "fr"], 1, SEL_LANGS)
    with pytest.raises(UserError, match=r"once: unknown xx; missing sw$"):
        fixed_rank(["en", "fr", "de", "xx"], 1, SEL_LANGS)
    for bad in (0, 4):
        with pytest.raises(UserError, match=rf"^--num_students {bad}: must be between 1 and 3$"):
            fixed_rank(SEL_LANGS, bad, SEL_LANGS)
    assert fixed_rank(SEL_LANGS, 3, SEL_LANGS).teachers == ["en"]


def test_selection_table_rows_by_hand():
    sel = select_teachers(SEL_PROBS, SEL_LANGS)
    lines = selection_table(sel).splitlines()
    assert lines[0] == "rank  lang         s       ŝ   agree  role"
    t = SEL_LANGS.index("sw")
    assert lines[2] == f"   2  sw    {sel.scores[t]:8.4f}{sel.normalized_scores[t]:8.4f}{2 / 3:8.3f}  teacher"
    assert lines[4].startswith("   4  de ") and lines[4].endswith("  student")
    assert lines[5] == "θ = 0.2500" and len(lines) == 6
    bare = selection_table(fixed_rank(["sw", "de", "en", "fr"], 1, SEL_LANGS)).splitlines()
    assert bare[1] == "   1  sw           -       -       -  teacher" and len(bare) == 5


def test_pseudo_labels_are_a_vote_not_the_summed_probability():
    # Two languages vote class 0 narrowly, one votes class 1 with near certainty: summed probability says 1.
    probs = np.array([[[.51, .49]], [[.51, .49]], [[.01, .99]]])
    assert probs.sum(0).argmax(-1).tolist() == [1]
    sel = select_teachers(probs, ["en", "fr", "de"])
    assert sel.agreement == {"en": 1.0, "fr": 1.0, "de": 0.0}  # the pseudo label is class 0
    assert sel.scores == pytest.approx([.51, .51, .01])


def test_fixed_rank_evidence_with_more_items_than_classes():
    probs = np.concatenate([SEL_PROBS, SEL_PROBS[:, :2]], 1)[..., :2]  # (4 languages, 5 items, 2 classes)
    sel = fixed_rank(SEL_LANGS, 1, SEL_LANGS, probs)
    assert sel.num_items == 5 and len(sel.scores) == 4
    labels = [0, 1, 0, 0, 1]  # votes per item over en, fr, de, sw (ties go to the summed probability)
    assert sel.scores == pytest.approx([probs[t, np.arange(5), labels].mean() for t in range(4)])
    assert sel.to_dict()["num_items"] == 5 and sel.to_dict()["teachers"] == ["en", "fr", "de"]


def test_softmax_rows_are_stabilised_one_by_one():
    out = softmax(np.array([[1000.0, 1001.0], [0.0, math.log(3.0)]]))
    np.testing.assert_allclose(out, [[1 / (1 + math.e), math.e / (1 + math.e)], [0.25, 0.75]])


def test_tied_languages_keep_their_given_order_in_the_ranking():
    # 20 languages (more than numpy's insertion-sort cutoff): ten tied high, ten tied low.
    langs = [f"l{i:02d}" for i in range(20)]
    high = [i for i in range(20) if i % 3 != 1][:10]
    probs = np.full((20, 2, 2), 0.5)
    probs[high, :, 0] = 0.9
    probs[high, :, 1] = 0.1
    sel = select_teachers(probs, langs)
    assert sel.ranking == [langs[i] for i in high] + [lang for i, lang in enumerate(langs) if i not in high]
    assert sel.teachers == [langs[i] for i in high]


# ------------------------------------------------------------------------------------------------ metrics

def test_accuracy_of_one_row_and_of_none():
    assert accuracy(np.array([[0.0, 1.0]]), np.array([1])) == 1.0
    assert math.isnan(accuracy(np.zeros((0, 2)), np.array([], dtype=int)))


def test_confusion_matrix_covers_every_class_even_absent_ones():
    out = class_metrics(np.eye(4)[[0, 1, 1]], np.array([0, 1, 0]))
    assert out["confusion_matrix"] == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_disparity_defaults_to_english_and_leaves_undefined_gaps_out():
    accs = {"fr": 0.6, "en": 0.9, "de": 0.5}
    assert disparity(accs)["transfer_gap"] == pytest.approx(0.35)
    assert disparity({"fr": 0.6, "de": 0.5})["transfer_gap"] is None  # no English
    assert disparity({"en": 0.9})["transfer_gap"] is None  # nothing to compare with
    out = disparity(accs, teachers=["en", "fr", "de"], students=[])
    assert out["student_average"] is None and out["teacher_average"] == pytest.approx(2.0 / 3)
    assert "teacher_average" not in disparity(accs)


def test_entropy_of_a_probability_that_underflows_to_zero_is_finite():
    health = prediction_health(np.array([[0.0, -1e4], [0.0, 0.0]]))
    assert health["mean_entropy"] == pytest.approx(math.log(2) / 2)
    assert health["majority_share"] == 1.0


def test_spearman_of_two_items_and_of_a_constant():
    assert spearman([1, 2], [3, 5]) == pytest.approx(1.0)  # centred ranks ±0.5: the denominator is 0.5
    with warnings.catch_warnings():  # a constant score is undefined, quietly (no 0/0 warning in the run's log)
        warnings.simplefilter("error")
        assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
        assert math.isnan(spearman([3, 1, 2], [0.5, 0.5, 0.5]))


def test_spearman_with_a_tie_by_hand():
    # x ranks 1, 2.5, 2.5, 4 (the tie shares 2 and 3); y ranks 1, 3, 2, 4. Centred: x -1.5, 0, 0, 1.5;
    # y -1.5, 0.5, -0.5, 1.5. rho = 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 4], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    assert spearman([1, 2, 2, 4], [4, 2, 3, 1]) == pytest.approx(-4.5 / math.sqrt(22.5))


def test_pool_passes_and_their_inverse_by_hand():
    # The measured settings: 300 x 40 x 2 / (28 x 257) = 3.335; 750 x 40 x 2 / (71 x 229) = 3.690.
    assert pool_passes(300, 40, 28, 257) == pytest.approx(24000 / 7196)
    assert pool_passes(750, 40, 71, 229) == pytest.approx(60000 / 16259)
    assert pool_passes(10, 3, 5, 4) == pytest.approx(3.0)  # 10 x 3 x 2 / 20: each argument in its own place
    assert steps_for_passes(3.3, 40, 71, 229) == 671  # 3.3 x 16259 / 80 = 670.7, rounded up
    assert steps_for_passes(3.7, 40, 28, 257) == 333  # 332.8 -> 333
    assert steps_for_passes(3.0, 3, 5, 4) == 10  # the inverse of the line above: 3 x 20 / 6 = 10 exactly
    assert steps_for_passes(2.0, 40, 2, 40) == 2  # exactly 2 steps: no rounding up past an exact fit
    assert steps_for_passes(1.0, 7, 3, 5) == 2  # 15 / 14 = 1.07: rounded up, not down or to nearest
