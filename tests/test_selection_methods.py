"""Teacher selection when most languages are weak: Dawid-Skene and source-agreement estimates, the source
guard, Dawid-Skene frozen targets, calibration, collapse-vs-skew flags and "the top fell" reporting."""

import json
import math

import numpy as np
import pytest

import distill
from alsace.errors import UserError
from alsace.metrics import calibration, selection_quality, spearman
from alsace.pairs import build_pairs
from alsace.report.aggregation import aggregate, aggregate_markdown
from alsace.report.results import (collapse_flags, collapse_warning, compare, comparison_markdown, is_skew,
                                   top_fell, top_fell_warning)
from alsace.report.significance import paired_significance
from alsace.selection import (dawid_skene, fixed_rank, frozen_targets, guard_source, language_estimates, leave_out,
                              pseudo_labels, select_teachers, softmax, target_accuracy)


def weak_majority_probs(seed: int = 0):
    """8 languages, 3 classes, 400 items. Strong languages (en, fr, de) are right 95/90/85 % of the time but
    unsure (0.45 on their argmax); the weak ones are right 60..40 % of the time, their errors spread over the
    other classes, and they are very sure (0.98). The paper's score (mean probability of the majority label)
    then prefers the confident weak languages; a model of each language's reliability does not."""
    rng = np.random.default_rng(seed)
    langs = ["en", "fr", "de", "w1", "w2", "w3", "w4", "w5"]
    acc = np.array([0.95, 0.90, 0.85, 0.60, 0.55, 0.50, 0.45, 0.40])
    conf = np.array([0.45, 0.45, 0.45, 0.98, 0.98, 0.98, 0.98, 0.98])
    n, c = 400, 3
    truth = rng.integers(0, c, n)
    probs = np.empty((len(langs), n, c))
    true_acc = []
    for t in range(len(langs)):
        right = rng.random(n) < acc[t]
        pred = np.where(right, truth, (truth + rng.integers(1, c, n)) % c)
        probs[t] = (1 - conf[t]) / (c - 1)
        probs[t, np.arange(n), pred] = conf[t]
        true_acc.append((pred == truth).mean())
    return probs, langs, truth, np.array(true_acc)


def test_dawid_skene_ranks_by_reliability_where_the_paper_score_ranks_by_confidence():
    probs, langs, truth, true_acc = weak_majority_probs()
    est = language_estimates(probs, langs, "en")
    assert set(est) == {"paper", "dawid_skene", "source_agreement"}
    assert spearman(est["paper"], true_acc) < 0  # confident weak languages first: the failure mode
    assert spearman(est["dawid_skene"], true_acc) > 0.95
    assert np.abs(est["dawid_skene"] - true_acc).max() < 0.06  # close to the true accuracies, label-free
    expected, posterior = dawid_skene(probs)
    assert np.allclose(est["dawid_skene"], expected)
    # The expected accuracy is the mean posterior probability of each language's own prediction.
    preds = probs.argmax(-1)
    assert expected[3] == pytest.approx(posterior[np.arange(400), preds[3]].mean())
    assert posterior.shape == (400, 3) and np.allclose(posterior.sum(-1), 1)
    assert (posterior.argmax(-1) == truth).mean() > (np.eye(3)[preds].sum(0).argmax(-1) == truth).mean() - 0.01
    # Source agreement by hand: the share of items on which a language predicts what en predicts.
    assert est["source_agreement"][0] == 1.0
    assert est["source_agreement"][4] == pytest.approx((preds[4] == preds[0]).mean())


def test_select_teachers_uses_the_chosen_method_and_records_every_estimate():
    probs, langs, _, _ = weak_majority_probs()
    paper = select_teachers(probs, langs, source_language="en")
    assert "source_agreement" not in select_teachers(probs, langs).estimates  # no source: not computed
    ds = select_teachers(probs, langs, method="dawid_skene", source_language="en")
    agree = select_teachers(probs, langs, method="source_agreement", source_language="en")
    assert paper.selection_method == "paper" and ds.selection_method == "dawid_skene"
    assert set(paper.ranking[:3]) <= {"w1", "w2", "w3", "w4", "w5"}  # the paper's score is fooled here
    assert ds.ranking[:3] == ["en", "fr", "de"] and agree.ranking[0] == "en"
    assert {"en", "fr", "de"} <= set(ds.teachers) and "w5" in ds.students
    # ŝ = softmax(s) of the chosen estimate, θ = their mean, as in the paper.
    s = np.array([ds.estimates["dawid_skene"][lang] for lang in langs])
    assert ds.scores == pytest.approx(s.tolist())
    assert ds.normalized_scores == pytest.approx(softmax(s).tolist())
    assert ds.teachers == [lang for lang in ds.ranking if softmax(s)[langs.index(lang)] >= 1 / len(langs)]
    # Every method's estimates are recorded whichever decides, and they differ.
    assert paper.estimates == ds.estimates and set(paper.estimates) == {"paper", "dawid_skene", "source_agreement"}
    assert paper.scores == pytest.approx([paper.estimates["paper"][lang] for lang in langs])
    with pytest.raises(UserError, match="--selection_method source_agreement"):
        select_teachers(probs, langs, method="source_agreement", source_language="zz")


def test_fixed_rank_records_every_estimate_for_comparison():
    probs, langs, _, _ = weak_majority_probs()
    sel = fixed_rank(langs[::-1], 3, langs, probs, "en")
    assert sel.ranking == langs[::-1] and sel.students == ["de", "fr", "en"]
    assert sel.selection_method == "fixed_rank"
    assert set(sel.estimates) == {"paper", "dawid_skene", "source_agreement"}


def test_source_guard_puts_the_source_first_and_never_on_the_learning_side():
    probs, langs, _, _ = weak_majority_probs()
    paper = select_teachers(probs, langs)
    assert "en" in paper.students  # the paper's score demotes English here
    guarded = guard_source(paper, "en")
    assert guarded.ranking[0] == "en" and guarded.teachers[0] == "en" and guarded.source_guard
    assert guarded.ranking[1:] == [lang for lang in paper.ranking if lang != "en"]
    assert set(guarded.teachers) == set(paper.teachers) | {"en"}
    assert guarded.students == [lang for lang in paper.students if lang != "en"]
    pairs = build_pairs(guarded.ranking, guarded.teachers, guarded.students)
    assert all(b != "en" for _, b in pairs) and sum(a == "en" for a, _ in pairs) == len(langs) - 1
    # By hand: ranking fr, en, de, sw with fr the only teacher.
    sel = fixed_rank(["fr", "en", "de", "sw"], 3, ["en", "fr", "de", "sw"])
    g = guard_source(sel, "en")
    assert (g.ranking, g.teachers, g.students) == (["en", "fr", "de", "sw"], ["en", "fr"], ["de", "sw"])
    with pytest.raises(UserError, match="--source_guard"):
        guard_source(fixed_rank(["fr", "en"], 1, ["en", "fr"]), "en")


