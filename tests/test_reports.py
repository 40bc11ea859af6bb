"""Reports with asymmetric runs and collapsed languages: every indicator aggregate() and compare() report.

The three fabricated distillation runs differ in every respect that a swapped or inverted count would
hide: roles change between runs, confidence intervals lie above 0 in two runs and below in one (not one
each), one run collapses in two languages, another in one, the third in none.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from alsace.metrics import disparity
from alsace.tasks import get_task
from alsace.report.aggregation import aggregate, aggregate_markdown, load_run, mean_std
from alsace.report.results import compare, comparison_for_terminal, comparison_markdown, is_collapsed

LANGS = ("en", "fr", "de")
# Per run: accuracies before / after, majority-class shares before / after, entropies, roles.
RUNS = [
    {"before": {"en": 0.80, "fr": 0.62, "de": 0.50}, "after": {"en": 0.78, "fr": 0.70, "de": 0.66},
     "share_before": {"en": 0.40, "fr": 0.50, "de": 0.60}, "share_after": {"en": 0.92, "fr": 0.55, "de": 0.85},
     "entropy_before": {"en": 1.0, "fr": 0.9, "de": 0.8}, "entropy_after": {"en": 0.2, "fr": 0.7, "de": 0.4},
     "teachers": ["en", "fr"], "students": ["de"], "spearman": 0.5},
    {"before": {"en": 0.82, "fr": 0.60, "de": 0.52}, "after": {"en": 0.81, "fr": 0.69, "de": 0.61},
     "share_before": {"en": 0.38, "fr": 0.45, "de": 0.58}, "share_after": {"en": 0.40, "fr": 0.50, "de": 0.70},
     "entropy_before": {"en": 1.1, "fr": 1.0, "de": 0.7}, "entropy_after": {"en": 1.0, "fr": 0.9, "de": 0.6},
     "teachers": ["en"], "students": ["fr", "de"], "spearman": 1.0},
    {"before": {"en": 0.79, "fr": 0.65, "de": 0.49}, "after": {"en": 0.80, "fr": 0.60, "de": 0.58},
     "share_before": {"en": 0.41, "fr": 0.52, "de": 0.55}, "share_after": {"en": 0.45, "fr": 0.60, "de": 0.95},
     "entropy_before": {"en": 0.9, "fr": 0.8, "de": 0.9}, "entropy_after": {"en": 0.8, "fr": 0.6, "de": 0.1},
     "teachers": ["en", "de"], "students": ["fr"], "spearman": -0.5},
]
# Collapse flags by hand: run 0 en (0.40 -> 0.92 >= 0.9); run 1 none (de +0.12); run 2 de (0.55 -> 0.95).
# Run 0's de rose +0.25 in share but its accuracy rose too (0.50 -> 0.66): a skew, not a collapse.
COLLAPSED = [["en"], [], ["de"]]
SKEWED = [["de"], [], []]
# Each run's CI of Δ: fr above 0 in runs 0 and 1, below in run 2; de above in all three; en below in run 0
# only; the average above in run 1 only; the transfer gap below in runs 0 and 2.
CI_SIGN = {"en": (-1, 0, 0), "fr": (1, 1, -1), "de": (1, 1, 1), "average": (0, 1, 0), "transfer_gap": (-1, 0, -1)}


def _interval(sign: int) -> dict:
    low, high = {1: (0.01, 0.05), -1: (-0.05, -0.01), 0: (-0.02, 0.02)}[sign]
    return {"delta": (low + high) / 2, "ci_low": low, "ci_high": high, "p_value": 0.04, "p_holm": 0.08}


def _results(run: dict, side: str) -> dict:
    accs = run[side]
    return {"task": "xnli", "split": "test", "model": "m",
            "per_language": {lang: {"accuracy": accs[lang], "n": 100, "majority_share": run[f"share_{side}"][lang],
                                    "mean_entropy": run[f"entropy_{side}"][lang]} for lang in LANGS},
            **disparity(accs, "en", run["teachers"], run["students"])}


def write_run(run_dir: Path, seed: int, run: dict) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "run_args.json").write_text(json.dumps({
        "model_args": {"model_name_or_path": "xlm-roberta-base"}, "data_args": {"task": "xnli"},
        "training_args": {"seed": seed, "output_dir": str(run_dir)}}))
    before, after = _results(run, "before"), _results(run, "after")
    (run_dir / "results.json").write_text(json.dumps(after))
    comp = compare(before, after, run["teachers"], run["students"])
    i = seed - 1
    comp["significance"] = {"method": "paired bootstrap", "num_samples": 10, "seed": 0, "confidence": 0.95,
                            "resampling": "x", "per_language": {lang: _interval(CI_SIGN[lang][i]) for lang in LANGS},
                            "average": _interval(CI_SIGN["average"][i]),
                            "transfer_gap": _interval(CI_SIGN["transfer_gap"][i])}
    comp["selection_quality"] = {"spearman_score_vs_accuracy": run["spearman"], "num_languages": 3}
    (run_dir / "comparison.json").write_text(json.dumps(comp))
    return run_dir


@pytest.fixture
def agg(tmp_path):
    return aggregate([load_run(write_run(tmp_path / f"s{i + 1}", i + 1, run)) for i, run in enumerate(RUNS)])


def gap(accs):
    return accs["en"] - (accs["fr"] + accs["de"]) / 2


def test_compare_flags_each_collapsed_language_of_each_run():
    for run, expected in zip(RUNS, COLLAPSED):
        comp = compare(_results(run, "before"), _results(run, "after"), run["teachers"], run["students"])
        assert comp["collapsed_languages"] == expected
        for lang in LANGS:
            r = comp["per_language"][lang]
            assert r["role"] == ("teacher" if lang in run["teachers"] else "student")
            assert (r["before"], r["after"]) == (run["before"][lang], run["after"][lang])
            assert r["delta"] == pytest.approx(run["after"][lang] - run["before"][lang])
            assert (r["majority_share_before"], r["majority_share_after"]) == (run["share_before"][lang],
                                                                               run["share_after"][lang])
            assert (r["entropy_before"], r["entropy_after"]) == (run["entropy_before"][lang],
                                                                 run["entropy_after"][lang])
            assert r["collapsed"] == (lang in expected)
        assert comp["summary"]["transfer_gap"] == pytest.approx(
            {"before": gap(run["before"]), "after": gap(run["after"]), "delta": gap(run["after"]) - gap(run["before"])})
        assert set(comp["summary"]) == {"average", "transfer_gap", "spread", "std", "teacher_average",
                                        "student_average"}


def test_collapse_thresholds_at_their_edges():
    assert is_collapsed(0.89, 0.90)  # reaches 90 % from below
    assert not is_collapsed(0.90, 0.95)  # was already there and rose by less than 20 points
    assert is_collapsed(0.50, 0.75) and not is_collapsed(0.50, 0.69)  # a rise of 20 points is the edge
    assert is_collapsed(0.25, 0.45)  # exactly +0.2 (0.45 - 0.25 == 0.2 in floats)
    assert not is_collapsed(0.95, 0.40)  # a fall is not a collapse


def test_compare_role_of_a_language_in_neither_list_and_missing_summary_keys():
    run = RUNS[0]
    before, after = _results(run, "before"), _results(run, "after")
    after["student_average"] = None
    comp = compare(before, after, ["en"], ["de"])
    assert comp["per_language"]["fr"]["role"] == "-" and "student_average" not in comp["summary"]


def test_terminal_and_markdown_comparison_mark_the_collapsed_languages():
    run = RUNS[0]
    comp = compare(_results(run, "before"), _results(run, "after"), run["teachers"], run["students"])
    lines = comparison_for_terminal(comp).splitlines()
    flagged = [line.split()[0] for line in lines if line.endswith("COLLAPSED")]
    assert flagged == ["en"]
    assert [line.split()[0] for line in lines if line.endswith("skewed")] == ["de"]
    md = comparison_markdown(comp)
    assert "**WARNING: predictions collapsed in en**" in md
    assert ("Skewed, not collapsed: de (majority-class share up >= 20 points, below 90 %, with accuracy up)."
            in md.splitlines())
    assert "| de | student | 50.00 | 66.00 | +16.00 | 60 → 85 | 0.800 → 0.400 |" in md


def test_aggregate_before_after_delta_and_roles(agg):
    assert agg["kind"] == "distillation" and agg["num_runs"] == 3 and agg["seeds"] == [1, 2, 3]
    for lang in LANGS:
        r = agg["per_language"][lang]
        for side in ("before", "after"):
            values = [run[side][lang] for run in RUNS]
            assert r[side]["mean"] == pytest.approx(np.mean(values))
            assert r[side]["std"] == pytest.approx(np.std(values, ddof=1))
        deltas = [run["after"][lang] - run["before"][lang] for run in RUNS]
        assert r["delta"]["mean"] == pytest.approx(np.mean(deltas))
        assert r["delta"]["values"] == pytest.approx(deltas)
    assert agg["per_language"]["en"]["roles"] == {"teacher": 3}
    assert agg["per_language"]["fr"]["roles"] == {"student": 2, "teacher": 1}
    assert agg["per_language"]["de"]["roles"] == {"student": 2, "teacher": 1}
    gaps = [gap(run["after"]) - gap(run["before"]) for run in RUNS]
    assert agg["summary"]["transfer_gap"]["delta"]["mean"] == pytest.approx(np.mean(gaps))
    teacher_before = [np.mean([run["before"][t] for t in run["teachers"]]) for run in RUNS]
    assert agg["summary"]["teacher_average"]["before"]["values"] == pytest.approx(teacher_before)
    assert set(agg["summary"]) == {"average", "transfer_gap", "spread", "teacher_average", "student_average"}


def test_aggregate_counts_confidence_intervals_above_and_below_zero(agg):
    for key, signs in CI_SIGN.items():
        r = agg["per_language"][key] if key in LANGS else agg["summary"][key]
        assert (r["runs_ci_above_0"], r["runs_ci_below_0"]) == (signs.count(1), signs.count(-1)), key
    # A metric the significance record lacks gets no counts.
    assert "runs_ci_above_0" not in agg["summary"]["spread"]
    md = aggregate_markdown(agg)
    assert " runs with CI > 0 / < 0 |" in md
    assert [line.rsplit("|", 2)[-2].strip() for line in md.splitlines() if line.startswith("| fr |")] == ["2 / 1"]
    assert [line.rsplit("|", 2)[-2].strip() for line in md.splitlines() if line.startswith("| transfer_gap |")] == [
        "0 / 2"]


def test_aggregate_health_indicators(agg):
    health = agg["health"]
    assert health["collapsed_languages_per_run"] == [len(c) for c in COLLAPSED] == [1, 0, 1]
    assert health["skewed_languages_per_run"] == [len(c) for c in SKEWED] == [1, 0, 0]
    assert {lang: h["runs_collapsed"] for lang, h in health["per_language"].items()} == {"en": 1, "fr": 0, "de": 1}
    for lang in LANGS:
        assert health["per_language"][lang]["majority_share_after"] == mean_std(
            [run["share_after"][lang] for run in RUNS])
    assert health["max_majority_share_after"]["values"] == pytest.approx([0.92, 0.70, 0.95])
    assert health["mean_entropy_before"]["values"] == pytest.approx([0.9, 0.9333333, 0.8666667])
    assert health["mean_entropy_after"]["values"] == pytest.approx([1.3 / 3, 2.5 / 3, 1.5 / 3])
    relative = [(gap(run["after"]) - gap(run["before"])) / gap(run["before"]) for run in RUNS]
    assert health["transfer_gap_relative_change"]["values"] == pytest.approx(relative)
    assert health["selection_spearman"]["values"] == pytest.approx([0.5, 1.0, -0.5])
    md = aggregate_markdown(agg)
    assert "- languages flagged as collapsed, per run: 1, 0, 1 (en in 1, de in 1)" in md
    assert ("- languages skewed (share up >= 20 points with accuracy up; not a collapse), per run: 1, 0, 0"
            in md.splitlines())
    assert f"- largest majority-class share after, over languages: {100 * np.mean([0.92, 0.70, 0.95]):.2f} ± " in md
    assert f"- mean prediction entropy over languages: {np.mean([0.9, 2.8 / 3, 2.6 / 3]):.3f} → " \
           f"{np.mean([1.3, 2.5, 1.5]) / 3:.3f}" in md
    assert f"- transfer gap, relative change: {100 * np.mean(relative):+.2f} ± " in md
    assert ("- selection quality (Spearman ρ of the deciding score vs accuracy before; reported, never used): "
            "0.500, 1.000, -0.500 (mean 0.333)") in md.splitlines()


def test_no_relative_gap_change_when_a_gap_before_is_zero(tmp_path):
    runs = [dict(run) for run in RUNS]
    runs[1] = {**runs[1], "before": {"en": 0.60, "fr": 0.70, "de": 0.50}}  # gap before exactly 0
    assert gap(runs[1]["before"]) == 0
    agg = aggregate([load_run(write_run(tmp_path / f"s{i + 1}", i + 1, run)) for i, run in enumerate(runs)])
    assert "transfer_gap_relative_change" not in agg["health"]
    assert "relative change" not in aggregate_markdown(agg)


# ------------------------------------------------------------------ results.json / results.md / tables

def _evaluation():
    """Two languages, three classes: en 3 of 4 right; fr predicts class 0 for every row, 2 of 4 right."""
    logits = {"en": np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=np.float32),
              "fr": np.array([[1.0, 0.0, 0.0]] * 4, dtype=np.float32)}
    labels = {"en": np.array([0, 1, 2, 1]), "fr": np.array([0, 0, 1, 2])}
    return {lang: {"accuracy": float((logits[lang].argmax(-1) == labels[lang]).mean()), "n": 4,
                   "logits": logits[lang], "labels": labels[lang]} for lang in logits}


def test_build_save_and_draw_results(tmp_path, caplog):
    from alsace.report.results import build_results, results_markdown, save_results, table_for_terminal
    from alsace.metrics import calibration, class_metrics, prediction_health

    task = get_task("xnli")
    evaluation = _evaluation()
    with caplog.at_level("INFO", logger="alsace"):
        results = save_results(tmp_path, task, "test", "m1", evaluation, "After", ["en"], ["fr"])
    assert [r.getMessage() for r in caplog.records] == [f"After\n{table_for_terminal(results)}"]
    assert results == build_results(task, "test", "m1", evaluation, ["en"], ["fr"])
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert (results["task"], results["split"], results["model"]) == ("xnli", "test", "m1")
    for lang, r in evaluation.items():
        assert results["per_language"][lang] == {"accuracy": r["accuracy"], "n": 4, **prediction_health(r["logits"]),
                                                 **calibration(r["logits"], r["labels"]),
                                                 **class_metrics(r["logits"], r["labels"])}
        np.testing.assert_array_equal(np.load(tmp_path / "predictions" / f"{lang}_test_logits.npy"), r["logits"])
        np.testing.assert_array_equal(np.load(tmp_path / "predictions" / f"{lang}_test_labels.npy"), r["labels"])
    assert results["transfer_gap"] == pytest.approx(0.75 - 0.5)
    assert results["teacher_average"] == 0.75 and results["student_average"] == 0.5
    en_entropy = results["per_language"]["en"]["mean_entropy"]
    fr_entropy = results["per_language"]["fr"]["mean_entropy"]
    en, fr = results["per_language"]["en"], results["per_language"]["fr"]
    assert (tmp_path / "results.md").read_text() == results_markdown(results, "After")
    later = tmp_path / "later"  # a run's final results.md is written later, with its figures
    save_results(later, task, "test", "m1", evaluation, "After", ["en"], ["fr"], markdown=False)
    assert (later / "results.json").is_file() and not (later / "results.md").exists()
    no_calibration = json.loads(json.dumps(results))
    del no_calibration["per_language"]["en"]["nll"]
    row = [line for line in results_markdown(no_calibration, "After").splitlines() if line.startswith("| en |")][0]
    assert row.endswith(f" | - | {results['per_language']['en']['ece']:.3f} |")  # a value not measured: "-"
    assert results_markdown(results, "After", "**careful**").splitlines() == [
        "# After", "", "Task `xnli`, split `test`, model `m1`.", "", "**careful**", "",
        "| language | accuracy | n | majority-class share | mean entropy | NLL | ECE |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| en | 75.00 | 4 | 50.0 | {en_entropy:.3f} | {en['nll']:.3f} | {en['ece']:.3f} |",
        f"| fr | 50.00 | 4 | 100.0 | {fr_entropy:.3f} | {fr['nll']:.3f} | {fr['ece']:.3f} |",
        "", "| metric | value |", "|---|---:|", "| average | 62.50 |", "| transfer_gap | 25.00 |",
        "| spread | 25.00 |", "| std | 12.50 |", "| teacher_average | 75.00 |", "| student_average | 50.00 |",
        f"| mean_nll | {(en['nll'] + fr['nll']) / 2:.3f} |", f"| mean_ece | {(en['ece'] + fr['ece']) / 2:.3f} |"]
    assert table_for_terminal(results) == "    en      fr\n 75.00   50.00\naverage 62.50  transfer gap 25.00"
    no_gap = {**results, "transfer_gap": None}
    assert table_for_terminal(no_gap) == "    en      fr\n 75.00   50.00"
    assert "| transfer_gap |" not in results_markdown(no_gap, "After")


def _comparison():
    run = RUNS[0]
    comp = compare(_results(run, "before"), _results(run, "after"), run["teachers"], run["students"])
    stats = {lang: {"delta": 0.1, "ci_low": -0.0123, "ci_high": 0.0456, "p_value": 0.0004, "p_holm": 0.0012}
             for lang in LANGS}
    comp["significance"] = {"method": "paired bootstrap", "num_samples": 500, "seed": 3, "confidence": 0.9,
                            "resampling": "items jointly across languages", "per_language": stats,
                            "average": {"delta": 0.1, "ci_low": 0.01, "ci_high": 0.02, "p_value": 0.5}}
    comp["selection_quality"] = {"spearman_score_vs_accuracy": 0.5, "num_languages": 3}
    return comp


def test_comparison_markdown_lines_with_significance():
    from alsace.report.results import COLLAPSE_RISE, COLLAPSE_SHARE, collapse_warning

    comp = _comparison()
    lines = comparison_markdown(comp).splitlines()
    assert lines[:4] == ["# Before -> after self-distillation", "",
                         "Task `xnli`, split `test`. Accuracy in %, Δ in points.", ""]
    assert lines[4] == collapse_warning(["en"]) and lines[5] == ""
    assert (COLLAPSE_SHARE, COLLAPSE_RISE) == (0.9, 0.2)
    assert collapse_warning(["en", "de"]) == (
        "**WARNING: predictions collapsed in en, de** (one class predicted for >= 90% of rows, or its share up by "
        ">= 20 points while accuracy did not rise): a narrower gap from collapsed predictions is not a result. A "
        "moving teacher cannot anchor the student: use RECIPE=recommended (--frozen_teacher) or a lower learning "
        "rate.")
    assert collapse_warning(["de"], True).endswith(  # the advice fits the recipe that ran
        "not a result. The teacher was already frozen (RECIPE=recommended): lower --learning_rate or --max_steps, "
        "and check the teacher selection (selection quality below; --selection_method dawid_skene).")
    del lines[5:7]  # the skew line and its blank line (checked above)
    assert lines[6] == ("| language | role | before | after | Δ | majority share before → after | entropy before → "
                        "after | 90% CI of Δ | p | p (Holm) |")
    assert lines[7] == "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    assert lines[8] == ("| en | teacher | 80.00 | 78.00 | -2.00 | 40 → 92 | 1.000 → 0.200 | [-1.23, +4.56] | <0.001 "
                        "| 0.001 |")
    assert lines[11] == "" and lines[12] == "| metric | before | after | Δ | 90% CI of Δ | p |"
    assert lines[13] == "|---|---:|---:|---:|---:|---:|"
    assert lines[14] == "| average | 64.00 | 71.33 | +7.33 | [+1.00, +2.00] | 0.500 |"
    assert lines[15].startswith("| transfer_gap |") and lines[15].endswith("| | |")  # no test of that metric
    assert lines[-4] == "" and lines[-2] == ""
    assert lines[-3] == ("Selection quality (reported, never used): Spearman ρ between the deciding teacher scores "
                         "(paper) and the test accuracy before distillation, over 3 languages: 0.500.")
    assert lines[-1] == ("CI and p: paired bootstrap over the same test rows (500 resamples, seed 3, items jointly "
                         "across languages); p tests 'no change'; Holm adjusts for testing every language.")
    plain = {k: v for k, v in comp.items() if k not in ("significance", "selection_quality")}
    plain_lines = comparison_markdown(plain).splitlines()
    del plain_lines[5:7]  # the skew line, as above
    assert plain_lines[6].endswith("| entropy before → after |") and plain_lines[7] == "|---|---|---:|---:|---:|---:|---:|"
    assert plain_lines[8] == "| en | teacher | 80.00 | 78.00 | -2.00 | 40 → 92 | 1.000 → 0.200 |"
    assert plain_lines[11:14] == ["", "| metric | before | after | Δ |", "|---|---:|---:|---:|"]
    assert plain_lines[14] == "| average | 64.00 | 71.33 | +7.33 |" and plain_lines[-1].startswith("| student_average |")
    assert "CI and p" not in comparison_markdown(plain)


def test_comparison_for_terminal_exact():
    comp = _comparison()
    lines = comparison_for_terminal(comp).splitlines()
    assert lines[0] == "lang  role       before   after   delta"
    assert lines[1] == "en    teacher     80.00   78.00   -2.00  COLLAPSED"
    assert lines[2] == "fr    teacher     62.00   70.00   +8.00"
    assert lines[4] == "average           64.00   71.33   +7.33"
    assert not any(line.startswith("THE TOP FELL") for line in lines)
    comp["top_fell"] = [{"name": "en", "delta": -0.02, "ci_low": -0.04, "ci_high": -0.001},
                        {"name": "teacher_average", "delta": -0.0125, "ci_low": -0.02, "ci_high": -0.005}]
    assert comparison_for_terminal(comp).splitlines()[-1] == "THE TOP FELL (CI below 0): en -2.00, teacher_average -1.25"


def test_format_p_edges():
    from alsace.report.results import format_p

    assert format_p(0.001) == "0.001" and format_p(0.000999) == "<0.001" and format_p(0.0456) == "0.046"


# ------------------------------------------------------------------ aggregate.md, whole, and the refusals

def _pm(values, signed=False):
    mean, std = 100 * np.mean(values), 100 * np.std(values, ddof=1)
    return (f"{mean:+.2f}" if signed else f"{mean:.2f}") + f" ± {std:.2f}"


def test_aggregate_markdown_whole_distillation_table(agg):
    md = aggregate_markdown(agg)
    assert md.endswith("\n") and not md.endswith("\n\n")
    lines = md[:-1].split("\n")

    def col(lang, side):
        return [run[side][lang] for run in RUNS]

    def delta(lang):
        return [run["after"][lang] - run["before"][lang] for run in RUNS]

    expected = ["# Mean ± std over 3 runs (distillation)", "",
                "Task `xnli`, split `test`, seeds 1, 2, 3. Accuracy in %, std over runs (ddof=1).", "",
                "| language | roles | before | after | Δ | runs with CI > 0 / < 0 |",
                "|---|---|---:|---:|---:|---:|",
                f"| en | teacher 3/3 | {_pm(col('en', 'before'))} | {_pm(col('en', 'after'))} | {_pm(delta('en'), True)} "
                "| 0 / 1 |",
                f"| fr | student 2/3, teacher 1/3 | {_pm(col('fr', 'before'))} | {_pm(col('fr', 'after'))} | "
                f"{_pm(delta('fr'), True)} | 2 / 1 |",
                f"| de | student 2/3, teacher 1/3 | {_pm(col('de', 'before'))} | {_pm(col('de', 'after'))} | "
                f"{_pm(delta('de'), True)} | 3 / 0 |",
                "", "| metric | before | after | Δ | runs with CI > 0 / < 0 |", "|---|---:|---:|---:|---:|"]
    assert lines[:len(expected)] == expected
    rows = lines[len(expected):len(expected) + 5]
    assert [r.split(" |")[0] for r in rows] == ["| average", "| transfer_gap", "| spread", "| teacher_average",
                                                "| student_average"]
    gaps = {side: [gap(run[side]) for run in RUNS] for side in ("before", "after")}
    assert rows[1] == (f"| transfer_gap | {_pm(gaps['before'])} | {_pm(gaps['after'])} | "
                       f"{_pm(np.subtract(gaps['after'], gaps['before']), True)} | 0 / 2 |")
    averages = {side: [np.mean(list(run[side].values())) for run in RUNS] for side in ("before", "after")}
    assert rows[0] == (f"| average | {_pm(averages['before'])} | {_pm(averages['after'])} | "
                       f"{_pm(np.subtract(averages['after'], averages['before']), True)} | 1 / 0 |")
    assert rows[0].split(" | ")[3].startswith("+")  # a rise is signed
    assert rows[2].endswith(" | |")  # spread: no test, an empty cell
    rest = lines[len(expected) + 5:]
    assert rest[:3] == ["", "Collapse indicators and context (read every gap change with these):", ""]
    assert rest[3] == "- languages flagged as collapsed, per run: 1, 0, 1 (en in 1, de in 1)"
    assert len(rest) == 9 and rest[-1].startswith("- selection quality")


def test_aggregate_markdown_without_tests_collapse_or_spread(tmp_path):
    runs = [{**run, "share_after": run["share_before"]} for run in RUNS[:2]]
    loaded = [load_run(write_run(tmp_path / f"s{i + 1}", i + 1, run)) for i, run in enumerate(runs)]
    for r in loaded:
        r["comparison"].pop("significance")
        r["comparison"]["selection_quality"]["spearman_score_vs_accuracy"] = 0.25
    agg = aggregate(loaded)
    lines = aggregate_markdown(agg).splitlines()
    assert lines[4:6] == ["| language | roles | before | after | Δ |", "|---|---|---:|---:|---:|"]
    assert lines[6].startswith("| en | teacher 2/2 | ") and lines[6].count("|") == 6 and lines[6].endswith(" |")
    assert lines[10:12] == ["| metric | before | after | Δ |", "|---|---:|---:|---:|"]
    assert lines[12].startswith("| average | ") and lines[12].count("|") == 5 and lines[12].endswith(" |")
    assert "- languages flagged as collapsed, per run: 0, 0" in lines  # nothing in brackets
    assert lines[-1] == ("- selection quality (Spearman ρ of the deciding score vs accuracy before; reported, never "
                         "used): 0.250, 0.250 (mean 0.250)")


def test_aggregate_of_one_run_has_no_spread(tmp_path):
    (run,) = [load_run(write_run(tmp_path / "s1", 1, RUNS[0]))]
    agg = aggregate([run])
    assert agg["num_runs"] == 1 and agg["run_dirs"] == [str(tmp_path / "s1")] and agg["seeds"] == [1]
    assert agg["per_language"]["en"]["before"] == {"mean": 0.80, "std": None, "values": [0.80]}
    md = aggregate_markdown(agg)
    assert "| en | teacher 1/1 | 80.00 ± n/a | 78.00 ± n/a | -2.00 ± n/a | 0 / 1 |" in md
    assert ("- selection quality (Spearman ρ of the deciding score vs accuracy before; reported, never used): 0.500 "
            "(mean 0.500)\n") in md
    wider = {**RUNS[0], "after": {**RUNS[0]["after"], "en": 0.95}}  # gap 0.24 -> 0.27: +12.5 %
    assert "- transfer gap, relative change: +12.50 ± n/a %" in aggregate_markdown(
        aggregate([load_run(write_run(tmp_path / "wide", 1, wider))]))
    assert mean_std([0.5, 0.7]) == {"mean": pytest.approx(0.6), "std": pytest.approx(0.1414213562), "values": [0.5, 0.7]}


def test_confidence_intervals_touching_zero_count_neither_way(tmp_path):
    from alsace.report.aggregation import _significant

    edge = [{"ci_low": 0.0, "ci_high": 0.1}, {"ci_low": -0.1, "ci_high": 0.0}, {"ci_low": 1e-9, "ci_high": 0.1}]
    assert _significant(edge) == {"runs_ci_above_0": 1, "runs_ci_below_0": 0}
    assert _significant([edge[0], None]) == {}


def _ft_run(run_dir: Path, seed: int, accs: dict, args: dict | None = None) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "run_args.json").write_text(json.dumps(args or {
        "model_args": {"model_name_or_path": "xlm-roberta-base"}, "training_args": {"seed": seed}}))
    results = {"task": "xnli", "split": "test", "model": "m", **disparity(accs, "en"),
               "per_language": {lang: {"accuracy": a} for lang, a in accs.items()}}
    (run_dir / "results.json").write_text(json.dumps(results))
    return run_dir


def test_aggregate_markdown_whole_fine_tuning_table(tmp_path):
    accs = [{"en": 0.9, "fr": 0.7}, {"en": 0.8, "fr": 0.75}]
    agg = aggregate([load_run(_ft_run(tmp_path / f"s{i}", i, a)) for i, a in enumerate(accs)])
    assert agg["kind"] == "fine-tuning" and set(agg["summary"]) == {"average", "transfer_gap", "spread"}
    col = {lang: [a[lang] for a in accs] for lang in ("en", "fr")}
    metric = {"average": [0.8, 0.775], "transfer_gap": [0.2, 0.05], "spread": [0.2, 0.05]}
    assert aggregate_markdown(agg) == "\n".join([
        "# Mean ± std over 2 runs (fine-tuning)", "",
        "Task `xnli`, split `test`, seeds 0, 1. Accuracy in %, std over runs (ddof=1).", "",
        "| language | accuracy |", "|---|---:|", f"| en | {_pm(col['en'])} |", f"| fr | {_pm(col['fr'])} |",
        "", "| metric | value |", "|---|---:|", *[f"| {k} | {_pm(v)} |" for k, v in metric.items()]]) + "\n"


def test_refusals_name_every_run_and_the_difference(tmp_path):
    from alsace.errors import UserError
    from alsace.report.aggregation import check_compatible, run_config

    a = load_run(_ft_run(tmp_path / "a", 1, {"en": 0.9, "fr": 0.7}))
    b = load_run(_ft_run(tmp_path / "b", 2, {"en": 0.9, "fr": 0.7, "de": 0.5}))
    with pytest.raises(UserError, match=re.escape(f"refusing to aggregate runs evaluated on different languages: "
                                                  f"{tmp_path / 'a'}: en,fr, {tmp_path / 'b'}: en,fr,de")):
        check_compatible([a, b])
    c = load_run(_ft_run(tmp_path / "c", 3, {"en": 0.9, "fr": 0.7}))
    c["results"]["split"] = "validation"
    with pytest.raises(UserError, match=re.escape(f"refusing to aggregate runs of different splits: "
                                                  f"{tmp_path / 'a'}: test, {tmp_path / 'c'}: validation")):
        check_compatible([a, c])
    d = load_run(write_run(tmp_path / "d", 2, RUNS[1]))
    with pytest.raises(UserError, match=re.escape(f"refusing to mix fine-tuning and distillation runs: "
                                                  f"{tmp_path / 'a'} (fine-tuning), {tmp_path / 'd'} (distillation)")):
        check_compatible([a, d])
    # Seeds: None twice and 1 twice; the first repeated seed in string order is named.
    runs = [dict(a, seed=None, dir="w"), dict(a, seed=None, dir="x"), dict(a, seed=1, dir="y"), dict(a, seed=1, dir="z")]
    with pytest.raises(UserError, match=re.escape("seed 1 appears in several runs (w: None, x: None, y: 1, z: 1): the "
                                                  "same run twice would understate the spread; pass each seed once")):
        check_compatible(runs)
    # Six differing settings: four named (with <absent> where a run lacks one), then how many more.
    base = {"model_args": {"model_name_or_path": "m"}, "training_args": {"seed": 5}, "notes": {}}
    other = {"model_args": {"model_name_or_path": "m"}, "training_args": {"seed": 6, "learning_rate": 1e-5,
             "warmup_ratio": 0.1, "num_train_epochs": 2, "weight_decay": 0.0}, "notes": {"x": [{"b": 1, "a": 2}]}}
    e = load_run(_ft_run(tmp_path / "e", 5, {"en": 0.9, "fr": 0.7}, base))
    f = load_run(_ft_run(tmp_path / "f", 6, {"en": 0.9, "fr": 0.7}, other))
    with pytest.raises(UserError) as refused:
        check_compatible([e, f])
    assert str(refused.value) == (
        f"refusing to aggregate runs whose settings differ: notes ({tmp_path / 'e'}: {{}}, {tmp_path / 'f'}: <absent>); "
        f"notes.x ({tmp_path / 'e'}: <absent>, {tmp_path / 'f'}: [{{\"a\": 2, \"b\": 1}}]); "
        f"training_args.learning_rate ({tmp_path / 'e'}: <absent>, {tmp_path / 'f'}: 1e-05); "
        f"training_args.num_train_epochs ({tmp_path / 'e'}: <absent>, {tmp_path / 'f'}: 2); and 2 more. "
        "Aggregate only seeds of one configuration, or pass --ignore_fields notes,x,learning_rate,num_train_epochs "
        "if the difference does not change the numbers")
    # Exactly four differences: all named, nothing "more"; a starting checkpoint's field is suggested by its leaf name.
    four = {**base, "training_args": {"seed": 8, "learning_rate": 1e-5, "warmup_ratio": 0.1, "num_train_epochs": 2,
                                      "weight_decay": 0.0}}
    h = load_run(_ft_run(tmp_path / "h", 8, {"en": 0.9, "fr": 0.7}, four))
    with pytest.raises(UserError) as refused:
        check_compatible([e, h])
    assert "more" not in str(refused.value) and f"{tmp_path / 'h'}: 0.0). Aggregate only seeds" in str(refused.value)
    assert str(refused.value).endswith(
        "--ignore_fields learning_rate,num_train_epochs,warmup_ratio,weight_decay if the difference does not change "
        "the numbers")
    e_init = {"model_args": {"model_name_or_path": str(tmp_path / "e")}, "training_args": {"seed": 9}}
    h_init = {"model_args": {"model_name_or_path": str(tmp_path / "h")}, "training_args": {"seed": 10}}
    on_e = load_run(_ft_run(tmp_path / "on_e", 9, {"en": 0.9, "fr": 0.7}, e_init))
    on_h = load_run(_ft_run(tmp_path / "on_h", 10, {"en": 0.9, "fr": 0.7}, h_init))
    with pytest.raises(UserError, match=r"init\.training_args\.learning_rate .*--ignore_fields learning_rate,"):
        check_compatible([on_e, on_h])
    # Lists of objects compare by value, whatever the key order they were written in.
    g = load_run(_ft_run(tmp_path / "g", 7, {"en": 0.9, "fr": 0.7}, {**other, "training_args": {"seed": 7,
                 "learning_rate": 1e-5, "warmup_ratio": 0.1, "num_train_epochs": 2, "weight_decay": 0.0},
                 "notes": {"x": [{"a": 2, "b": 1}]}}))
    check_compatible([f, g])
    assert run_config(tmp_path / "g")["notes.x"] == '[{"a": 2, "b": 1}]'


def test_run_config_follows_the_starting_checkpoints_three_deep(tmp_path):
    from alsace.report.aggregation import run_config

    chain = [tmp_path / f"level{i}" for i in range(5)]
    for i, run_dir in enumerate(chain):
        run_dir.mkdir()
        init = str(chain[i + 1]) if i + 1 < len(chain) else "xlm-roberta-base"
        (run_dir / "run_args.json").write_text(json.dumps(
            {"model_args": {"model_name_or_path": init}, "training_args": {"seed": i, "learning_rate": i / 10}}))
    config = run_config(chain[0])
    assert "model_args.model_name_or_path" not in config
    assert config["init.init.init.training_args.learning_rate"] == "0.3"
    assert config["init.init.init.model_args.model_name_or_path"] == json.dumps(str(chain[4]))  # depth 3: by path
    assert not any(k.startswith("init.init.init.init.") for k in config)
    assert not any(k.endswith(".seed") for k in config)  # a starting checkpoint's seed is ignored too
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "run_args.json").write_text(json.dumps({"training_args": {"accelerator_config": {
        "seed": 3, "split_batches": False}}}))
    assert run_config(tmp_path / "nested") == {"training_args.accelerator_config.split_batches": "false"}  # by leaf
    ignored = run_config(chain[0], frozenset({"model_name_or_path"}))
    assert "init.training_args.learning_rate" in ignored and not any(k.endswith("model_name_or_path") for k in ignored)
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "run_args.json").write_text("{}")
    assert run_config(tmp_path / "bare") == {}
    _ft_run(tmp_path / "noseed", 0, {"en": 0.9}, {"model_args": {"model_name_or_path": "m"}})
    loaded = load_run(tmp_path / "noseed")
    assert loaded["seed"] is None and loaded["dir"] == str(tmp_path / "noseed")
    (tmp_path / "noseed" / "results.json").write_text('{"task": ')
    from alsace.errors import UserError

    with pytest.raises(UserError, match=re.escape(f"{tmp_path / 'noseed' / 'results.json'}: not valid JSON (Expecting "
                                                  "value); the run did not finish writing it")):
        load_run(tmp_path / "noseed")
