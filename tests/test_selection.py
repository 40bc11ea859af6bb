"""Teacher selection against a hand-computed 3-language x 4-item x 3-class example."""

import math

import numpy as np
import pytest

from alsace.errors import UserError
from alsace.selection import fixed_rank, pseudo_labels, score_spread_warning, select_teachers, selection_table
from alsace.tasks import get_task

LANGS = ["en", "fr", "de"]
PROBS = np.array([
    # item0            item1            item2            item3
    [[.7, .2, .1], [.1, .8, .1], [.6, .3, .1], [.2, .2, .6]],   # en: argmax 0 1 0 2
    [[.6, .3, .1], [.2, .7, .1], [.1, .5, .4], [.3, .3, .4]],   # fr: argmax 0 1 1 2
    [[.2, .5, .3], [.3, .3, .4], [.2, .2, .6], [.5, .4, .1]],   # de: argmax 1 2 2 0
])


def test_pseudo_labels_majority_and_tie():
    # item2 is a three-way tie (0, 1, 2): summed probabilities 0.9, 1.0, 1.1 -> class 2.
    assert pseudo_labels(PROBS).tolist() == [0, 1, 2, 2]


def test_scores_softmax_and_split_by_hand():
    sel = select_teachers(PROBS, LANGS)
    s = [(.7 + .8 + .1 + .6) / 4, (.6 + .7 + .4 + .4) / 4, (.2 + .3 + .6 + .1) / 4]  # 0.55, 0.525, 0.30
    z = sum(math.exp(v) for v in s)
    assert sel.scores == pytest.approx(s)
    assert sel.normalized_scores == pytest.approx([math.exp(v) / z for v in s])
    assert sel.threshold == pytest.approx(1 / 3)  # mean of a softmax over 3 languages
    assert sel.ranking == ["en", "fr", "de"]
    assert sel.teachers == ["en", "fr"] and sel.students == ["de"]
    assert sel.agreement == pytest.approx({"en": 0.75, "fr": 0.75, "de": 0.25})
    assert sel.num_items == 4 and "teacher" in selection_table(sel)


def test_float_threshold():
    sel = select_teachers(PROBS, LANGS, threshold=0.36)  # ŝ = 0.363, 0.354, 0.283
    assert sel.teachers == ["en"] and sel.students == ["fr", "de"]


@pytest.mark.parametrize("theta, which", [(0.5, "no teacher"), (0.1, "no student")])
def test_threshold_leaving_an_empty_side_is_refused(theta, which):
    with pytest.raises(UserError, match=which):
        select_teachers(PROBS, LANGS, threshold=theta)


def test_original_fixed_rank_presets():
    xnli = get_task("xnli")
    sel = fixed_rank(list(xnli.lang_rank), xnli.num_students, list(xnli.languages))
    assert sel.teachers == ["en", "fr", "bg", "es", "de", "vi", "ru"]
    assert sel.students == ["el", "zh", "th", "tr", "hi", "ar", "ur", "sw"]
    pawsx = get_task("pawsx")
    assert fixed_rank(list(pawsx.lang_rank), 5, list(pawsx.languages)).teachers == ["en", "es"]
    with pytest.raises(UserError, match="unknown xx"):
        fixed_rank(["en", "xx", "fr", "de"], 1, LANGS)
    with pytest.raises(UserError, match="--num_students 3"):
        fixed_rank(LANGS, 3, LANGS)


def test_scores_too_close_to_separate_are_warned_with_the_spread():
    """An untuned model scores every language alike (s equal to 1e-4): the split is noise, and the warning
    says by how much the normalised scores differ."""
    s = np.array([0.3300, 0.3301, 0.3299, 0.3300, 0.33005, 0.32995, 0.3300])
    spread = float(np.ptp(np.exp(s) / np.exp(s).sum()))
    warning = score_spread_warning((np.exp(s) / np.exp(s).sum()).tolist())
    assert warning is not None and "TOO CLOSE" in warning and f"{spread:.2e}" in warning and "1/7" in warning
    realistic = np.array([0.85, 0.80, 0.78, 0.75, 0.72, 0.70, 0.66])  # a fine-tuned model's spread
    assert score_spread_warning((np.exp(realistic) / np.exp(realistic).sum()).tolist()) is None


def test_paper_threshold_without_a_teacher_says_why():
    """PAWS-X: 7 languages, θ = 0.2 and realistic ŝ (0.13-0.16): the error explains the softmax bound."""
    probs = np.zeros((7, 1, 2))
    probs[:, 0, 0] = [0.95, 0.93, 0.92, 0.90, 0.88, 0.86, 0.80]
    probs[:, 0, 1] = 1 - probs[:, 0, 0]
    with pytest.raises(UserError, match=r"leaves no teacher.*at most e/\(e\+T−1\) = 0\.312 and near 1/T = 0\.143"):
        select_teachers(probs, list("abcdefg"), threshold=0.2)


def test_paper_threshold_is_refused_before_any_work_when_no_score_can_reach_it(tmp_path):
    """XCOPA: 12 languages, e/(e+11) = 0.198 < θ = 0.2, so no scores at all can give a teacher."""
    import distill

    with pytest.raises(UserError, match=r"θ = 0.2 for xcopa can leave no teacher with 12 languages.*= 0\.198"):
        distill.main(["--model_name_or_path", str(tmp_path / "m"), "--task", "xcopa", "--data_dir", str(tmp_path),
                      "--output_dir", str(tmp_path / "out"), "--teacher_threshold", "paper", "--use_cpu"])
    assert not (tmp_path / "out").exists()


def test_score_bounds_by_hand():
    from alsace.selection import max_normalized_score, min_normalized_score, score_bound

    # T = 4: one language at s = 1 and three at 0 gives e / (e + 3); one at 0 and three at 1 gives 1 / (1 + 3e).
    assert max_normalized_score(4) == pytest.approx(math.e / (math.e + 3))
    assert min_normalized_score(4) == pytest.approx(1 / (1 + 3 * math.e))
    assert min_normalized_score(2) == pytest.approx(1 / (1 + math.e))  # two languages: the bounds mirror
    assert min_normalized_score(2) + max_normalized_score(2) == pytest.approx(1.0)
    assert score_bound(4) == f"ŝ = softmax(s) with s in [0, 1] is at most e/(e+T−1) = {math.e / (math.e + 3):.3f}"
    assert score_bound(9, name_t=True) == ("ŝ = softmax(s) over T = 9 languages with s in [0, 1] is at most "
                                           f"e/(e+T−1) = {math.e / (math.e + 8):.3f}")


def test_a_selection_saves_and_loads_itself(tmp_path):
    import json

    from alsace.selection import Selection

    probs = np.array([[[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]],
                      [[0.6, 0.4], [0.4, 0.6], [0.3, 0.7]],
                      [[0.2, 0.8], [0.9, 0.1], [0.5, 0.5]]])  # (T=3, N=3, C=2)
    selection = select_teachers(probs, ["en", "fr", "sw"])
    pairs = [("en", "fr"), ("en", "sw")]
    selection.save(tmp_path / "teacher_selection.json", pairs)
    saved = json.loads((tmp_path / "teacher_selection.json").read_text("utf-8"))
    assert saved == {"selection": selection.to_dict(), "pairs": [list(p) for p in pairs], "num_pairs": 2}
    assert Selection.load(tmp_path / "teacher_selection.json") == selection