def test_leave_out_drops_languages_from_both_sides_and_never_the_source():
    # By hand: ranking en, fr, chr, de, sw; teachers en, fr, chr; students de, sw.
    sel = fixed_rank(["en", "fr", "chr", "de", "sw"], 2, ["en", "fr", "chr", "de", "sw"])
    out = leave_out(sel, ["sw", "chr", "en"], "en")  # the source stays, whatever the list says
    assert (out.ranking, out.teachers, out.students, out.left_out) == (
        sel.ranking, ["en", "fr"], ["de"], ["chr", "sw"])  # left out in ranking order
    assert build_pairs(out.ranking, out.teachers, out.students) == [("en", "fr"), ("en", "de"), ("fr", "de")]
    assert leave_out(sel, [], "en") is sel and leave_out(sel, ["en"], "en").left_out == []
    with pytest.raises(UserError, match="--skip_unreadable: leaving out de, sw leaves no student"):
        leave_out(sel, ["de", "sw"], "en")
    with pytest.raises(UserError, match="leaves no teacher"):
        leave_out(fixed_rank(["fr", "en", "de"], 2, ["en", "fr", "de"]), ["fr"], "en")


def test_skip_unreadable_leaves_a_language_of_identical_pool_rows_out_of_every_pair(tiny_finetuned, data_dir,
                                                                                    tmp_path):
    """Through distill.main: fr's 8 pool rows are one text (1 distinct input < half of 8), so --skip_unreadable
    trains only en-de; the default trains all three pairs of the same ranking."""
    rows = {lang: [json.loads(line) for line in (data_dir / "xnli" / "validation" / f"{lang}.jsonl")
                   .read_text("utf-8").splitlines()[:8]] for lang in ("en", "fr", "de")}
    items = [{"en": {k: rows["en"][i][k] for k in ("premise", "hypothesis")},
              "de": {k: rows["de"][i][k] for k in ("premise", "hypothesis")},
              "fr": {"premise": rows["fr"][0]["premise"], "hypothesis": rows["fr"][0]["hypothesis"]}}
             for i in range(8)]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items), "utf-8")
    base = ["--model_name_or_path", str(tiny_finetuned), "--data_dir", str(data_dir), "--task", "xnli",
            "--languages", "en,fr,de", "--max_seq_length", "96", "--use_cpu", "--report_to", "none",
            "--per_device_train_batch_size", "2", "--learning_rate", "1e-4", "--pool_file", str(pool),
            "--pool_size", "8", "--save_strategy", "no", "--frozen_teacher", "--max_steps", "2",
            "--lang_rank", "en,fr,de", "--num_students", "1", "--max_eval_samples", "6"]
    distill.main(base + ["--output_dir", str(tmp_path / "skip"), "--skip_unreadable", "true"])
    saved = json.loads((tmp_path / "skip" / "teacher_selection.json").read_text())
    assert saved["pairs"] == [["en", "de"]] and saved["selection"]["left_out"] == ["fr"]
    assert (saved["selection"]["teachers"], saved["selection"]["students"]) == (["en"], ["de"])
    comparison = json.loads((tmp_path / "skip" / "comparison.json").read_text())
    assert comparison["left_out"] == ["fr"] and comparison["per_language"]["fr"]["role"] == "-"
    assert "Left out of training (`--skip_unreadable`" in (tmp_path / "skip" / "comparison.md").read_text()
    distill.main(base + ["--output_dir", str(tmp_path / "all")])
    saved = json.loads((tmp_path / "all" / "teacher_selection.json").read_text())
    assert saved["pairs"] == [["en", "fr"], ["en", "de"], ["fr", "de"]] and saved["selection"]["left_out"] == []
    assert "left_out" not in json.loads((tmp_path / "all" / "comparison.json").read_text())


def test_frozen_targets_mixture_is_each_language_and_dawid_skene_the_shared_posterior():
    probs, langs, _, _ = weak_majority_probs()
    logits = {lang: np.log(probs[t]).astype(np.float32) for t, lang in enumerate(langs)}
    mixture = frozen_targets(logits, langs, "mixture")
    assert all(mixture[lang] is logits[lang] for lang in langs)
    ds = frozen_targets(logits, langs, "dawid_skene")
    posterior = dawid_skene(probs)[1]
    for lang in langs:
        assert np.allclose(softmax(ds[lang].astype(np.float64)), posterior / posterior.sum(-1, keepdims=True),
                           atol=1e-5)
    assert ds["en"] is ds["w5"]  # one target per item, whichever language is the teacher side


def test_target_accuracy_by_hand():
    """3 languages, 5 items, 3 classes, gold labels [0, 1, 2, 0, 1]. en predicts 0 1 2 0 2 (4 right); fr and sw
    agree with each other on 1 1 2 2 1 (3 right), so the vote follows them except where all three differ."""
    def onehot(preds, sure):
        p = np.full((len(preds), 3), (1 - sure) / 2)
        p[np.arange(len(preds)), preds] = sure
        return np.log(p)
    logits = {"en": onehot([0, 1, 2, 0, 2], 0.6), "fr": onehot([1, 1, 2, 2, 1], 0.9), "sw": onehot([1, 1, 2, 2, 1], 0.8)}
    labels = np.array([0, 1, 2, 0, 1])
    out = target_accuracy(logits, ["fr", "en", "sw"], "en", labels)
    assert out["majority_vote"] == pytest.approx(3 / 5)  # the vote is fr/sw's 1 1 2 2 1
    assert out["source"] == pytest.approx(4 / 5)  # English alone, not the first language listed (fr: 3 / 5)
    probs = np.stack([softmax(logits[lang]) for lang in ["fr", "en", "sw"]])
    assert out["dawid_skene"] == pytest.approx(float((dawid_skene(probs)[1].argmax(-1) == labels).mean()))
    assert "source" not in target_accuracy(logits, ["fr", "sw"], "en", labels)


def test_frozen_targets_source_is_the_source_language_s_distribution_for_every_language():
    probs, langs, _, _ = weak_majority_probs()
    logits = {lang: np.log(probs[t]).astype(np.float32) for t, lang in enumerate(langs)}
    src = frozen_targets(logits, ["w3", "fr", "w1"], "source", "de")  # de is not itself in the pairs
    assert set(src) == {"w3", "fr", "w1"} and all(src[lang] is logits["de"] for lang in src)
    assert not np.allclose(logits["de"], logits["en"])  # the source named, not the first or a fixed language
    with pytest.raises(ValueError, match="source language's pool logits \\(xx\\)"):
        frozen_targets(logits, langs, "source", "xx")


def test_distill_entry_point_feeds_the_source_language_s_pool_logits_as_every_target(tiny_finetuned, data_dir,
                                                                                      tmp_path, monkeypatch):
    """Through distill.main with --teacher_targets source (English third in --languages): every language's
    frozen target is English's starting pool logits, the rows the self-anchor also holds English to."""
    import alsace.pairs

    seen = {}
    real_init = alsace.pairs.PairDataset.__init__

    def spy(self, pool_features, pairs, seed, **kwargs):
        seen.update(kwargs)
        real_init(self, pool_features, pairs, seed, **kwargs)

    monkeypatch.setattr(alsace.pairs.PairDataset, "__init__", spy)
    base = ["--model_name_or_path", str(tiny_finetuned), "--data_dir", str(data_dir), "--task", "xnli",
            "--max_seq_length", "96", "--use_cpu", "--report_to", "none", "--max_steps", "1",
            "--per_device_train_batch_size", "2", "--pool_size", "6", "--save_strategy", "no", "--frozen_teacher",
            "--teacher_targets", "source", "--max_eval_samples", "4"]
    distill.main(base + ["--languages", "fr,de,en", "--output_dir", str(tmp_path / "kd"),
                         "--anchor_weight", "1", "--anchor_target", "self"])
    english = seen["anchor_logits"]  # the starting checkpoint's English pool logits
    assert set(seen["teacher_logits"]) == {"fr", "de", "en"}
    assert all(np.array_equal(seen["teacher_logits"][lang], english) for lang in ("fr", "de", "en"))
    assert english.shape == (6, 3) and not np.allclose(english, english[:1])  # per-item targets, not one row
    # English is a source the targets need: without it the run stops before any work.
    with pytest.raises(UserError, match="--teacher_targets source takes every target from the source language en"):
        distill.main(base + ["--languages", "fr,de", "--output_dir", str(tmp_path / "no_en")])
    assert not (tmp_path / "no_en").exists()


