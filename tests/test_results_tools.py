"""Significance, aggregation over seeds, plots, tracking and the multi-seed script."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alsace.errors import UserError
from alsace.metrics import disparity
from alsace.report.aggregation import aggregate, aggregate_markdown, check_compatible, load_run
from alsace.report.plots import (DOWN_COLOR, FLAT_COLOR, UP_COLOR, WARN_COLOR, collapsed_languages, gap_colour,
                                 language_accuracy_figure, link_figure, plot_language_accuracy, plot_run,
                                 plot_teacher_selection, title_text)
from alsace.report.results import compare, comparison_markdown, language_scalars
from alsace.report.significance import (RunPredictions, bootstrap_means, holm, paired_significance,
                                        significance_between_runs)
from alsace.tracking import check_report_to
from conftest import cli

REPO = Path(__file__).resolve().parents[1]
LANGS = ("en", "fr", "de")


# ---------------------------------------------------------------- significance


def test_identical_predictions_give_zero_change_and_p_one():
    rng = np.random.default_rng(0)
    correct = {lang: rng.random(50) < 0.6 for lang in LANGS}
    sig = paired_significance(correct, {k: v.copy() for k, v in correct.items()}, num_samples=500)
    for stats in [*sig["per_language"].values(), sig["average"], sig["transfer_gap"]]:
        assert stats["delta"] == 0.0
        assert stats["ci_low"] <= 0.0 <= stats["ci_high"]
        assert stats["p_value"] == 1.0


def test_clear_improvement_excludes_zero_with_small_p():
    before = np.zeros(200, dtype=bool)
    before[:80] = True  # 40 % right
    after = before.copy()
    after[80:140] = True  # 60 more rows right, none lost: +30 points
    sig = paired_significance({"en": before, "fr": before}, {"en": before, "fr": after}, num_samples=2000)
    fr = sig["per_language"]["fr"]
    assert fr["delta"] == pytest.approx(0.30)
    assert fr["ci_low"] > 0.2 and fr["p_value"] == pytest.approx(1 / 2001)
    assert fr["p_holm"] == pytest.approx(2 / 2001)  # two tests, fr's is the smallest p
    assert sig["average"]["delta"] == pytest.approx(0.15) and sig["average"]["ci_low"] > 0
    assert sig["transfer_gap"]["delta"] == pytest.approx(-0.30) and sig["transfer_gap"]["ci_high"] < 0


def test_bootstrap_distribution_matches_hand_computation():
    # d = [1, 1, 0, -1]: resampled means have mean 1/4 and variance var(d)/N = (3/4 - 1/16)/4 = 11/64;
    # all four draws are +1 (mean 1) with probability (2/4)^4 = 1/16.
    reps = bootstrap_means(np.array([1, 1, 0, -1]), 200_000, np.random.default_rng(0))
    assert reps.mean() == pytest.approx(0.25, abs=0.005)
    assert reps.var() == pytest.approx(11 / 64, rel=0.02)
    assert (reps == 1.0).mean() == pytest.approx(1 / 16, abs=0.003)


def test_parallel_items_are_resampled_jointly_across_languages():
    # en and fr change on exactly the same items: the gap's change is 0 on every item, so resampling
    # items jointly gives a gap CI of exactly [0, 0]; resampling languages apart would not.
    d = np.array([True, False, False, False, True, False])
    before = {"en": np.zeros(6, bool), "fr": np.zeros(6, bool)}
    sig = paired_significance(before, {"en": d, "fr": d}, num_samples=1000)
    assert sig["resampling"] == "items jointly across languages"
    assert sig["average"]["delta"] == pytest.approx(2 / 6)
    assert (sig["transfer_gap"]["ci_low"], sig["transfer_gap"]["ci_high"]) == (0.0, 0.0)
    uneven = paired_significance({"en": np.zeros(6, bool), "fr": np.zeros(5, bool)},
                                 {"en": d, "fr": d[:5]}, num_samples=1000)
    assert uneven["resampling"] == "rows within each language"
    assert uneven["transfer_gap"]["delta"] == pytest.approx(2 / 6 - 2 / 5)  # d[:5] keeps both changes
    assert uneven["transfer_gap"]["ci_high"] > uneven["transfer_gap"]["ci_low"]


def test_seeded_and_reproducible():
    rng = np.random.default_rng(1)
    before = {lang: rng.random(300) < 0.5 for lang in LANGS}
    after = {lang: rng.random(300) < 0.55 for lang in LANGS}
    assert paired_significance(before, after, seed=3) == paired_significance(before, after, seed=3)
    assert paired_significance(before, after, seed=3) != paired_significance(before, after, seed=4)


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, 2*0.03, max(1*0.04, 0.06): running maximum keeps the order.
    assert holm(np.array([0.01, 0.04, 0.03])) == pytest.approx([0.03, 0.06, 0.06])
    assert holm(np.array([0.5, 0.9])) == pytest.approx([1.0, 1.0])


def _write_predictions(run_dir: Path, correct: dict, labels: dict, split: str = "test") -> None:
    """Logits whose argmax is the label where `correct`, another class elsewhere."""
    for lang in correct:
        logits = np.zeros((len(labels[lang]), 3), dtype=np.float32)
        predicted = np.where(correct[lang], labels[lang], (labels[lang] + 1) % 3)
        logits[np.arange(len(predicted)), predicted] = 1.0
        (run_dir / "predictions").mkdir(parents=True, exist_ok=True)
        np.save(run_dir / "predictions" / f"{lang}_{split}_logits.npy", logits)
        np.save(run_dir / "predictions" / f"{lang}_{split}_labels.npy", labels[lang])


def test_significance_between_runs_reads_predictions_and_refuses_other_rows(tmp_path):
    labels = {lang: np.arange(40) % 3 for lang in LANGS}
    before = {lang: np.arange(40) < 20 for lang in LANGS}
    after = {lang: np.arange(40) < 30 for lang in LANGS}
    _write_predictions(tmp_path / "b", before, labels)
    _write_predictions(tmp_path / "a", after, labels)
    b, a = (RunPredictions.load(tmp_path / d, "test", list(LANGS)) for d in ("b", "a"))
    sig = significance_between_runs(b, a, "en", num_samples=500)
    assert sig["per_language"]["de"]["delta"] == pytest.approx(0.25)
    _write_predictions(tmp_path / "other", after, {lang: (labels[lang] + 1) % 3 for lang in LANGS})
    other = RunPredictions.load(tmp_path / "other", "test", list(LANGS))
    with pytest.raises(UserError, match="not on the same rows"):
        significance_between_runs(b, other, "en", num_samples=50)


# ---------------------------------------------------------------- fabricated runs


def _results(accs: dict, teachers=None, students=None) -> dict:
    return {"task": "xnli", "split": "test", "model": "m",
            "per_language": {lang: {"accuracy": a, "n": 100, "majority_share": 0.4, "mean_entropy": 1.0}
                             for lang, a in accs.items()},
            **disparity(accs, "en", teachers, students)}


def fake_run(run_dir: Path, seed: int, accs: dict, after: dict | None = None, lr: float = 1e-5,
             init: str = "xlm-roberta-base", significance: dict | None = None) -> Path:
    """A finished run directory: run_args.json, results.json and, with `after`, a distillation record."""
    run_dir.mkdir(parents=True, exist_ok=True)
    args = {"model_args": {"model_name_or_path": init, "head": "prompt"},
            "data_args": {"task": "xnli", "data_dir": "data", "languages": None},
            "training_args": {"seed": seed, "learning_rate": lr, "output_dir": str(run_dir), "logging_steps": 10},
            "resolved": {"languages": list(accs)}}
    (run_dir / "run_args.json").write_text(json.dumps(args))
    if after is None:
        (run_dir / "results.json").write_text(json.dumps(_results(accs)))
        return run_dir
    teachers, students = ["en", "fr"], ["de"]
    before_r, after_r = _results(accs, teachers, students), _results(after, teachers, students)
    (run_dir / "baseline").mkdir(exist_ok=True)
    (run_dir / "baseline" / "results.json").write_text(json.dumps(before_r))
    (run_dir / "results.json").write_text(json.dumps(after_r))
    comp = compare(before_r, after_r, teachers, students)
    if significance is not None:
        comp["significance"] = significance
    (run_dir / "comparison.json").write_text(json.dumps(comp))
    (run_dir / "comparison.md").write_text(comparison_markdown(comp))
    (run_dir / "results.md").write_text("# After\n")
    return run_dir


BEFORE = [{"en": 0.80, "fr": 0.70, "de": 0.60}, {"en": 0.82, "fr": 0.72, "de": 0.59},
          {"en": 0.81, "fr": 0.68, "de": 0.63}]
AFTER = [{"en": 0.80, "fr": 0.72, "de": 0.66}, {"en": 0.81, "fr": 0.73, "de": 0.64},
         {"en": 0.82, "fr": 0.70, "de": 0.65}]


def test_aggregate_distillation_runs_mean_and_std(tmp_path):
    runs = [load_run(fake_run(tmp_path / f"s{seed}", seed, b, a)) for seed, b, a in zip((1, 2, 3), BEFORE, AFTER)]
    check_compatible(runs)
    agg = aggregate(runs)
    de = agg["per_language"]["de"]
    assert de["before"]["mean"] == pytest.approx((0.60 + 0.59 + 0.63) / 3)
    deltas = [0.06, 0.05, 0.02]
    assert de["delta"]["mean"] == pytest.approx(np.mean(deltas))
    assert de["delta"]["std"] == pytest.approx(np.std(deltas, ddof=1))
    gaps_before = [b["en"] - (b["fr"] + b["de"]) / 2 for b in BEFORE]
    assert agg["summary"]["transfer_gap"]["before"]["mean"] == pytest.approx(np.mean(gaps_before))
    assert agg["seeds"] == [1, 2, 3] and de["roles"] == {"student": 3}
    md = aggregate_markdown(agg)
    assert f"| de | student 3/3 | {100 * np.mean([0.60, 0.59, 0.63]):.2f} ± " in md
    assert f"{100 * np.mean(deltas):+.2f} ± {100 * np.std(deltas, ddof=1):.2f}" in md
    # Gap before/after per run by hand: relative change = Δgap / gap_before, averaged over the runs.
    rel = [((a["en"] - (a["fr"] + a["de"]) / 2) - (b["en"] - (b["fr"] + b["de"]) / 2))
           / (b["en"] - (b["fr"] + b["de"]) / 2) for b, a in zip(BEFORE, AFTER)]
    health = agg["health"]
    assert health["transfer_gap_relative_change"]["mean"] == pytest.approx(np.mean(rel))
    assert health["collapsed_languages_per_run"] == [0, 0, 0]
    assert f"transfer gap, relative change: {100 * np.mean(rel):+.2f} ±" in md


def test_aggregate_counts_runs_whose_ci_excludes_zero(tmp_path):
    def sig(low):
        stats = {"delta": 0.01, "ci_low": low, "ci_high": low + 0.02, "p_value": 0.5, "p_holm": 0.5}
        return {"method": "paired bootstrap", "num_samples": 10, "seed": 0, "confidence": 0.95, "resampling": "x",
                "per_language": {lang: stats for lang in LANGS}, "average": stats, "transfer_gap": stats}
    runs = [load_run(fake_run(tmp_path / f"s{i}", i, BEFORE[i], AFTER[i], significance=sig(low)))
            for i, low in enumerate((0.001, -0.01, -0.03))]
    agg = aggregate(runs)
    assert (agg["per_language"]["fr"]["runs_ci_above_0"], agg["per_language"]["fr"]["runs_ci_below_0"]) == (1, 1)
    assert "| 1 / 1 |" in aggregate_markdown(agg)


def test_aggregate_refuses_different_hyperparameters_and_names_them(tmp_path):
    a = fake_run(tmp_path / "a", 1, BEFORE[0], AFTER[0], lr=1e-5)
    b = fake_run(tmp_path / "b", 2, BEFORE[1], AFTER[1], lr=3e-5)
    with pytest.raises(UserError, match=r"training_args\.learning_rate .*1e-05.*3e-05"):
        check_compatible([load_run(a), load_run(b)])
    check_compatible([load_run(a, frozenset({"learning_rate"})), load_run(b, frozenset({"learning_rate"}))])


def test_aggregate_compares_distillation_starting_checkpoints_through_their_runs(tmp_path):
    ft = [fake_run(tmp_path / f"ft{seed}", seed, BEFORE[0], lr=lr) for seed, lr in ((1, 1e-5), (2, 1e-5), (3, 2e-5))]
    ds = [load_run(fake_run(tmp_path / f"ds{i}", i, BEFORE[i], AFTER[i], init=str(ft[i]))) for i in range(3)]
    check_compatible(ds[:2])  # per-seed checkpoints of one fine-tuning configuration
    with pytest.raises(UserError, match=r"init\.training_args\.learning_rate"):
        check_compatible(ds[1:])


def test_aggregate_refuses_reused_seeds_and_mixed_kinds(tmp_path):
    with pytest.raises(UserError, match="seed 1 appears"):
        check_compatible([load_run(fake_run(tmp_path / "a", 1, BEFORE[0], AFTER[0])),
                          load_run(fake_run(tmp_path / "b", 1, BEFORE[1], AFTER[1]))])
    with pytest.raises(UserError, match="mix fine-tuning and distillation"):
        check_compatible([load_run(fake_run(tmp_path / "c", 1, BEFORE[0], AFTER[0])),
                          load_run(fake_run(tmp_path / "d", 2, BEFORE[1]))])
    with pytest.raises(UserError, match="missing"):
        load_run(tmp_path / "nowhere")


def test_distillation_seeds_of_per_seed_checkpoints_are_told_apart_by_both_seeds(tmp_path):
    # Distillation seed 11 from two fine-tuned checkpoints (seeds 1 and 2): two runs, not one run twice.
    for ft_seed in (1, 2):
        fake_run(tmp_path / f"ft{ft_seed}", ft_seed, BEFORE[ft_seed])
    runs = [load_run(fake_run(tmp_path / f"ft{f}-d{d}", d, BEFORE[f], AFTER[f], init=str(tmp_path / f"ft{f}")))
            for f, d in ((1, 11), (2, 11), (2, 2))]
    assert [r["init_seed"] for r in runs] == [1, 2, 2]
    check_compatible(runs)
    agg = aggregate(runs)
    assert agg["seeds"] == [11, 11, 2] and agg["fine_tuning_seeds"] == [1, 2, 2]
    assert "seeds (fine-tuning/distillation) 1/11, 2/11, 2/2. " in aggregate_markdown(agg)
    with pytest.raises(UserError, match="seed 2/11 appears in several runs"):
        check_compatible([*runs, load_run(fake_run(tmp_path / "again", 11, BEFORE[2], AFTER[2],
                                                   init=str(tmp_path / "ft2")))])
    # No starting checkpoint recorded, or a Hub name: no fine-tuning seed, the run's own seed alone.
    bare = fake_run(tmp_path / "bare", 11, BEFORE[0], AFTER[0])
    args = json.loads((bare / "run_args.json").read_text())
    del args["model_args"]
    (bare / "run_args.json").write_text(json.dumps(args))
    assert load_run(bare)["init_seed"] is None and load_run(tmp_path / "again")["init_seed"] == 2
    assert "fine_tuning_seeds" not in aggregate([load_run(fake_run(tmp_path / "hub", 3, BEFORE[0], AFTER[0]))])
    same = aggregate([runs[2]])  # distilled with its own fine-tuning seed: the header names one seed
    assert same["fine_tuning_seeds"] == [2] and ", seeds 2. " in aggregate_markdown(same)


def test_aggregate_cli_on_fine_tuning_runs(tmp_path):
    import aggregate as cli

    dirs = [str(fake_run(tmp_path / f"s{i}", i, BEFORE[i])) for i in range(3)]
    agg = cli.main(["--run_dirs", *dirs, "--output_dir", str(tmp_path / "agg")])
    assert agg["kind"] == "fine-tuning"
    assert agg["per_language"]["fr"]["mean"] == pytest.approx(np.mean([0.70, 0.72, 0.68]))
    saved = json.loads((tmp_path / "agg" / "aggregate.json").read_text())
    assert saved["per_language"]["fr"]["std"] == pytest.approx(np.std([0.70, 0.72, 0.68], ddof=1))
    assert "| fr | 70.00 ± 2.00 |" in (tmp_path / "agg" / "aggregate.md").read_text()


# ---------------------------------------------------------------- comparison table and plots


def test_comparison_table_shows_confidence_intervals():
    before, after = _results(BEFORE[0], ["en"], ["fr", "de"]), _results(AFTER[0], ["en"], ["fr", "de"])
    comp = compare(before, after, ["en"], ["fr", "de"])
    assert "CI" not in comparison_markdown(comp)
    stats = {"delta": 0.06, "ci_low": 0.0123, "ci_high": 0.0987, "p_value": 0.0004, "p_holm": 0.0012}
    comp["significance"] = {"method": "paired bootstrap", "num_samples": 10, "seed": 0, "confidence": 0.95,
                            "resampling": "x", "per_language": {lang: stats for lang in LANGS},
                            "average": stats, "transfer_gap": stats}
    md = comparison_markdown(comp)
    assert "| 95% CI of Δ | p | p (Holm) |" in md
    assert "| de | student | 60.00 | 66.00 | +6.00 |" in md
    assert "| [+1.23, +9.87] | <0.001 | 0.001 |" in md
    assert "| average |" in md and md.count("[+1.23, +9.87]") == 5  # 3 languages, average, gap


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return struct.unpack(">II", data[16:24])  # IHDR width, height


def test_plots_are_valid_pngs_of_sensible_size(tmp_path):
    before, after = _results(BEFORE[0]), _results(AFTER[0])
    plot_language_accuracy(tmp_path / "one.png", before)
    plot_language_accuracy(tmp_path / "two.png", before, after, roles={"en": "teacher", "de": "student"})
    selection = {"languages": list(LANGS), "scores": [0.8, 0.7, 0.6], "normalized_scores": [0.37, 0.33, 0.30],
                 "threshold": 1 / 3, "ranking": list(LANGS), "teachers": ["en"], "students": ["fr", "de"],
                 "agreement": {"en": 0.9, "fr": 0.8, "de": 0.7}, "num_items": 16, "method": "scores"}
    assert plot_teacher_selection(tmp_path / "sel.png", selection) == tmp_path / "sel.png"
    for name in ("one.png", "two.png", "sel.png"):
        for suffix, magic in ((".pdf", b"%PDF"), (".svg", b"<?xml")):  # PDF and SVG beside each PNG
            assert (tmp_path / name).with_suffix(suffix).read_bytes().startswith(magic), (name, suffix)
        width, height = _png_size(tmp_path / name)
        assert 600 <= width <= 3000 and 400 <= height <= 2000, (name, width, height)
        assert 10_000 < (tmp_path / name).stat().st_size < 2_000_000
    assert plot_teacher_selection(tmp_path / "none.png", {**selection, "normalized_scores": []}) is None
    assert not (tmp_path / "none.png").exists()


def test_plot_run_draws_and_links_once(tmp_path):
    run = fake_run(tmp_path / "run", 1, BEFORE[0], AFTER[0])
    selection = {"languages": list(LANGS), "scores": [0.8, 0.7, 0.6], "normalized_scores": [0.37, 0.33, 0.30],
                 "threshold": 1 / 3, "ranking": list(LANGS), "teachers": ["en", "fr"], "students": ["de"],
                 "agreement": {}, "num_items": 16, "method": "scores"}
    (run / "teacher_selection.json").write_text(json.dumps({"selection": selection}))
    assert sorted(p.name for p in plot_run(run)) == ["per_language_accuracy.png", "teacher_selection.png"]
    assert {p.name for p in run.glob("*.pdf")} | {p.name for p in run.glob("*.svg")} == {
        "per_language_accuracy.pdf", "per_language_accuracy.svg", "teacher_selection.pdf", "teacher_selection.svg"}
    plot_run(run)  # a second call must not link twice
    comparison_md = (run / "comparison.md").read_text()
    assert comparison_md.count("](per_language_accuracy.png)") == 1
    assert comparison_md.count("](teacher_selection.png)") == 1
    assert (run / "results.md").read_text().count("](per_language_accuracy.png)") == 1
    link_figure(tmp_path / "new.md", "x.png", "x")
    assert (tmp_path / "new.md").read_text().strip() == "![x](x.png)"


def test_plot_command_redraws_a_finished_run_and_refuses_anything_else(tmp_path):
    run = fake_run(tmp_path / "run", 1, BEFORE[0], AFTER[0])
    plot = [sys.executable, str(REPO / "src" / "plot.py")]
    proc = subprocess.run([*plot, "--run_dir", str(run)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(run / "per_language_accuracy.png")]
    assert (run / "per_language_accuracy.svg").is_file()
    proc = subprocess.run([*plot, "--run_dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: --run_dir {tmp_path}: no results.json there; pass a "
                                                "finished run directory"]


def test_accuracy_figure_starts_at_zero_with_a_chance_line_and_an_outside_legend():
    before, after = _results(BEFORE[0]), _results(AFTER[0])
    for fig in (language_accuracy_figure(before, num_classes=3),
                language_accuracy_figure(before, after, num_classes=3)):
        ax = fig.axes[0]
        assert ax.get_ylim()[0] == 0
        chance = [line for line in ax.get_lines() if line.get_label().startswith("chance 1/3")]
        assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(100 / 3)
        assert ax.get_xlabel().startswith("language")
        assert ax.get_legend().get_bbox_to_anchor().x0 >= ax.get_window_extent().x1  # right of the axes
    no_c = language_accuracy_figure(before).axes[0].get_lines()  # without C: no chance line, no guess
    assert not any(line.get_label().startswith("chance") for line in no_c)


def test_accuracy_title_rounds_like_the_table():
    # 25.154 -> 5.986: the rounded ends differ by 19.16, the stored delta is -19.168 -> -19.17 in the table.
    before = {"average": 0.70004, "transfer_gap": 0.25154, "per_language": {}}
    after = {"average": 0.60006, "transfer_gap": 0.05986, "per_language": {}}
    title = title_text(before, after)
    comp = compare({**_results(BEFORE[0]), **{k: before[k] for k in ("average", "transfer_gap")}},
                   {**_results(AFTER[0]), **{k: after[k] for k in ("average", "transfer_gap")}}, ["en"], ["fr", "de"])
    table = comparison_markdown(comp)
    assert "| transfer_gap | 25.15 | 5.99 | -19.17 |" in table and "| average | 70.00 | 60.01 | -10.00 |" in table
    assert "transfer gap 25.15 → 5.99 (Δ -19.17" in title and "-19.16" not in title
    assert "average 70.00 → 60.01 (Δ -10.00)" in title and "->" not in title


def test_collapse_is_in_the_title_and_the_gap_is_not_green():
    before, after = _results(BEFORE[0]), _results(AFTER[0])
    after["per_language"]["de"] = {**after["per_language"]["de"], "majority_share": 0.98}
    assert collapsed_languages(before, after) == ["de"]
    fig = language_accuracy_figure(before, after)  # collapse computed from the shares
    assert fig.get_suptitle().startswith("PREDICTIONS COLLAPSED in de")
    assert title_text(before, after, collapsed=[]).startswith("Per-language accuracy before → after")
    narrowed = {"ci_low": -0.05, "ci_high": -0.01}
    assert gap_colour(-3.0, narrowed, []) == UP_COLOR  # real narrowing
    assert gap_colour(-3.0, narrowed, ["de"]) == WARN_COLOR  # narrower from collapse: not a result
    assert gap_colour(-3.0, {"ci_low": -0.05, "ci_high": 0.01}, []) == FLAT_COLOR  # CI contains 0
    assert gap_colour(3.0, {"ci_low": 0.01, "ci_high": 0.05}, []) == DOWN_COLOR  # wider


# ---------------------------------------------------------------- tracking


def test_report_to_none_is_fine_and_a_missing_integration_is_one_line(monkeypatch):
    from transformers import TrainingArguments

    assert TrainingArguments(output_dir="unused").report_to == []  # transformers' default: nothing
    check_report_to([])
    monkeypatch.setattr("transformers.integrations.get_available_reporting_integrations", lambda: [])
    with pytest.raises(UserError, match="--report_to tensorboard,wandb: not installed; pip install tensorboard wandb"):
        check_report_to(["tensorboard", "wandb"])
    monkeypatch.setattr("transformers.integrations.get_available_reporting_integrations", lambda: ["tensorboard"])
    check_report_to(["tensorboard"])


def test_language_scalars_by_hand():
    scalars = language_scalars({"en": 0.8, "fr": 0.6, "de": 0.5}, "en")
    assert scalars == pytest.approx({"eval_en_accuracy": 0.8, "eval_fr_accuracy": 0.6, "eval_de_accuracy": 0.5,
                                     "eval_average_accuracy": 1.9 / 3, "eval_transfer_gap": 0.8 - 0.55})
    from_fr = language_scalars({"en": 0.8, "fr": 0.6, "de": 0.5}, "fr")  # the gap is the source language's
    assert from_fr["eval_transfer_gap"] == pytest.approx(0.6 - 0.65)


# ---------------------------------------------------------------- end to end on the tiny model


def test_pipeline_logs_language_scalars_and_writes_significance_and_plots(tmp_path, tiny_mlm, data_dir):
    import distill
    import finetune

    common = cli(task="xnli", data_dir=data_dir, languages="en,fr,de", report_to="none", max_seq_length=96,
                 use_cpu=True, per_device_train_batch_size=8, max_eval_samples=12)
    ft_dir, ds_dir = tmp_path / "ft", tmp_path / "ds"
    finetune.main(cli(*common, model_name_or_path=tiny_mlm, output_dir=ft_dir, max_steps=2, learning_rate="1e-3",
                      eval_strategy="steps", eval_steps=2, max_selection_samples=8, eval_all_dev_languages=True,
                      keep_checkpoints=True))
    history = json.loads((ft_dir / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    logged = next(h for h in history if "eval_fr_accuracy" in h)
    assert logged["step"] == 2 and {"eval_en_accuracy", "eval_de_accuracy", "eval_transfer_gap"} <= set(logged)
    stock = next(h for h in history if "eval_accuracy" in h)  # the Trainer's own English dev evaluation
    assert logged["eval_en_accuracy"] == pytest.approx(stock["eval_accuracy"])
    assert (ft_dir / "per_language_accuracy.png").is_file()
    assert "](per_language_accuracy.png)" in (ft_dir / "results.md").read_text()

    distill.main(cli(*common, model_name_or_path=ft_dir, output_dir=ds_dir, max_steps=2, learning_rate="1e-4",
                     pool_size=8, save_strategy="no"))
    comparison = json.loads((ds_dir / "comparison.json").read_text())
    sig = comparison["significance"]
    assert set(sig["per_language"]) == set(LANGS) and sig["per_language"]["fr"]["n"] == 12
    for lang in LANGS:  # the test's delta is the comparison's delta, computed from the saved predictions
        assert sig["per_language"][lang]["delta"] == pytest.approx(comparison["per_language"][lang]["delta"])
    assert "95% CI of Δ" in (ds_dir / "comparison.md").read_text()
    for name in ("per_language_accuracy.png", "teacher_selection.png"):
        assert _png_size(ds_dir / name)[0] > 0


# ---------------------------------------------------------------- run_script/multiseed.sh


# Records its environment and copies a prepared finished run record into OUTPUT_DIR (no training).
STAGE_STUB = """#!/usr/bin/env bash
set -euo pipefail
echo "$(basename "$0") SEED=$SEED OUTPUT_DIR=$OUTPUT_DIR MODEL_DIR=${MODEL_DIR:-} ARGS=$*" >> "$CALLS"
mkdir -p "$OUTPUT_DIR"
cp -r "$TEMPLATES/$(basename "$0")-$SEED/." "$OUTPUT_DIR/"
"""


def multiseed_with_stubs(tmp_path, stub: str):
    """A copy of run_script/ whose stage scripts are `stub`, beside the real src/; returns the run_script folder."""
    scripts = tmp_path / "repo" / "run_script"
    scripts.mkdir(parents=True)
    shutil.copy(REPO / "run_script" / "multiseed.sh", scripts)
    shutil.copy(REPO / "run_script" / "launch.sh", scripts)
    for name in ("finetuning.sh", "distillation.sh"):
        (scripts / name).write_text(stub)
    (tmp_path / "repo" / "src").symlink_to(REPO / "src")
    return scripts


def test_multiseed_script_runs_both_stages_per_seed_then_aggregates(tmp_path):
    # The real stage scripts train models; stubs record their environment and write finished run records.
    scripts = multiseed_with_stubs(tmp_path, STAGE_STUB)
    out, templates = tmp_path / "out", tmp_path / "templates"
    for seed in (4, 5):
        fake_run(templates / f"finetuning.sh-{seed}", seed, BEFORE[seed % 3])
        fake_run(templates / f"distillation.sh-{seed}", seed, BEFORE[seed % 3], AFTER[seed % 3],
                 init=str(out / f"seed-{seed}" / "finetune"))
    env = {**os.environ, "SEEDS": "4 5", "OUTPUT_ROOT": str(out), "CALLS": str(tmp_path / "calls"),
           "TEMPLATES": str(templates), "PYTHON": sys.executable}
    env.pop("MODEL_DIR", None)
    command = ["bash", str(scripts / "multiseed.sh"), "--max_eval_samples", "7"]
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == [
        f"finetuning.sh SEED=4 OUTPUT_DIR={out}/seed-4/finetune MODEL_DIR= ARGS=--max_eval_samples 7",
        f"distillation.sh SEED=4 OUTPUT_DIR={out}/seed-4/distill MODEL_DIR={out}/seed-4/finetune "
        "ARGS=--max_eval_samples 7",
        f"finetuning.sh SEED=5 OUTPUT_DIR={out}/seed-5/finetune MODEL_DIR= ARGS=--max_eval_samples 7",
        f"distillation.sh SEED=5 OUTPUT_DIR={out}/seed-5/distill MODEL_DIR={out}/seed-5/finetune "
        "ARGS=--max_eval_samples 7",
    ]
    agg = json.loads((out / "aggregate.json").read_text())
    assert agg["kind"] == "distillation" and agg["seeds"] == [4, 5]
    assert agg["per_language"]["fr"]["after"]["mean"] == pytest.approx((AFTER[1]["fr"] + AFTER[2]["fr"]) / 2)
    # A rerun asks every stage again: the entry point, not the folder's files, decides whether the run there is
    # this configuration's finished run ("nothing to do"), an interrupted one (continued) or another (refused).
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    assert (tmp_path / "calls").read_text().splitlines()[4:] == calls
    # A second recipe from the same fine-tuned checkpoints: stage-only variables, its own folder.
    fake_run(templates / "distillation.sh-4", 4, BEFORE[1], AFTER[1], init=str(out / "seed-4" / "finetune"))
    env = {**env, "SEEDS": "4", "DISTILL_NAME": "distill-b", "DISTILL_VARS": "RECIPE=recommended LR=1e-5",
           "FINETUNE_VARS": "LR=1e-4", "AGGREGATE_DIR": str(out / "b")}
    stub = scripts / "distillation.sh"
    stub.write_text(STAGE_STUB.replace("ARGS=$*", "RECIPE=$RECIPE LR=$LR ARGS=$*"))
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    assert (tmp_path / "calls").read_text().splitlines()[8:] == [
        f"finetuning.sh SEED=4 OUTPUT_DIR={out}/seed-4/finetune MODEL_DIR= ARGS=--max_eval_samples 7",
        f"distillation.sh SEED=4 OUTPUT_DIR={out}/seed-4/distill-b MODEL_DIR={out}/seed-4/finetune "
        "RECIPE=recommended LR=1e-5 ARGS=--max_eval_samples 7"]
    assert json.loads((out / "b" / "aggregate.json").read_text())["seeds"] == [4]


# Like STAGE_STUB; a distillation record is chosen by the checkpoint's seed and the distillation seed.
STAGE_STUB_BY_CHECKPOINT = STAGE_STUB.replace(
    '"$TEMPLATES/$(basename "$0")-$SEED/."',
    '"$TEMPLATES/$(basename "$0")-${MODEL_DIR:+$(basename "$(dirname "$MODEL_DIR")")-}$SEED/."')


def test_multiseed_distills_each_checkpoint_once_per_distillation_seed(tmp_path):
    scripts = multiseed_with_stubs(tmp_path, STAGE_STUB_BY_CHECKPOINT)
    out, templates = tmp_path / "out", tmp_path / "templates"
    afters = {}
    for i, seed in enumerate((4, 5)):
        fake_run(templates / f"finetuning.sh-{seed}", seed, BEFORE[i])
        for j, dseed in enumerate((9, 4)):
            afters[seed, dseed] = AFTER[(i + 2 * j) % 3]
            fake_run(templates / f"distillation.sh-seed-{seed}-{dseed}", dseed, BEFORE[i], afters[seed, dseed],
                     init=str(out / f"seed-{seed}" / "finetune"))
    env = {**os.environ, "SEEDS": "4 5", "DISTILL_SEEDS": " 9  4 ", "OUTPUT_ROOT": str(out),
           "CALLS": str(tmp_path / "calls"), "TEMPLATES": str(templates), "PYTHON": sys.executable}
    env.pop("MODEL_DIR", None)
    subprocess.run(["bash", str(scripts / "multiseed.sh")], env=env, check=True, capture_output=True, text=True)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == [line for seed in (4, 5) for line in (
        f"finetuning.sh SEED={seed} OUTPUT_DIR={out}/seed-{seed}/finetune MODEL_DIR= ARGS=",
        *(f"distillation.sh SEED={d} OUTPUT_DIR={out}/seed-{seed}/distill-d{d} MODEL_DIR={out}/seed-{seed}/finetune "
          "ARGS=" for d in (9, 4)))]
    agg = json.loads((out / "aggregate.json").read_text())
    assert agg["num_runs"] == 4 and agg["seeds"] == [9, 4, 9, 4] and agg["fine_tuning_seeds"] == [4, 4, 5, 5]
    assert agg["per_language"]["de"]["after"]["mean"] == pytest.approx(np.mean([a["de"] for a in afters.values()]))
    assert "seeds (fine-tuning/distillation) 4/9, 4/4, 5/9, 5/4." in (out / "aggregate.md").read_text()


def test_seeds_of_a_task_file_compare_its_content_not_its_per_seed_copy(tmp_path):
    """Distillation reads the task file from its checkpoint's copy (one path per seed): the sha256 decides."""
    runs = []
    for seed, sha in ((1, "aa"), (2, "aa"), (3, "bb")):
        run = fake_run(tmp_path / f"s{seed}", seed, BEFORE[seed - 1], AFTER[seed - 1])
        args = json.loads((run / "run_args.json").read_text())
        args["data_args"]["task"] = str(tmp_path / f"ft{seed}" / "alsace_task_file.json")
        args["resolved"]["task_file_sha256"] = sha
        (run / "run_args.json").write_text(json.dumps(args))
        runs.append(load_run(run))
    check_compatible(runs[:2])
    with pytest.raises(UserError, match=r"resolved.task_file_sha256"):
        check_compatible(runs)
    registry = [load_run(fake_run(tmp_path / f"r{seed}", seed, BEFORE[0], AFTER[0])) for seed in (1, 2)]
    args = json.loads((tmp_path / "r2" / "run_args.json").read_text())
    args["data_args"]["task"] = "pawsx"  # a registry task is still compared by name
    (tmp_path / "r2" / "run_args.json").write_text(json.dumps(args))
    with pytest.raises(UserError, match=r"data_args.task"):
        check_compatible([registry[0], load_run(tmp_path / "r2")])


def test_top_fell_warning_names_each_fall_with_its_interval():
    from alsace.report.results import top_fell_warning

    fell = [{"name": "en", "delta": -0.0354, "ci_low": -0.0708, "ci_high": -0.01},
            {"name": "teacher_average", "delta": -0.012, "ci_low": -0.02, "ci_high": -0.001}]
    assert top_fell_warning(fell) == (
        "**WARNING: the top fell significantly: en -3.54 (CI [-7.08, -1.00]); teacher_average -1.20 "
        "(CI [-2.00, -0.10]).** A narrower gap that comes from the top falling is not the method working; "
        "read the gap with this.")
    comparison = {"top_fell": fell[:1]}
    assert top_fell_warning(comparison["top_fell"]).startswith("**WARNING: the top fell significantly: en -3.54 ")
