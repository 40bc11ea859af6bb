"""A finished run's report, written once, in one pass, from the in-memory results.

`comparison_report` builds the before -> after comparison of a distillation run (comparison.json). Then
`write_run_report` draws the figures first, writes results.md and comparison.md with their figure links,
comparison.json, and last the run record (run_args.json, environment.json) with the model card, which
carries both markdown files, figure links included. `alsace.report.plots.plot_run` (src/plot.py) redraws
the figures of a run directory from its files.
"""

from __future__ import annotations

from pathlib import Path

from alsace.files import write_json, write_text
from alsace.metrics import selection_quality
from alsace.report.plots import (ACCURACY_PNG, SELECTION_PNG, infer_num_classes, plot_language_accuracy,
                                 plot_teacher_selection)
from alsace.report.results import collapse_warning, compare, comparison_markdown, results_markdown, top_fell
from alsace.report.run_record import write_run_record
from alsace.report.significance import RunPredictions, significance_between_runs, source_changes


def comparison_report(before: dict, after: dict, selection, source_language: str, baseline_dir, output_dir,
                      split: str, languages: list[str], frozen_teacher: bool,
                      teacher_targets: str | None = None) -> dict:
    """comparison.json: before -> after per language, the selection's quality, the paired bootstrap on the
    saved per-row predictions of the same test rows, whether the top fell, whether the teacher was frozen, and
    (when the pool has labels) how often each kind of per-item target is right on it and which one was trained
    on (`teacher_targets`, with a frozen teacher)."""
    comparison = compare(before, after, selection.teachers, selection.students, source_language)
    if selection.normalized_scores:  # how well label-free scoring ranked the languages (reported, never used)
        # The deciding score: the chosen method's ŝ, or for a fixed ranking its order (best first).
        deciding = (selection.normalized_scores if selection.method == "scores"
                    else [-selection.ranking.index(lang) for lang in selection.languages])
        comparison["selection_quality"] = {**selection_quality(
            selection.languages, deciding, {lang: r["accuracy"] for lang, r in before["per_language"].items()},
            selection.estimates, selection.pool_accuracy), "method": selection.selection_method}
    saved_before, saved_after = (RunPredictions.load(d, split, languages) for d in (baseline_dir, output_dir))
    comparison["significance"] = significance_between_runs(saved_before, saved_after, source_language,
                                                           teachers=selection.teachers)
    if source_language in languages:
        comparison["source_changes"] = source_changes(saved_before, saved_after, source_language)
    comparison["top_fell"] = top_fell(comparison, source_language)
    comparison["frozen_teacher"] = frozen_teacher
    if getattr(selection, "target_accuracy", None):  # the pool's labels exist (evaluation only)
        comparison["pool_targets"] = {"accuracy": dict(selection.target_accuracy),
                                      "trained_on": teacher_targets if frozen_teacher else None}
    if getattr(selection, "left_out", None):  # --skip_unreadable: in no training pair
        comparison["left_out"] = list(selection.left_out)
    return comparison


def with_figures(text: str, figures: list[tuple[str, str]]) -> str:
    """A markdown text followed by `![caption](png)` for each figure (each in its own paragraph)."""
    for caption, png in figures:
        text = text.rstrip("\n") + f"\n\n![{caption}]({png})\n"
    return text


def write_run_report(output_dir, args: dict, results: dict, evaluation: dict, title: str, source_language: str,
                     before: dict | None = None, comparison: dict | None = None, selection=None) -> None:
    """Figures, results.md, comparison.md / comparison.json (a distillation run: `before`, `comparison`,
    `selection`), then run_args.json, environment.json and the model card; main process only. `evaluation`:
    the per-language logits `results` came from (the figure's chance line needs C)."""
    output_dir = Path(output_dir)
    num_classes = infer_num_classes(results) or next(iter(evaluation.values()))["logits"].shape[-1]
    figures = {"results.md": [], "comparison.md": []}
    if comparison is not None:
        roles = {lang: r["role"] for lang, r in comparison["per_language"].items()}
        plot_language_accuracy(output_dir / ACCURACY_PNG, before, results, comparison.get("significance"), roles,
                               source_language, num_classes=num_classes,
                               collapsed=comparison.get("collapsed_languages"))
        figures["comparison.md"].append(("per-language accuracy before and after", ACCURACY_PNG))
    else:
        plot_language_accuracy(output_dir / ACCURACY_PNG, results, source_language=source_language,
                               num_classes=num_classes)
    figures["results.md"].append(("per-language accuracy", ACCURACY_PNG))
    if selection is not None and plot_teacher_selection(output_dir / SELECTION_PNG, selection.to_dict()):
        figures["comparison.md"].append(("teacher selection", SELECTION_PNG))
    warning = None
    if comparison is not None and comparison["collapsed_languages"]:  # results.md is read on its own too
        warning = collapse_warning(comparison["collapsed_languages"], comparison["frozen_teacher"],
                                   comparison["unreadable_languages"], comparison.get("left_out"))
    markdown = {"results.md": results_markdown(results, title, warning)}
    if comparison is not None:
        write_json(output_dir / "comparison.json", comparison)
        markdown["comparison.md"] = comparison_markdown(comparison)
    markdown = {name: with_figures(text, figures[name]) for name, text in markdown.items()}
    for name, text in markdown.items():
        write_text(output_dir / name, text)
    write_run_record(output_dir, args, markdown)