def test_calibration_by_hand():
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6], [0.9, 0.05, 0.05]]))
    labels = np.array([0, 1, 2, 0])
    out = calibration(logits, labels)
    assert out["nll"] == pytest.approx(-(math.log(0.7) + math.log(0.4) + math.log(0.6) + math.log(0.9)) / 4)
    # 15 bins: confidences 0.7, 0.5, 0.6, 0.9 fall in four different bins; correct = 1, 0, 1, 1.
    assert out["ece"] == pytest.approx((0.3 + 0.5 + 0.4 + 0.1) / 4)
    # Two rows in one bin: |mean correct - mean confidence| weighted by the bin's share.
    two = calibration(np.log(np.array([[0.70, 0.30], [0.72, 0.28], [0.1, 0.9]])), np.array([0, 1, 1]))
    assert two["ece"] == pytest.approx(2 / 3 * abs(0.5 - 0.71) + 1 / 3 * abs(1 - 0.9))


def results(accs, shares, nll=None, ece=None):
    per = {lang: {"accuracy": a, "majority_share": s, "mean_entropy": 1.0 - s, "n": 100}
           for lang, a, s in zip(("en", "fr", "sw"), accs, shares)}
    if nll:
        for lang, v, e in zip(per, nll, ece):
            per[lang].update(nll=v, ece=e)
    out = {"task": "t", "split": "test", "per_language": per, "average": float(np.mean(accs)),
           "transfer_gap": accs[0] - (accs[1] + accs[2]) / 2}
    if nll:
        out.update(mean_nll=float(np.mean(nll)), mean_ece=float(np.mean(ece)))
    return out


def test_collapse_and_skew_are_told_apart():
    assert is_skew(0.30, 0.55, +0.05) and not is_skew(0.30, 0.55, -0.01)  # accuracy must rise
    assert is_skew(0.25, 0.45, +0.01)  # exactly 20 points (0.45 - 0.25 == 0.2 in floats) is a skew
    assert not is_skew(0.25, 0.45, 0.0) and not is_skew(0.70, 0.90, +0.05)  # no rise; 90 % is a collapse
    assert not is_skew(0.30, 0.45, +0.05)  # a rise below 20 points is neither
    assert not is_skew(0.30, 0.92, +0.05)  # one class for >= 90 % of rows is a collapse, accuracy or not
    before = results([0.8, 0.5, 0.4], [0.35, 0.30, 0.30])
    after = results([0.8, 0.6, 0.35], [0.36, 0.55, 0.55])  # fr: share +25 with accuracy up; sw: with accuracy down
    comp = compare(before, after, ["en"], ["fr", "sw"], "en")
    assert comp["skewed_languages"] == ["fr"] and comp["collapsed_languages"] == ["sw"]
    assert collapse_flags(before["per_language"]["fr"], after["per_language"]["fr"]) == (False, True)
    assert comp["per_language"]["sw"]["collapsed"] and not comp["per_language"]["sw"]["skewed"]
    assert comp["source_language"] == "en"
    md = comparison_markdown(comp)
    assert "Skewed, not collapsed: fr" in md and "predictions collapsed in sw" in md
    comp["frozen_teacher"] = True
    comp["skewed_languages"] = ["fr", "de"]
    comp["top_fell"] = [{"name": "en", "delta": -0.03, "ci_low": -0.05, "ci_high": -0.01}]
    lines = comparison_markdown(comp).splitlines()
    assert lines[4:10] == [collapse_warning(["sw"], frozen_teacher=True), "", top_fell_warning(comp["top_fell"]), "",
                           "Skewed, not collapsed: fr, de (majority-class share up >= 20 points, below 90 %, with "
                           "accuracy up).", ""]


def test_unreadable_languages_are_named_with_their_own_advice():
    """A language whose rows tokenise to fewer distinct inputs than half its rows is 'unreadable': a collapse
    there is the tokenizer's limit, and the advice says to leave the language out, not to change the recipe."""
    before = results([0.8, 0.5, 0.4], [0.35, 0.30, 0.50])
    after = results([0.8, 0.6, 0.35], [0.36, 0.32, 0.95])  # sw collapses (95 % one class)
    for res in (before, after):
        res["per_language"]["en"]["distinct_inputs"] = 100
        res["per_language"]["fr"]["distinct_inputs"] = 50  # exactly half: still readable
        res["per_language"]["sw"]["distinct_inputs"] = 49
    comp = compare(before, after, ["en"], ["fr", "sw"], "en")
    assert comp["unreadable_languages"] == ["sw"] and comp["collapsed_languages"] == ["sw"]
    assert (comp["per_language"]["sw"]["distinct_inputs"], comp["per_language"]["sw"]["n"]) == (49, 100)
    lines = comparison_markdown(comp).splitlines()
    assert lines[4] == collapse_warning(["sw"], False, ["sw"]) and lines[5] == ""
    assert lines[6] == ("Few distinct inputs: sw (49 of 100 rows): the tokenizer reads little of these languages, "
                        "so their accuracy says little about the method.")
    assert lines[7] == "" and lines[8].startswith("| language |")
    after["per_language"]["fr"]["distinct_inputs"] = 12
    lines = comparison_markdown(compare(before, after, ["en"], ["fr", "sw"], "en")).splitlines()
    assert lines[6].startswith("Few distinct inputs: fr (12 of 100 rows), sw (49 of 100 rows): the tokenizer")
    after["per_language"]["fr"]["distinct_inputs"] = 50
    only = collapse_warning(["sw"], True, ["sw"])
    assert only.endswith("is not a result. sw: the test rows tokenise to fewer distinct inputs than half the rows "
                         "(the tokenizer reads little of the script), so the model cannot tell the items apart and "
                         "training towards per-item targets ends at the most common class; leave such a language "
                         "out of training (--skip_unreadable, SKIP_UNREADABLE=true) or out of the run (--languages, "
                         "LANGUAGES) rather than change the recipe.")
    both = collapse_warning(["fr", "sw"], True, ["sw"])  # a readable collapse still gets the recipe's advice
    assert "(selection quality below; --selection_method dawid_skene). sw: the test rows tokenise" in both
    assert "fr:" not in both and "lower --learning_rate" not in only
    two = collapse_warning(["fr", "sw"], True, ["sw", "fr"])
    assert "is not a result. fr, sw: the test rows tokenise" in two and "lower --learning_rate" not in two
    assert collapse_warning(["sw"], True) == collapse_warning(["sw"], True, [])  # nothing recorded: as before
    del after["per_language"]["sw"]["distinct_inputs"]  # results written before the count existed
    assert compare(before, after, ["en"], ["fr", "sw"], "en")["unreadable_languages"] == []


