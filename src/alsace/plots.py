"""Figures of a run as PNG files: per-language accuracy (before -> after) and teacher selection.

Uses matplotlib's object API on the Agg canvas (no pyplot, no global backend switch), so it works on a
headless node and leaves the plotting state of a notebook that imports the package alone.

    python -m alsace.plots outputs/xnli-distill      # (re)draw the figures of a finished run

`plot_run` reads what a run wrote (results.json, baseline/results.json, comparison.json,
teacher_selection.json), draws the figures beside them and links them from results.md / comparison.md.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from alsace.reporting import format_p, write_bytes, write_text

ACCURACY_PNG = "per_language_accuracy.png"
SELECTION_PNG = "teacher_selection.png"
BEFORE_COLOR, AFTER_COLOR, SOURCE_BAND = "#a6a6a6", "#1f5fa8", "#fde9a9"
UP_COLOR, DOWN_COLOR, FLAT_COLOR = "#2a9d4b", "#c0392b", "#9a9a9a"
TEACHER_COLOR, STUDENT_COLOR = "#1f5fa8", "#e08a2c"


def plot_language_accuracy(path, before: dict, after: dict | None = None, significance: dict | None = None,
                           roles: dict[str, str] | None = None, source_language: str = "en",
                           title: str | None = None) -> Path:
    """Bars of per-language accuracy (results.json dicts), best baseline language first.

    With `after`: before and after bars side by side, and a second panel with each language's change,
    the average's and the gap's, with the bootstrap CI when `significance` is given.
    """
    langs = sorted(before["per_language"], key=lambda lang: -before["per_language"][lang]["accuracy"])
    acc_before = np.array([100 * before["per_language"][lang]["accuracy"] for lang in langs])  # (L,)
    acc_after = None if after is None else np.array([100 * after["per_language"][lang]["accuracy"] for lang in langs])
    fig = Figure(figsize=(max(6.5, 0.6 * len(langs) + 3), 7 if after else 4.2), layout="constrained")
    if after is None:
        ax = fig.subplots()
    else:
        ax, ax_delta = fig.subplots(2, 1, height_ratios=[3, 2])

    x = np.arange(len(langs))
    if source_language in langs:
        i = langs.index(source_language)
        ax.axvspan(i - 0.5, i + 0.5, color=SOURCE_BAND, zorder=0, label=f"{source_language} (training language)")
    width = 0.4 if after else 0.6
    ax.bar(x - width / 2 if after else x, acc_before, width, color=BEFORE_COLOR if after else AFTER_COLOR,
           label="before" if after else "accuracy", zorder=2)
    ax.axhline(100 * before["average"], color="#6b6b6b" if after else AFTER_COLOR, ls="--", lw=1,
               label=f"average{' before' if after else ''} {100 * before['average']:.2f}", zorder=3)
    if after is not None:
        ax.bar(x + width / 2, acc_after, width, color=AFTER_COLOR, label="after", zorder=2)
        ax.axhline(100 * after["average"], color=AFTER_COLOR, ls="--", lw=1,
                   label=f"average after {100 * after['average']:.2f}", zorder=3)
    values = np.concatenate([acc_before] + ([acc_after] if after else []))
    low = max(0.0, np.floor(values.min() - 5))
    # Zoomed axis: differences of a point must be visible; the label says where the axis starts.
    ax.set_ylim(low, min(100.0, values.max() + 0.35 * (values.max() - low) + 1))
    ax.set_ylabel("accuracy (%)" + (f", axis from {low:.0f}" if low > 0 else ""))
    if after is None:
        for xi, value in zip(x, acc_before):
            ax.annotate(f"{value:.1f}", (xi, value), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=7)
    ax.set_xticks(x, _tick_labels(langs, roles))
    _bold_source_tick(ax, langs, source_language)
    if roles:
        ax.set_xlabel("T = teacher, S = student", fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: ("average" in labels[i], "training" in labels[i]))
    ax.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper right", ncol=3, fontsize=8,
              framealpha=0.9)
    ax.set_title(_accuracy_title(before, after, significance, title), fontsize=10)
    if after is not None:
        _delta_panel(ax_delta, langs, before, after, significance, source_language)
    return _save(fig, path)


def _tick_labels(langs: list[str], roles: dict[str, str] | None) -> list[str]:
    if not roles:
        return list(langs)
    letter = {"teacher": "T", "student": "S"}  # a second tick line: the language's role in distillation
    return [f"{lang}\n{letter.get(roles.get(lang), '-')}" for lang in langs]


def _bold_source_tick(ax, langs: list[str], source_language: str) -> None:
    for tick, lang in zip(ax.get_xticklabels(), langs):
        if lang == source_language:
            tick.set_fontweight("bold")


def _accuracy_title(before: dict, after: dict | None, significance: dict | None, title: str | None) -> str:
    """First line: the title; second: the average and the transfer gap (before -> after, with CI)."""
    head = title or ("Per-language accuracy before -> after self-distillation" if after else "Per-language accuracy")
    if after is None:
        gap = before.get("transfer_gap")
        gap_text = f"transfer gap {100 * gap:.2f}" if gap is not None else "no transfer gap (no source language)"
        return f"{head}\naverage {100 * before['average']:.2f}, {gap_text} points"
    text = f"average {100 * before['average']:.2f} -> {100 * after['average']:.2f}"
    if before.get("transfer_gap") is not None and after.get("transfer_gap") is not None:
        text += f"; transfer gap {100 * before['transfer_gap']:.2f} -> {100 * after['transfer_gap']:.2f}"
        gap = (significance or {}).get("transfer_gap")
        if gap:
            text += (f"\ngap Δ {100 * gap['delta']:+.2f} points, {100 * significance['confidence']:.0f}% CI "
                     f"[{100 * gap['ci_low']:+.2f}, {100 * gap['ci_high']:+.2f}], p {format_p(gap['p_value'])}")
    return f"{head}\n{text}"


def _delta_panel(ax, langs: list[str], before: dict, after: dict, significance: dict | None,
                 source_language: str) -> None:
    """Δ (points) per language, then the average and the gap, coloured by whether the CI excludes 0."""
    names = list(langs) + ["average"]
    deltas = [after["per_language"][lang]["accuracy"] - before["per_language"][lang]["accuracy"] for lang in langs]
    deltas.append(after["average"] - before["average"])
    stats = [(significance or {}).get("per_language", {}).get(lang) for lang in langs]
    stats.append((significance or {}).get("average"))
    if before.get("transfer_gap") is not None and after.get("transfer_gap") is not None:
        names.append("gap\n(lower: narrower)")
        deltas.append(after["transfer_gap"] - before["transfer_gap"])
        stats.append((significance or {}).get("transfer_gap"))
    deltas = 100 * np.array(deltas)  # (K,) points
    # The summaries sit to the right of the languages, after a gap in the x positions.
    x = np.concatenate([np.arange(len(langs)), len(langs) + 0.5 + np.arange(len(names) - len(langs))])
    colors = [_delta_color(d, s) for d, s in zip(deltas, stats)]
    ax.bar(x, deltas, 0.6, color=colors, zorder=2)
    have_ci = [s is not None for s in stats]
    if any(have_ci):
        ci = np.array([[100 * s["ci_low"], 100 * s["ci_high"]] if s else [d, d] for d, s in zip(deltas, stats)])
        ax.errorbar(x[have_ci], deltas[have_ci], yerr=np.abs(ci[have_ci].T - deltas[have_ci]), fmt="none",
                    ecolor="black", elinewidth=1, capsize=3, zorder=3)
    # The values as a row along the top of the panel, clear of bars and whiskers.
    for xi, d in zip(x, deltas):
        ax.text(xi, 0.97, f"{d:+.2f}", transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=7)
    ax.axhline(0, color="black", lw=0.8)
    ax.axvline(len(langs) - 0.25, color="#cccccc", lw=1)
    ax.set_xticks(x, names)
    _bold_source_tick(ax, names, source_language)
    ax.set_ylabel("Δ after - before (points)")
    low, high = ax.get_ylim()
    ax.set_ylim(low - 0.05 * (high - low), high + 0.25 * (high - low))
    if any(have_ci):
        conf = f"{100 * significance['confidence']:.0f}%"
        handles = [Patch(color=UP_COLOR, label=f"{conf} CI above 0"),
                   Patch(color=DOWN_COLOR, label=f"{conf} CI below 0"),
                   Patch(color=FLAT_COLOR, label=f"{conf} CI contains 0")]
        ax.figure.legend(handles=handles, fontsize=8, ncol=3, loc="outside lower center", frameon=False,
                         title="Δ coloured by the paired-bootstrap CI (whiskers)", title_fontsize=8)


def _delta_color(delta: float, stats: dict | None) -> str:
    if stats is None:  # no test: colour by sign only, lightly
        return "#9fd3ae" if delta > 0 else "#eba59d" if delta < 0 else FLAT_COLOR
    if stats["ci_low"] > 0:
        return UP_COLOR
    if stats["ci_high"] < 0:
        return DOWN_COLOR
    return FLAT_COLOR


def plot_teacher_selection(path, selection: dict, title: str | None = None) -> Path | None:
    """Normalised score ŝ per language (ranking order), teachers vs students, and the threshold θ.

    `selection` is `Selection.to_dict()`. Returns None when there are no scores to draw (a fixed
    ranking given without scoring).
    """
    if not selection.get("normalized_scores"):
        return None
    langs = selection["ranking"]
    index = {lang: i for i, lang in enumerate(selection["languages"])}
    s_hat = np.array([selection["normalized_scores"][index[lang]] for lang in langs])  # (T,)
    raw = [selection["scores"][index[lang]] for lang in langs]
    is_teacher = [lang in selection["teachers"] for lang in langs]
    fig = Figure(figsize=(max(6.0, 0.55 * len(langs) + 2.5), 4.2), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(langs))
    ax.bar(x, s_hat, 0.65, color=[TEACHER_COLOR if t else STUDENT_COLOR for t in is_teacher],
           hatch=[None if t else "//" for t in is_teacher], edgecolor="white", zorder=2)
    theta = selection.get("threshold")
    marks = list(s_hat) + ([theta] if theta is not None else [])
    spread = max(max(marks) - min(marks), 1e-4)
    # Softmax-normalised scores differ in the third decimal: zoom so the split is visible.
    ax.set_ylim(max(0.0, min(marks) - 0.6 * spread), max(marks) + 0.6 * spread)
    handles = [Patch(color=TEACHER_COLOR, label=f"teachers ({sum(is_teacher)})"),
               Patch(facecolor=STUDENT_COLOR, hatch="//", edgecolor="white",
                     label=f"students ({len(langs) - sum(is_teacher)})")]
    if theta is not None:
        handles.append(ax.axhline(theta, color="black", ls="--", lw=1, label=f"threshold θ = {theta:.4f}"))
    agreement = selection.get("agreement") or {}
    # Under each language: its raw score s and its agreement with the pseudo labels.
    ax.set_xticks(x, [f"{lang}\n{score:.3f}\n{agreement[lang]:.2f}" if lang in agreement else f"{lang}\n{score:.3f}"
                      for lang, score in zip(langs, raw)], fontsize=8)
    ax.set_xlabel("language, ranked by ŝ  /  raw score s  /  agreement with the pseudo labels", fontsize=8)
    ax.set_ylabel("normalised score ŝ = softmax(s)")
    ax.legend(handles=handles, fontsize=8, loc="upper right")
    how = "fixed ranking (scores for reference)" if selection.get("method") == "fixed_rank" else "scores on the pool"
    ax.set_title(title or f"Teacher selection: {how}, {selection.get('num_items', 0)} parallel items\n"
                          "s = mean confidence in the majority-vote pseudo label", fontsize=10)
    return _save(fig, path)


def _save(fig: Figure, path) -> Path:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130)
    write_bytes(path, buffer.getvalue())
    return Path(path)


def link_figure(markdown_path, png_name: str, caption: str) -> None:
    """Append `![caption](png_name)` to a markdown file once (it sits in the same directory)."""
    markdown_path = Path(markdown_path)
    text = markdown_path.read_text("utf-8") if markdown_path.is_file() else ""
    link = f"![{caption}]({png_name})"
    if link not in text:
        write_text(markdown_path, text.rstrip("\n") + f"\n\n{link}\n")


def plot_run(run_dir, source_language: str = "en") -> list[Path]:
    """Draw the figures a run directory supports and link them from its markdown files."""
    run_dir = Path(run_dir)
    after = _read_json(run_dir / "results.json")
    if after is None:
        return []
    comparison = _read_json(run_dir / "comparison.json")
    before = _read_json(run_dir / "baseline" / "results.json")
    written = []
    if comparison is not None and before is not None:
        roles = {lang: r["role"] for lang, r in comparison["per_language"].items()}
        written.append(plot_language_accuracy(run_dir / ACCURACY_PNG, before, after, comparison.get("significance"),
                                              roles, source_language))
        link_figure(run_dir / "comparison.md", ACCURACY_PNG, "per-language accuracy before and after")
    else:
        written.append(plot_language_accuracy(run_dir / ACCURACY_PNG, after, source_language=source_language))
    link_figure(run_dir / "results.md", ACCURACY_PNG, "per-language accuracy")
    selection = _read_json(run_dir / "teacher_selection.json")
    if selection is not None and plot_teacher_selection(run_dir / SELECTION_PNG, selection["selection"]):
        written.append(run_dir / SELECTION_PNG)
        link_figure(run_dir / "comparison.md", SELECTION_PNG, "teacher selection")
    return written


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text("utf-8")) if path.is_file() else None


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m alsace.plots RUN_DIR [SOURCE_LANGUAGE]")
    for png in plot_run(*sys.argv[1:]):
        print(png)
