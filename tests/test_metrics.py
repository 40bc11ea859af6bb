"""Disparity metrics against hand computations."""

import numpy as np
import pytest

from alsace.metrics import accuracy, class_metrics, disparity, prediction_health


def test_disparity_by_hand():
    accs = {"en": 0.90, "fr": 0.80, "sw": 0.60, "ur": 0.70}
    d = disparity(accs, "en", teachers=["en", "fr"], students=["sw", "ur"])
    assert d["average"] == pytest.approx(0.75)            # (0.9 + 0.8 + 0.6 + 0.7) / 4
    assert d["transfer_gap"] == pytest.approx(0.20)       # 0.9 - (0.8 + 0.6 + 0.7) / 3
    assert d["spread"] == pytest.approx(0.30)             # 0.9 - 0.6
    assert d["std"] == pytest.approx(np.sqrt((0.15**2 + 0.05**2 + 0.15**2 + 0.05**2) / 4))
    assert d["teacher_average"] == pytest.approx(0.85) and d["student_average"] == pytest.approx(0.65)


def test_accuracy_and_health():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert accuracy(logits, np.array([0, 1, 1, 0])) == pytest.approx(0.75)  # the all-zero row argmaxes to 0
    health = prediction_health(logits)
    assert health["majority_share"] == pytest.approx(0.75)
    uniform = np.log(3)
    assert 0 < health["mean_entropy"] < uniform
    assert prediction_health(np.zeros((5, 3)))["mean_entropy"] == pytest.approx(uniform)


def test_collapse_flags():
    from alsace.report.results import is_collapsed

    assert is_collapsed(0.35, 0.95)        # one class for 95% of rows
    assert is_collapsed(0.30, 0.70)        # partial collapse: share up 40 points
    assert not is_collapsed(0.42, 0.27)    # predictions spread out
    assert not is_collapsed(0.92, 0.95)    # was already one-class before: not caused by distillation
    assert not is_collapsed(0.30, 0.45)


def test_spearman_by_hand():
    from alsace.metrics import selection_quality, spearman

    # Ranks x: 1 2 3 4, y: 1 3 2 4 -> d^2 = 0 + 1 + 1 + 0 = 2, rho = 1 - 6*2 / (4 * 15) = 0.8
    assert spearman([0.1, 0.2, 0.3, 0.4], [10, 30, 20, 40]) == pytest.approx(0.8)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # Ties: x ranks (1.5, 1.5, 3), y ranks (1, 2, 3): Pearson of (-.5,-.5,1) and (-1,0,1) = 1.5 / sqrt(1.5*2)
    assert spearman([5, 5, 7], [1, 2, 3]) == pytest.approx(1.5 / (1.5 * 2) ** 0.5)
    q = selection_quality(["en", "fr", "sw"], [0.5, 0.3, 0.2], {"sw": 0.4, "en": 0.9, "fr": 0.6})
    assert q == {"spearman_score_vs_accuracy": pytest.approx(1.0), "num_languages": 3}


def test_macro_f1_and_confusion_matrix_by_hand():
    labels = np.array([0, 0, 1, 1, 2])
    logits = np.eye(3)[[0, 1, 1, 1, 0]]  # predictions 0 1 1 1 0
    out = class_metrics(logits, labels)
    # F1 per class: 0: P=1/2 R=1/2 -> 0.5; 1: P=2/3 R=1 -> 0.8; 2: never predicted, missed once -> 0.
    assert out["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert out["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]  # row = gold, column = predicted
    # A class neither gold nor predicted (an absent candidate) does not count in the average.
    assert class_metrics(np.eye(4)[[0, 1]], np.array([0, 1]))["macro_f1"] == pytest.approx(1.0)


def test_dev_table_is_compact():
    from alsace.report.results import dev_table, language_scalars

    table = dev_table(language_scalars({"en": 0.9, "fr": 0.75, "de": 0.7}, "en"))
    assert table.splitlines() == ["    en      fr      de", " 90.00   75.00   70.00",
                                  "average 78.33  transfer gap 17.50"]