def test_collapse_advice_for_a_language_left_out_of_training_and_in_the_log(caplog):
    kept = collapse_warning(["chr"], True, ["chr"], ["chr"])  # unreadable and left out: no training advice
    assert kept.endswith("is not a result. chr: left out of training (--skip_unreadable), so it moved only through "
                         "the weights it shares with the trained languages; its rows are too few distinct inputs for "
                         "its predicted classes to say anything about the method. Leave it out of the run "
                         "(--languages, LANGUAGES) to drop it from the report.")
    mixed = collapse_warning(["fr", "sw", "chr"], True, ["sw", "chr"], ["chr"])
    advice = mixed.split("is not a result. ")[1]
    assert advice.startswith("The teacher was already frozen") and "sw: the test rows tokenise" in advice
    assert "chr: left out of training" in advice and "sw, chr" not in advice and "fr:" not in advice
    assert advice.index("already frozen") < advice.index("sw: the test") < advice.index("chr: left out")
    # distill.py logs the same warning, one line without Markdown, for what actually ran.
    comparison = {"collapsed_languages": ["chr"], "unreadable_languages": ["chr"], "left_out": ["chr"],
                  "per_language": {}, "summary": {}}
    with caplog.at_level("WARNING", logger="alsace.distill"):
        distill.report_outcome(comparison, True)
    [line] = [r.getMessage() for r in caplog.records if "COLLAPSED" in r.getMessage()]
    assert line == kept.replace("**WARNING: predictions collapsed in chr**", "PREDICTIONS COLLAPSED in chr")
    caplog.clear()
    with caplog.at_level("WARNING", logger="alsace.distill"):
        distill.report_outcome({**comparison, "left_out": [], "unreadable_languages": []}, False)
    [line] = [r.getMessage() for r in caplog.records if "COLLAPSED" in r.getMessage()]
    assert "use RECIPE=recommended (--frozen_teacher)" in line and "**" not in line


def test_comparison_names_the_languages_left_out_of_training():
    before = results([0.8, 0.5, 0.4], [0.35, 0.30, 0.50])
    after = results([0.8, 0.6, 0.35], [0.36, 0.95, 0.95])  # fr and sw collapse (95 % one class)
    for res in (before, after):
        for lang, distinct in (("en", 100), ("fr", 10), ("sw", 49)):
            res["per_language"][lang]["distinct_inputs"] = distinct
    comp = {**compare(before, after, ["en"], [], "en"), "frozen_teacher": True, "left_out": ["fr", "sw"]}
    assert comp["collapsed_languages"] == ["fr", "sw"] and comp["per_language"]["sw"]["role"] == "-"
    lines = comparison_markdown(comp).splitlines()
    assert lines[4] == collapse_warning(["fr", "sw"], True, ["fr", "sw"], ["fr", "sw"]) and lines[5] == ""
    assert "is not a result. fr, sw: left out of training (--skip_unreadable), so it moved" in lines[4]
    assert lines[6].startswith("Few distinct inputs: fr (10 of 100 rows), sw (49 of 100 rows)")
    assert lines[7:10] == ["", "Left out of training (`--skip_unreadable`: pool rows with fewer distinct inputs than "
                           "half the items): fr, sw; their role is `-` and they changed only through the shared "
                           "weights.", ""]
    assert lines[10].startswith("| language |")


def test_collapse_advice_fits_the_recipe():
    moving = collapse_warning(["sw"], frozen_teacher=False)
    frozen = collapse_warning(["sw"], frozen_teacher=True)
    assert "--frozen_teacher" in moving and "RECIPE=recommended (--frozen_teacher)" in moving
    assert "already frozen" in frozen and "use RECIPE=recommended" not in frozen


def test_calibration_is_compared_only_when_both_sides_have_it():
    measured = results([0.8, 0.5, 0.4], [0.4, 0.4, 0.4], nll=[0.5, 1.6, 1.9], ece=[0.05, 0.3, 0.4])
    older = results([0.8, 0.6, 0.5], [0.4, 0.4, 0.4])  # written before calibration was recorded
    assert compare(older, measured, ["en"], ["fr", "sw"])["calibration"] == {}
    assert compare(measured, older, ["en"], ["fr", "sw"])["calibration"] == {}


def test_calibration_before_and_after_in_the_comparison():
    before = results([0.8, 0.5, 0.4], [0.4, 0.4, 0.4], nll=[0.5, 1.6, 1.9], ece=[0.05, 0.3, 0.4])
    after = results([0.8, 0.6, 0.5], [0.4, 0.4, 0.4], nll=[0.6, 1.1, 1.2], ece=[0.06, 0.1, 0.12])
    comp = compare(before, after, ["en"], ["fr", "sw"])
    assert comp["calibration"]["mean_nll"] == {"before": pytest.approx(4.0 / 3), "after": pytest.approx(2.9 / 3),
                                              "delta": pytest.approx(-1.1 / 3)}
    assert comp["per_language"]["sw"]["ece_before"] == 0.4 and comp["per_language"]["sw"]["ece_after"] == 0.12
    md = comparison_markdown(comp)
    assert "| mean_nll | 1.333 | 0.967 | -0.367 |" in md and "| sw | 1.900 → 1.200 | 0.400 → 0.120 |" in md
    lines = md.splitlines()
    assert lines[0] == "# Before -> after self-distillation"  # the blocks are appended, nothing replaced
    start = lines.index("Calibration (lower is better): negative log-likelihood and 15-bin expected calibration "
                        "error, mean over languages, then per language.")
    assert lines[start - 1] == "" and lines[start + 1:start + 12] == [
        "", "| metric | before | after | Δ |", "|---|---:|---:|---:|",
        "| mean_nll | 1.333 | 0.967 | -0.367 |", "| mean_ece | 0.250 | 0.093 | -0.157 |",
        "", "| language | NLL before → after | ECE before → after |", "|---|---:|---:|",
        "| en | 0.500 → 0.600 | 0.050 → 0.060 |", "| fr | 1.600 → 1.100 | 0.300 → 0.100 |",
        "| sw | 1.900 → 1.200 | 0.400 → 0.120 |"]


def test_significance_of_the_teacher_average_and_the_numbers_before_it_unchanged():
    rng = np.random.default_rng(3)
    before = {lang: rng.random(50) < p for lang, p in (("en", 0.8), ("fr", 0.6), ("sw", 0.4))}
    after = {"en": before["en"].copy(), "fr": before["fr"] | (rng.random(50) < 0.3), "sw": before["sw"].copy()}
    after["en"][:10] = False  # en loses rows
    plain = paired_significance(before, after, "en", num_samples=2000)
    with_t = paired_significance(before, after, "en", num_samples=2000, teachers=["en", "fr"])
    assert "teacher_average" not in plain
    assert with_t["per_language"] == plain["per_language"] and with_t["transfer_gap"] == plain["transfer_gap"]
    d = {lang: after[lang].astype(int) - before[lang].astype(int) for lang in before}
    assert with_t["teacher_average"]["delta"] == pytest.approx((d["en"].mean() + d["fr"].mean()) / 2)


def test_the_top_fell_only_when_the_whole_interval_is_below_zero():
    sig = {"per_language": {"en": {"delta": -0.02, "ci_low": -0.04, "ci_high": 0.0}},
           "teacher_average": {"delta": -0.02, "ci_low": -0.04, "ci_high": -0.0001}}
    assert [f["name"] for f in top_fell({"significance": sig}, "en")] == ["teacher_average"]


def test_the_top_falling_is_reported():
    sig = {"per_language": {"en": {"delta": -0.09, "ci_low": -0.13, "ci_high": -0.05},
                            "fr": {"delta": -0.05, "ci_low": -0.09, "ci_high": -0.01}},
           "teacher_average": {"delta": -0.01, "ci_low": -0.03, "ci_high": 0.01}}
    fell = top_fell({"significance": sig}, "en")
    assert fell == [{"name": "en", "delta": -0.09, "ci_low": -0.13, "ci_high": -0.05}]  # fr is not the top
    sig["teacher_average"] = {"delta": -0.02, "ci_low": -0.04, "ci_high": -0.005}
    assert [f["name"] for f in top_fell({"significance": sig}, "en")] == ["en", "teacher_average"]
    assert top_fell({"significance": sig}, "fr")[0]["name"] == "fr"
    assert top_fell({}, "en") == []


def test_the_figure_never_paints_a_narrowing_green_when_english_fell():
    from alsace.report.plots import UP_COLOR, WARN_COLOR, language_accuracy_figure

    before = results([0.80, 0.50, 0.40], [0.4, 0.4, 0.4])
    after = results([0.70, 0.56, 0.48], [0.4, 0.4, 0.4])  # gap 35 -> 18: narrower because en fell
    stats = lambda d, lo, hi: {"delta": d, "ci_low": lo, "ci_high": hi, "p_value": 0.01}  # noqa: E731
    sig = {"confidence": 0.95, "per_language": {"en": stats(-0.1, -0.15, -0.05), "fr": stats(0.06, 0.01, 0.1),
                                                "sw": stats(0.08, 0.02, 0.12)},
           "average": stats(0.013, -0.01, 0.03), "transfer_gap": stats(-0.17, -0.22, -0.12)}
    fig = language_accuracy_figure(before, after, sig, source_language="en", num_classes=3)
    assert fig._suptitle.get_text().startswith("THE TOP FELL: en -10.00")
    gap_bar = fig.axes[1].patches[-1]
    assert gap_bar.get_facecolor()[:3] != pytest.approx(__import__("matplotlib.colors").colors.to_rgb(UP_COLOR))
    assert gap_bar.get_facecolor()[:3] == pytest.approx(__import__("matplotlib.colors").colors.to_rgb(WARN_COLOR))
    sig["per_language"]["en"] = stats(-0.01, -0.03, 0.01)  # en within noise: the narrowing is green again
    fig = language_accuracy_figure(before, after, sig, source_language="en", num_classes=3)
    assert fig.axes[1].patches[-1].get_facecolor()[:3] == pytest.approx(
        __import__("matplotlib.colors").colors.to_rgb(UP_COLOR))


def test_aggregate_reports_english_per_run_calibration_and_every_selection_method():
    def comp(en_delta, fell, nll_after, rho):
        before = results([0.8, 0.5, 0.4], [0.4, 0.4, 0.4], nll=[0.5, 1.5, 1.9], ece=[0.1, 0.3, 0.4])
        after = results([0.8 + en_delta, 0.6, 0.5], [0.4, 0.4, 0.4], nll=nll_after, ece=[0.1, 0.2, 0.2])
        c = compare(before, after, ["en"], ["fr", "sw"], "en")
        c["top_fell"] = [{"name": "en", "delta": en_delta, "ci_low": -0.1, "ci_high": -0.01}] if fell else []
        c["selection_quality"] = {"spearman_score_vs_accuracy": rho["dawid_skene"], "num_languages": 3,
                                  "by_method": rho, "method": "dawid_skene"}
        return {"dir": f"r{en_delta}", "results": after, "comparison": c, "seed": en_delta, "config": {}}

    runs = [comp(-0.09, True, [0.5, 1.0, 1.2], {"paper": 0.5, "dawid_skene": 0.97}),
            comp(+0.01, False, [0.6, 1.2, 1.4], {"paper": 0.9, "dawid_skene": 1.0})]
    health = aggregate(runs)["health"]
    assert "selection_spearman_pool_accuracy" not in health
    runs[0]["comparison"]["selection_quality"]["pool_accuracy_reference"] = 0.8
    assert "selection_spearman_pool_accuracy" not in aggregate(runs)["health"]  # only when every run has it
    runs[1]["comparison"]["selection_quality"]["pool_accuracy_reference"] = 0.6
    assert aggregate(runs)["health"]["selection_spearman_pool_accuracy"]["values"] == [0.8, 0.6]
    assert ("  - reference, the pool's labelled accuracy (not label-free): 0.800, 0.600\n"
            in aggregate_markdown(aggregate(runs)))
    assert health["source_delta"]["values"] == pytest.approx([-0.09, 0.01])
    assert health["runs_top_fell"] == [["en"], []]
    assert health["calibration"]["mean_nll"]["after"]["values"] == pytest.approx([2.7 / 3, 3.2 / 3])
    assert health["calibration"]["mean_nll"]["before"]["mean"] == pytest.approx(3.9 / 3)
    assert health["selection_spearman_by_method"]["paper"]["values"] == [0.5, 0.9]
    md = aggregate_markdown(aggregate(runs))
    assert "- en (the source language), Δ per run: -9.00, +1.00; the top fell significantly in run(s) 1 (en)\n" in md
    assert "  - paper: 0.500, 0.900" in md
    assert "- mean_nll over languages: 1.300 → 0.983 (Δ per run: -0.400, -0.233)\n" in md
    three = [runs[0], runs[1], comp(-0.05, True, [0.5, 1.1, 1.3], {"paper": 0.6, "dawid_skene": 0.9})]
    three[0]["comparison"]["top_fell"].append({"name": "teacher_average", "delta": -0.03, "ci_low": -0.05,
                                               "ci_high": -0.01})
    md = aggregate_markdown(aggregate(three))
    assert ("- en (the source language), Δ per run: -9.00, +1.00, -5.00; the top fell significantly in run(s) "
            "1 (en, teacher_average), 3 (en)\n") in md
    md = aggregate_markdown(aggregate([runs[1], comp(+0.02, False, [0.6, 1.2, 1.4], {"paper": 0.9,
                                                                                    "dawid_skene": 1.0})]))
    assert "- en (the source language), Δ per run: +1.00, +2.00; the top fell significantly in no run\n" in md


def test_selection_quality_per_method_by_hand():
    q = selection_quality(["en", "fr", "sw"], [0.5, 0.3, 0.2], {"sw": 0.4, "en": 0.9, "fr": 0.6},
                          {"paper": {"en": 0.1, "fr": 0.3, "sw": 0.2}, "dawid_skene": {"en": 0.9, "fr": 0.5, "sw": 0.4}})
    assert q["spearman_score_vs_accuracy"] == pytest.approx(1.0)
    assert q["by_method"] == {"paper": pytest.approx(-0.5), "dawid_skene": pytest.approx(1.0)}
    assert "pool_accuracy_reference" not in q
    # The labelled reference: pool accuracy en 0.7 > sw 0.5 > fr 0.2 against test en > fr > sw: ranks
    # (3, 1, 2) vs (3, 2, 1) give 1 - 6 * 2 / (3 * 8) = 0.5.
    q = selection_quality(["en", "fr", "sw"], [0.5, 0.3, 0.2], {"sw": 0.4, "en": 0.9, "fr": 0.6},
                          pool_accuracy={"fr": 0.2, "sw": 0.5, "en": 0.7})
    assert q["pool_accuracy_reference"] == pytest.approx(0.5) and "by_method" not in q


def test_teacher_targets_need_a_frozen_teacher_and_methods_are_checked(tmp_path):
    base = ["--model_name_or_path", "unused", "--output_dir", str(tmp_path / "o")]
    with pytest.raises(UserError, match="--teacher_targets dawid_skene needs --frozen_teacher"):
        distill.main(base + ["--teacher_targets", "dawid_skene"])
    with pytest.raises(UserError, match="--selection_method 'vote'"):
        distill.main(base + ["--selection_method", "vote"])
    assert not (tmp_path / "o").exists()


def test_distill_entry_point_feeds_the_dawid_skene_targets_and_guards_the_source(tiny_finetuned, data_dir,
                                                                                  tmp_path, monkeypatch, caplog):
    """Through distill.main: the selection method decides, the source is first, and every pair's frozen target is
    the Dawid-Skene posterior of the starting checkpoint's own pool predictions (recomputed here independently)."""
    import alsace.pairs
    from alsace.evaluation import score_languages
    from alsace.features import Collator, Featurizer, encode_cached
    from alsace.data import load_pool, load_split
    from alsace.checkpoint import CheckpointInfo, placeholder_count
    from alsace.modeling import load_tokenizer_and_model
    from alsace.tasks import get_task

    seen = {}
    real_init = alsace.pairs.PairDataset.__init__

    def spy(self, pool_features, pairs, seed, **kwargs):
        seen.update(pairs=pairs, teacher_logits=kwargs.get("teacher_logits"))
        real_init(self, pool_features, pairs, seed, **kwargs)

    monkeypatch.setattr(alsace.pairs.PairDataset, "__init__", spy)
    out = tmp_path / "kd"
    langs = ["en", "fr", "de"]
    with caplog.at_level("WARNING", logger="alsace.distill"):
        distill.main(["--model_name_or_path", str(tiny_finetuned), "--data_dir", str(data_dir), "--output_dir",
                      str(out), "--task", "xnli", "--languages", ",".join(langs), "--max_seq_length", "96",
                      "--use_cpu", "--report_to", "none", "--max_steps", "2", "--per_device_train_batch_size", "4",
                      "--learning_rate", "1e-4", "--pool_size", "8", "--save_strategy", "no", "--frozen_teacher",
                      "--selection_method", "dawid_skene", "--source_guard", "--teacher_targets", "dawid_skene"])
    # 2 steps x 4 pairs x 2 sides over 3 languages x 8 items = 0.67 passes; 3.69 passes need ceil(11.07) = 12 steps.
    assert ("--max_steps 2 x 4 pairs per step shows each of the 3 languages' 8 pool items only 0.7 times on average "
            "(fewer with more languages); the recommended recipe trains 3.69 passes: unset MAX_STEPS and keep "
            "POOL_PASSES (--pool_passes 3.69), or raise MAX_STEPS (--max_steps) to about 12") in [r.getMessage() for r in caplog.records]
    saved = json.loads((out / "teacher_selection.json").read_text())["selection"]
    assert saved["selection_method"] == "dawid_skene" and saved["source_guard"] is True
    assert saved["ranking"][0] == "en" and "en" in saved["teachers"]
    assert set(saved["estimates"]) == {"paper", "dawid_skene", "source_agreement"}
    assert saved["scores"] == pytest.approx([saved["estimates"]["dawid_skene"][lang] for lang in langs])
    assert all(b != "en" for _, b in seen["pairs"])

    # An independent recomputation of the starting checkpoint's pool logits, in eval mode.
    task = get_task("xnli")
    k = placeholder_count(CheckpointInfo.read(tiny_finetuned), task, None)
    tokenizer, model = load_tokenizer_and_model(str(tiny_finetuned), "prompt", task, k)
    featurizer = Featurizer(tokenizer, task, "prompt", 96, k, "en", is_seq2seq=False, languages=tuple(langs))
    pool = load_pool(task, langs, str(data_dir), 8, None, False)
    feats = {lang: encode_cached(featurizer, rows, lang, cache_dir=None).to_list() for lang, rows in pool.items()}
    logits = score_languages(model, feats, Collator(tokenizer.pad_token_id), 8, "cpu")
    posterior = dawid_skene(np.stack([softmax(logits[lang]) for lang in langs]))[1]
    expected = np.log(np.clip(posterior, 1e-6, None))
    for lang in langs:
        assert np.allclose(seen["teacher_logits"][lang], expected, atol=1e-5)

    comp = json.loads((out / "comparison.json").read_text())
    assert set(comp["selection_quality"]["by_method"]) == {"paper", "dawid_skene", "source_agreement"}
    assert comp["selection_quality"]["method"] == "dawid_skene" and comp["frozen_teacher"] is True
    assert "teacher_average" in comp["significance"] and isinstance(comp["top_fell"], list)
    after = json.loads((out / "results.json").read_text())
    assert {"nll", "ece"} <= set(after["per_language"]["fr"]) and "mean_nll" in after
    for lang in langs:  # the test rows' distinct token sequences, counted from an independent encoding
        rows = load_split(task, "test", lang, str(data_dir))
        distinct = len({tuple(featurizer.encode_row(r, lang)["input_ids"]) for r in rows})
        assert after["per_language"][lang]["distinct_inputs"] == distinct == comp["per_language"][lang]["distinct_inputs"]
    assert comp["unreadable_languages"] == []
    # English's flips, counted from the two saved prediction files of the run
    y = np.load(out / "predictions" / "en_test_labels.npy")
    b = np.load(out / "baseline" / "predictions" / "en_test_logits.npy").argmax(1)
    a = np.load(out / "predictions" / "en_test_logits.npy").argmax(1)
    assert {k: comp["source_changes"][k] for k in ("n", "right_to_wrong", "wrong_to_right", "changed")} == {
        "n": len(y), "right_to_wrong": int(((b == y) & (a != y)).sum()), "wrong_to_right": int(((b != y) & (a == y)).sum()),
        "changed": int((b != a).sum())}
    assert comp["source_changes"]["source_accuracy_before"] == pytest.approx(comp["per_language"]["en"]["before"])
    assert "\n\nen's change is made of flipped rows:" in (out / "comparison.md").read_text()  # its own paragraph
    assert set(comp["calibration"]) == {"mean_nll", "mean_ece"}
    assert "| selection method | Spearman ρ vs accuracy before |" in (out / "comparison.md").read_text()

    # The pool's own labels (validation rows, read only for this report): each language's accuracy on them,
    # and the ρ of that ranking against the test accuracy before distillation.
    labels = {lang: np.array([r["label"] for r in load_split(task, "validation", lang, str(data_dir))[:8]])
              for lang in langs}
    pool_acc = {lang: float((logits[lang].argmax(1) == labels[lang]).mean()) for lang in langs}
    assert saved["pool_accuracy"] == pytest.approx(pool_acc)
    # Each per-item target's accuracy on those labels: the majority vote, the posterior and English alone.
    probs = np.stack([softmax(logits[lang]) for lang in langs])
    assert saved["target_accuracy"] == pytest.approx({
        "majority_vote": float((pseudo_labels(probs) == labels["en"]).mean()),
        "dawid_skene": float((posterior.argmax(-1) == labels["en"]).mean()),
        "source": pool_acc["en"]})
    assert comp["pool_targets"] == {"accuracy": pytest.approx(saved["target_accuracy"]), "trained_on": "dawid_skene"}
    assert "this run trained towards `dawid_skene`." in (out / "comparison.md").read_text()
    before_acc = [comp["per_language"][lang]["before"] for lang in langs]
    assert len(set(pool_acc.values())) > 1 and len(set(before_acc)) > 1  # a defined, non-trivial ρ
    assert comp["selection_quality"]["pool_accuracy_reference"] == pytest.approx(
        spearman([pool_acc[lang] for lang in langs], before_acc))


def test_equal_scores_under_the_default_threshold_say_why_and_what_to_do():
    """θ = mean: only languages that all score the same leave no student; the message must not advise 'the mean'."""
    probs = np.tile(np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]]), (3, 1, 1))
    probs[1] = probs[1][:, [0, 1, 2]] * 0.999 + 0.001 / 3  # same argmax everywhere: Dawid–Skene ties them
    with pytest.raises(UserError, match=r"^--selection_method dawid_skene: the 3 languages scored the same .*"
                                        r"--lang_rank and --num_students$"):
        select_teachers(probs, ["en", "fr", "de"], None, method="dawid_skene")
    select_teachers(probs, ["en", "fr", "de"], None, method="paper")  # the soft score still separates them


def test_calibration_bins_edges_one_row_no_row_and_an_absent_class():
    # 2 bins, (0, 0.5] and (0.5, 1]: confidences 0.5 | 0.6, 0.9; correct 1 | 0, 1 (class 1 never gold).
    probs = np.array([[0.5, 0.3, 0.2], [0.6, 0.3, 0.1], [0.05, 0.05, 0.9]])
    out = calibration(np.log(probs), np.array([0, 2, 2]), num_bins=2)
    assert out["ece"] == pytest.approx(1 / 3 * abs(1 - 0.5) + 2 / 3 * abs(0.5 - 0.75))
    assert out["nll"] == pytest.approx(-(math.log(0.5) + math.log(0.1) + math.log(0.9)) / 3)
    one = calibration(np.log(np.array([[0.2, 0.8]])), np.array([0]))  # a single row is a valid input
    assert one["nll"] == pytest.approx(-math.log(0.2)) and one["ece"] == pytest.approx(0.8)
    empty = calibration(np.zeros((0, 3)), np.array([], dtype=int))
    assert set(empty) == {"nll", "ece"} and math.isnan(empty["nll"]) and math.isnan(empty["ece"])


def test_dawid_skene_is_crowd_kit_s_with_items_in_order_and_unpredicted_classes_at_zero():
    import pandas as pd
    from crowdkit.aggregation import DawidSkene

    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, size=40)  # class 3 of 4 is never the answer and never predicted
    accuracy = [0.9, 0.7, 0.5, 0.35]
    preds = np.stack([np.where(rng.random(40) < a, truth, rng.integers(0, 3, size=40)) for a in accuracy])
    probs = np.eye(4)[preds] * 0.7 + 0.075  # (T=4, N=40, C=4): each row sums to 1, argmax = the prediction
    expected, posterior = dawid_skene(probs)
    answers = pd.DataFrame({"task": np.tile(np.arange(40), 4), "worker": np.repeat(np.arange(4), 40),
                            "label": preds.ravel()})
    reference = DawidSkene(n_iter=100, tol=1e-5).fit(answers).probas_  # crowd-kit's defaults, stated
    assert posterior.shape == (40, 4) and (posterior[:, 3] == 0).all()
    np.testing.assert_allclose(posterior[:, :3], reference.loc[np.arange(40), [0, 1, 2]].to_numpy())
    np.testing.assert_allclose(expected, [posterior[np.arange(40), preds[t]].mean() for t in range(4)])
    assert list(np.argsort(-expected)) == [0, 1, 2, 3]  # the reliable languages first


@pytest.mark.parametrize("parallel", [True, False])
def test_the_teacher_average_interval_is_drawn_last_from_the_teacher_items(parallel):
    from alsace.report.significance import bootstrap_means, summarize

    rng = np.random.default_rng(5)
    sizes = {"en": 40, "fr": 40, "sw": 40} if parallel else {"en": 40, "fr": 30, "sw": 20}
    before = {lang: rng.random(n) < 0.6 for lang, n in sizes.items()}
    after = {lang: np.where(rng.random(n) < 0.3, ~before[lang], before[lang]) for lang, n in sizes.items()}
    out = paired_significance(before, after, "en", num_samples=500, seed=7, teachers=["fr", "sw"])
    diffs = {lang: after[lang].astype(float) - before[lang].astype(float) for lang in sizes}
    draws = np.random.default_rng(7)  # the same stream, drawn in the same order: languages, average, gap, teachers
    reps = {lang: bootstrap_means(diffs[lang], 500, draws) for lang in sizes}
    if parallel:
        d = np.stack([diffs[lang] for lang in sizes])
        bootstrap_means(d.mean(0), 500, draws)
        bootstrap_means(d[0] - d[1:].mean(0), 500, draws)
        t_items = d[1:].mean(0)
        expected = summarize(t_items.mean(), bootstrap_means(t_items, 500, draws), 0.95)
    else:
        expected = summarize((diffs["fr"].mean() + diffs["sw"].mean()) / 2,
                             np.stack([reps["fr"], reps["sw"]], 1).mean(1), 0.95)
    assert out["teacher_average"] == expected
    assert out["teacher_average"]["delta"] == pytest.approx((diffs["fr"].mean() + diffs["sw"].mean()) / 2)


def test_the_selection_quality_block_of_comparison_md():
    before = results([0.8, 0.5, 0.4], [0.4, 0.4, 0.4])
    after = results([0.8, 0.6, 0.5], [0.4, 0.4, 0.4])
    comp = compare(before, after, ["en"], ["fr", "sw"])
    comp["selection_quality"] = {"spearman_score_vs_accuracy": 0.5, "num_languages": 3,
                                 "by_method": {"paper": 0.5, "dawid_skene": 1.0}}
    lines = comparison_markdown(comp).splitlines()
    assert lines[0] == "# Before -> after self-distillation"
    start = lines.index("Selection quality (reported, never used): Spearman ρ between the deciding teacher scores "
                        "(paper) and the test accuracy before distillation, over 3 languages: 0.500.")
    assert lines[start - 1] == "" and lines[start + 1:start + 6] == [
        "", "| selection method | Spearman ρ vs accuracy before |", "|---|---:|", "| paper | 0.500 |",
        "| dawid_skene | 1.000 |"]
    comp["selection_quality"]["method"] = "dawid_skene"
    assert "teacher scores (dawid_skene) and the test accuracy" in comparison_markdown(comp)
    assert "Reference (uses the pool's labels" not in comparison_markdown(comp)
    comp["selection_quality"]["pool_accuracy_reference"] = 0.875
    lines = comparison_markdown(comp).splitlines()
    at = lines.index("| dawid_skene | 1.000 |")
    assert lines[at + 1] == "" and lines[at + 2] == (
        "Reference (uses the pool's labels, so not a selection method): ranking the languages by their accuracy "
        "on the pool's own labels gives ρ = 0.875 against the test accuracy; a label-free estimate from this pool "
        "can hardly rank better (both accuracies are noisy samples).")
    assert "Per-item targets" not in comparison_markdown(comp)
    comp["pool_targets"] = {"accuracy": {"majority_vote": 0.743, "dawid_skene": 0.8191, "source": 0.841},
                            "trained_on": "source"}
    assert "the source language alone 84.1 % right" in comparison_markdown(comp)  # none recorded
    comp["source_language"] = "en"
    lines = comparison_markdown(comp).splitlines()
    assert lines[lines.index(lines[at + 2]) + 1] == "" and lines[lines.index(lines[at + 2]) + 2] == (
        "Per-item targets on the pool's own labels (reported, never used): majority vote 74.3 % right, "
        "Dawid–Skene posterior 81.9 % right, en alone 84.1 % right; this run trained towards `source`.")
    comp["pool_targets"]["trained_on"] = None
    assert comparison_markdown(comp).splitlines()[-1].endswith(
        "en alone 84.1 % right; this run's targets were the moving network's own (no frozen teacher).")


def test_distinct_inputs_count_token_sequences_not_rows(monkeypatch):
    """evaluate_languages counts each language's different token sequences (duplicates once, order kept)."""
    import alsace.evaluation as evaluation

    feats = {"en": [{"input_ids": [1, 2, 3], "labels": 0}, {"input_ids": [1, 2, 3], "labels": 1},
                    {"input_ids": [1, 2, 4], "labels": 1}, {"input_ids": [3, 2, 1], "labels": 0}],
             "fr": [{"input_ids": [5], "labels": 0}, {"input_ids": [5], "labels": 1},
                    {"input_ids": [5], "labels": 1}, {"input_ids": [5, 5], "labels": 0}]}
    # A multiple-choice row (XCOPA's classification head) holds one sequence per candidate.
    feats["mc"] = [{"input_ids": [[1, 2], [1, 3]], "labels": 0}, {"input_ids": [[1, 2], [1, 3]], "labels": 1},
                   {"input_ids": [[1, 2], [1, 4]], "labels": 1}, {"input_ids": [[1, 3], [1, 2]], "labels": 0}]
    logits = {lang: np.log(np.array([[0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.9, 0.1]])) for lang in feats}
    monkeypatch.setattr(evaluation, "score_languages", lambda *a, **k: logits)
    out = evaluation.evaluate_languages(None, feats, None, 8, "cpu")
    assert (out["en"]["distinct_inputs"], out["fr"]["distinct_inputs"], out["mc"]["distinct_inputs"]) == (3, 2, 3)
    assert out["en"]["n"] == 4 and out["en"]["accuracy"] == 1.0


def test_exposure_warning_by_hand():
    from types import SimpleNamespace


    def args(max_steps, batch=40, world=1, accumulation=1):
        return SimpleNamespace(max_steps=max_steps, per_device_train_batch_size=batch, world_size=world,
                               gradient_accumulation_steps=accumulation)

    assert distill.exposure_warning(args(300), 28, 257) is None  # 3.3 passes
    assert distill.exposure_warning(args(-1), 71, 229) is None  # epochs decide (the original recipe)
    warning = distill.exposure_warning(args(300), 71, 229)  # 300 x 80 / 16259 = 1.48
    assert warning.startswith("--max_steps 300 x 40 pairs per step shows each of the 71 languages' 229 pool items "
                              "only 1.5 times on average") and warning.endswith("to about 750")
    assert distill.exposure_warning(args(300, world=2), 71, 229) is None  # 80 pairs per step: 2.95 passes
    assert "x 120 pairs per step" in distill.exposure_warning(args(100, accumulation=3), 71, 229)  # 1.48 passes
    assert distill.exposure_warning(args(407), 71, 229) is None and distill.exposure_warning(args(406), 71, 229)


def test_pool_passes_set_the_steps_by_hand():
    from types import SimpleNamespace

    def args(max_steps, batch=40, world=1, accumulation=1):
        return SimpleNamespace(max_steps=max_steps, per_device_train_batch_size=batch, world_size=world,
                               gradient_accumulation_steps=accumulation)

    # 3.7 x 28 x 257 / 80 = 332.8 -> 333; 3.7 x 71 x 229 / 80 = 751.98 -> 752.
    a = args(-1)
    assert distill.steps_from_passes(a, 3.7, 28, 257) == ("--pool_passes 3.7: 333 steps x 40 pairs per step over "
                                                         "28 languages x 257 pool items") and a.max_steps == 333
    a = args(-1)
    distill.steps_from_passes(a, 3.7, 71, 229)
    assert a.max_steps == 752
    a = args(-1, world=2, accumulation=2)  # 160 pairs per step: 3.7 x 16259 / 320 = 187.99 -> 188
    distill.steps_from_passes(a, 3.7, 71, 229)
    assert a.max_steps == 188
    a = args(-1, batch=8)  # 2.0 passes over 2 languages x 40 items with 8 pairs a step: exactly 10 steps
    distill.steps_from_passes(a, 2.0, 2, 40)
    assert a.max_steps == 10
    a = args(600)  # an explicit --max_steps wins, and the log says how many passes it gives
    assert distill.steps_from_passes(a, 3.7, 28, 257) == ("--max_steps 600 given: --pool_passes 3.7 is not used "
                                                         "(6.67 passes)") and a.max_steps == 600
    a = args(-1)
    assert distill.steps_from_passes(a, 0.0, 28, 257) is None and a.max_steps == -1  # off: epochs decide


def test_pool_passes_decide_the_steps_through_the_entry_point(tiny_finetuned, data_dir, tmp_path, caplog):
    """distill.main with --pool_passes and no --max_steps trains ceil(P x T x N / (2 x pairs per step)) steps,
    with the warmup as a share of those steps; a negative value is refused before any work."""
    out = tmp_path / "kd"
    base = ["--model_name_or_path", str(tiny_finetuned), "--data_dir", str(data_dir), "--task", "xnli",
            "--languages", "en,fr,de", "--max_seq_length", "96", "--use_cpu", "--report_to", "none",
            "--per_device_train_batch_size", "4", "--learning_rate", "1e-4", "--pool_size", "8",
            "--save_strategy", "no", "--frozen_teacher", "--num_train_epochs", "50", "--warmup_steps", "0.5"]
    with caplog.at_level("INFO", logger="alsace.distill"):
        distill.main(base + ["--output_dir", str(out), "--pool_passes", "1.5"])
    # 1.5 x 3 languages x 8 items / (2 x 4 pairs) = 4.5 -> 5 steps (50 epochs would be hundreds).
    assert ("--pool_passes 1.5: 5 steps x 4 pairs per step over 3 languages x 8 pool items"
            in [r.getMessage() for r in caplog.records])
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == state["max_steps"] == 5
    assert json.loads((out / "training_args.json").read_text())["max_steps"] == 5
    assert json.loads((out / "run_config.json").read_text())["distill_args"]["pool_passes"] == 1.5
    with pytest.raises(UserError, match=r"--pool_passes -1.0 \(POOL_PASSES in run_script/distillation.sh\): must be >= 0"):
        distill.main(base + ["--output_dir", str(tmp_path / "bad"), "--pool_passes", "-1"])
    assert not (tmp_path / "bad").exists()
