"""Figures of a run: per-language accuracy (before → after) and teacher selection.

Each as PNG (linked from the markdown) with PDF and SVG beside it (same stem).

Uses matplotlib's object API on the Agg canvas (no pyplot, no global backend switch), so it works on a
headless node and leaves the plotting state of a notebook that imports the package alone.

    python src/plot.py --run_dir outputs/xnli-distill      # (re)draw the figures of a finished run

`plot_run` reads what a run wrote (results.json, baseline/results.json, comparison.json,
teacher_selection.json), draws the figures beside them and links them from results.md / comparison.md.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from alsace.files import write_bytes, write_text
from alsace.report.results import collapse_flags, format_p, top_fell

ACCURACY_PNG = "per_language_accuracy.png"
SELECTION_PNG = "teacher_selection.png"
FORMATS = ("png", "pdf", "svg")  # every figure is written in each, same stem (results.md links the PNG)
BEFORE_COLOR, AFTER_COLOR, SOURCE_BAND = "#a6a6a6", "#1f5fa8", "#fde9a9"
UP_COLOR, DOWN_COLOR, FLAT_COLOR = "#2a9d4b", "#c0392b", "#9a9a9a"
WARN_COLOR, CHANCE_COLOR = "#e67e22", "#7b3294"
TEACHER_COLOR, STUDENT_COLOR = "#1f5fa8", "#e08a2c"
MANY = 12  # with more languages than this, tick labels are rotated


def plot_language_accuracy(path, before: dict, after: dict | None = None, significance: dict | None = None,
                           roles: dict[str, str] | None = None, source_language: str = "en",
                           title: str | None = None, num_classes: int | None = None,
                           collapsed: list[str] | None = None) -> Path:
    """Draw `language_accuracy_figure` (same arguments) and write it as PNG, PDF and SVG; return the PNG's path."""
    return _save(language_accuracy_figure(before, after, significance, roles, source_language, title, num_classes,
                                          collapsed), path)


def language_accuracy_figure(before: dict, after: dict | None = None, significance: dict | None = None,
                             roles: dict[str, str] | None = None, source_language: str = "en",
                             title: str | None = None, num_classes: int | None = None,
                             collapsed: list[str] | None = None) -> Figure:
    """Bars of per-language accuracy (results.json dicts), best baseline language first, axis from 0.

    With `after`: before and after bars side by side, and a second panel with each language's change,
    the average's and the gap's, with the bootstrap CI when `significance` is given. `num_classes` draws
    the chance level 1/C; `collapsed` (comparison.json's "collapsed_languages"; computed from the
    majority-class shares when None) puts a warning in the title.
    """
    langs = sorted(before["per_language"], key=lambda lang: -before["per_language"][lang]["accuracy"])
    if num_classes is None:
        num_classes = infer_num_classes(before)
    if after is not None and collapsed is None:
        collapsed = collapsed_languages(before, after)
    acc_before = np.array([100 * before["per_language"][lang]["accuracy"] for lang in langs])  # (L,)
    acc_after = None if after is None else np.array([100 * after["per_language"][lang]["accuracy"] for lang in langs])
    many = len(langs) > MANY
    fig = Figure(figsize=(min(18.0, max(7.5, 0.42 * len(langs) + 4.5)), 7.5 if after else 4.6), layout="constrained")
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
    if num_classes:
        ax.axhline(100 / num_classes, color=CHANCE_COLOR, ls=":", lw=1.5, zorder=3,
                   label=f"chance 1/{num_classes} = {100 / num_classes:.2f}")
    values = np.concatenate([acc_before] + ([acc_after] if after else []))
    # Bars start at 0 (no truncated bars); differences of a point are in the Δ panel below.
    headroom = 10 if many and after is None else 4  # room for the rotated value labels
    ax.set_ylim(0, min(100.0, np.ceil((values.max() + headroom) / 10) * 10))
    ax.set_ylabel("accuracy (%)")
    if after is None:
        for xi, value in zip(x, acc_before):
            ax.annotate(f"{value:.2f}", (xi, value), xytext=(0, 2), textcoords="offset points", ha="center",
                        fontsize=6 if many else 7, rotation=90 if many else 0)
    ax.set_xticks(x, _tick_labels(langs, roles), rotation=90 if many else 0, fontsize=8)
    _bold_source_tick(ax, langs, source_language)
    order_by = "accuracy before" if after else "accuracy"
    ax.set_xlabel(f"language (sorted by {order_by})" + ("; T = teacher, S = student" if roles else ""), fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: ("average" in labels[i], "training" in labels[i]))
    # Outside the axes, to the right: the legend never covers a bar.
    ax.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper left", bbox_to_anchor=(1.01, 1),
              fontsize=8, frameon=False)
    fell = top_fell({"significance": significance}, source_language) if after is not None else []
    suptitle = title_text(before, after, significance, title, collapsed)
    if fell:  # a narrower gap from the top falling is not the method working
        suptitle = ("THE TOP FELL: " + ", ".join(f"{f['name']} {100 * f['delta']:+.2f} (CI below 0)" for f in fell)
                    + "\n" + suptitle)
    fig.suptitle(suptitle, fontsize=10, color=DOWN_COLOR if collapsed or fell else "black")
    if after is not None:
        _delta_panel(ax_delta, langs, before, after, significance, source_language, collapsed or [])
    return fig


def infer_num_classes(results: dict) -> int | None:
    """C from a stored confusion matrix (results.json), else None."""
    for r in results["per_language"].values():
        if r.get("confusion_matrix"):
            return len(r["confusion_matrix"])
    return None


def collapsed_languages(before: dict, after: dict) -> list[str]:
    """The languages `compare` flags as collapsed, from the majority-class shares."""
    return [lang for lang, b in before["per_language"].items()
            if "majority_share" in b and "majority_share" in after["per_language"][lang]
            and collapse_flags(b, after["per_language"][lang])[0]]


def _tick_labels(langs: list[str], roles: dict[str, str] | None) -> list[str]:
    if not roles:
        return list(langs)
    letter = {"teacher": "T", "student": "S"}  # a second tick line: the language's role in distillation
    return [f"{lang}\n{letter.get(roles.get(lang), '-')}" for lang in langs]


def _bold_source_tick(ax, langs: list[str], source_language: str) -> None:
    for tick, lang in zip(ax.get_xticklabels(), langs):
        if lang == source_language:
            tick.set_fontweight("bold")


def title_text(before: dict, after: dict | None, significance: dict | None = None, title: str | None = None,
               collapsed: list[str] | None = None) -> str:
    """The figure's title: a collapse warning first (if any), the title, then the numbers.

    Numbers are formatted exactly as comparison.md does: `100 * x` of the stored fractions with `.2f`,
    Δ as `after - before` of the unrounded values (as `compare` stores it) with `+.2f`.
    """
    head = title or ("Per-language accuracy before → after self-distillation" if after else "Per-language accuracy")
    if after is None:
        gap = before.get("transfer_gap")
        gap_text = f"transfer gap {100 * gap:.2f}" if gap is not None else "no transfer gap (no source language)"
        return f"{head}\naverage {100 * before['average']:.2f}, {gap_text} points"
    lines = [head]
    if collapsed:
        shown = ", ".join(collapsed[:8]) + (f" and {len(collapsed) - 8} more" if len(collapsed) > 8 else "")
        lines.insert(0, f"PREDICTIONS COLLAPSED in {shown}: the gap change is not a result")
    text = (f"average {100 * before['average']:.2f} → {100 * after['average']:.2f} "
            f"(Δ {100 * (after['average'] - before['average']):+.2f})")
    if before.get("transfer_gap") is not None and after.get("transfer_gap") is not None:
        delta = after["transfer_gap"] - before["transfer_gap"]
        text += (f"; transfer gap {100 * before['transfer_gap']:.2f} → {100 * after['transfer_gap']:.2f} "
                 f"(Δ {100 * delta:+.2f}")
        gap = (significance or {}).get("transfer_gap")
        if gap:
            text += (f", {100 * significance['confidence']:.0f}% CI "
                     f"[{100 * gap['ci_low']:+.2f}, {100 * gap['ci_high']:+.2f}], p {format_p(gap['p_value'])}")
        text += ")"
    lines.append(text)
    return "\n".join(lines)


def gap_colour(delta: float, stats: dict | None, collapsed: list[str] | None) -> str:
    """The gap's Δ bar: green only for a real narrowing (Δ < 0, CI below 0 when tested, nothing collapsed)."""
    if collapsed:
        return WARN_COLOR
    if stats is None:
        return "#9fd3ae" if delta < 0 else "#eba59d" if delta > 0 else FLAT_COLOR
    if stats["ci_high"] < 0:
        return UP_COLOR
    if stats["ci_low"] > 0:
        return DOWN_COLOR
    return FLAT_COLOR


def _delta_panel(ax, langs: list[str], before: dict, after: dict, significance: dict | None,
                 source_language: str, collapsed: list[str]) -> None:
    """Δ (points) per language, then the average and the gap, coloured by whether the CI excludes 0."""
    names = list(langs) + ["average"]
    deltas = [after["per_language"][lang]["accuracy"] - before["per_language"][lang]["accuracy"] for lang in langs]
    deltas.append(after["average"] - before["average"])
    stats = [(significance or {}).get("per_language", {}).get(lang) for lang in langs]
    stats.append((significance or {}).get("average"))
    has_gap = before.get("transfer_gap") is not None and after.get("transfer_gap") is not None
    if has_gap:
        names.append("gap\n(lower:\nnarrower)")
        deltas.append(after["transfer_gap"] - before["transfer_gap"])
        stats.append((significance or {}).get("transfer_gap"))
    deltas = 100 * np.array(deltas)  # (K,) points
    # The summaries sit to the right of the languages, after a gap in the x positions.
    x = np.concatenate([np.arange(len(langs)), len(langs) + 0.5 + np.arange(len(names) - len(langs))])
    colors = [_delta_color(d, s) for d, s in zip(deltas, stats)]
    fell = top_fell({"significance": significance}, source_language)
    if has_gap:
        colors[-1] = gap_colour(deltas[-1], stats[-1], collapsed)
        if fell and deltas[-1] < 0:  # narrower, but because the top fell: never green
            colors[-1] = WARN_COLOR
    hatches = [("xx" if name in collapsed else None) for name in names]
    if has_gap and collapsed:
        hatches[-1] = "xx"
    ax.bar(x, deltas, 0.6, color=colors, hatch=hatches, edgecolor="white", zorder=2)
    have_ci = np.array([s is not None for s in stats])
    if have_ci.any():
        ci = np.array([[100 * s["ci_low"], 100 * s["ci_high"]] if s else [d, d] for d, s in zip(deltas, stats)])
        ax.errorbar(x[have_ci], deltas[have_ci], yerr=np.abs(ci[have_ci].T - deltas[have_ci]), fmt="none",
                    ecolor="black", elinewidth=1, capsize=3, zorder=3)
    many = len(langs) > MANY
    # The values as a row along the top of the panel, clear of bars and whiskers.
    for xi, d in zip(x, deltas):
        ax.text(xi, 0.97, f"{d:+.2f}", transform=ax.get_xaxis_transform(), ha="center", va="top",
                fontsize=6.5 if many else 7, rotation=90 if many else 0)
    ax.axhline(0, color="black", lw=0.8)
    ax.axvline(len(langs) - 0.25, color="#cccccc", lw=1)
    ax.set_xticks(x, names, fontsize=8)
    for tick in ax.get_xticklabels()[:len(langs)]:
        tick.set_rotation(90 if many else 0)
    _bold_source_tick(ax, names, source_language)
    ax.set_xlabel("language (same order as above), then the summaries", fontsize=8)
    ax.set_ylabel("Δ after − before (points)")
    low, high = ax.get_ylim()
    ax.set_ylim(low - 0.05 * (high - low), high + (0.45 if many else 0.25) * (high - low))
    handles = []
    if have_ci.any():
        conf = f"{100 * significance['confidence']:.0f}%"
        handles = [Patch(color=UP_COLOR, label=f"{conf} CI above 0 (gap: below 0, narrower)"),
                   Patch(color=DOWN_COLOR, label=f"{conf} CI below 0 (gap: above 0, wider)"),
                   Patch(color=FLAT_COLOR, label=f"{conf} CI contains 0")]
    if collapsed:
        handles += [Patch(facecolor="white", hatch="xxx", edgecolor="#555555", label="hatched: predictions collapsed"),
                    Patch(color=WARN_COLOR, label="gap change with collapse: not a result")]
    elif fell and has_gap and deltas[-1] < 0:
        handles.append(Patch(color=WARN_COLOR, label="gap narrower while the top fell: not a result"))
    if handles:
        ax.figure.legend(handles=handles, fontsize=8, ncol=2 if len(handles) > 3 else 3,
                         loc="outside lower center", frameon=False,
                         title="Δ coloured by the paired-bootstrap CI (whiskers)" if have_ci.any() else None,
                         title_fontsize=8)


def _delta_color(delta: float, stats: dict | None) -> str:
    if stats is None:  # no test: colour by sign only, lightly
        return "#9fd3ae" if delta > 0 else "#eba59d" if delta < 0 else FLAT_COLOR
    if stats["ci_low"] > 0:
        return UP_COLOR
    if stats["ci_high"] < 0:
        return DOWN_COLOR
    return FLAT_COLOR


def plot_teacher_selection(path, selection: dict, title: str | None = None) -> Path | None:
    """Normalised score ŝ per language (ranking order) as a dot plot, teachers vs students, and the threshold θ.

    A dot plot, not bars: softmax-normalised scores differ in the third decimal, so the axis is zoomed and
    bars on it would be truncated. The uniform level 1/T (all languages equally confident) is drawn when it
    differs from θ. `selection` is `Selection.to_dict()`. Writes PNG, PDF and SVG; returns the PNG's path,
    or None when there are no scores to draw (a fixed ranking given without scoring).
    """
    if not selection.get("normalized_scores"):
        return None
    langs = selection["ranking"]
    index = {lang: i for i, lang in enumerate(selection["languages"])}
    s_hat = np.array([selection["normalized_scores"][index[lang]] for lang in langs])  # (T,)
    raw = [selection["scores"][index[lang]] for lang in langs]
    is_teacher = np.array([lang in selection["teachers"] for lang in langs])
    many = len(langs) > MANY
    fig = Figure(figsize=(min(18.0, max(7.5, 0.38 * len(langs) + 4.5)), 4.8 if many else 4.4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(langs))
    ax.grid(axis="x", color="#eeeeee", zorder=0)
    handles = [ax.scatter(x[is_teacher], s_hat[is_teacher], s=40, color=TEACHER_COLOR, marker="o", zorder=3,
                          label=f"teachers ({int(is_teacher.sum())})"),
               ax.scatter(x[~is_teacher], s_hat[~is_teacher], s=40, color=STUDENT_COLOR, marker="s", zorder=3,
                          label=f"students ({int((~is_teacher).sum())})")]
    theta = selection.get("threshold")
    uniform = 1 / len(selection["languages"])
    marks = list(s_hat) + ([theta] if theta is not None else [])
    # The default θ = mean(ŝ) is the uniform level 1/T up to rounding (ŝ may be stored as float32): one line.
    same = theta is not None and math.isclose(theta, uniform, rel_tol=1e-5)
    if theta is not None:
        handles.append(ax.axhline(theta, color="black", ls="--", lw=1, label=f"threshold θ = {theta:.4f}"
                                  + (f" = 1/{len(selection['languages'])} (uniform)" if same else "")))
    if not same:
        marks.append(uniform)
        handles.append(ax.axhline(uniform, color=CHANCE_COLOR, ls=":", lw=1.5,
                                  label=f"uniform 1/{len(selection['languages'])} = {uniform:.4f}"))
    spread = max(max(marks) - min(marks), 1e-4)
    ax.set_ylim(max(0.0, min(marks) - 0.15 * spread), max(marks) + 0.15 * spread)
    agreement = selection.get("agreement") or {}
    # Under each language: its raw score s and its agreement with the pseudo labels.
    ax.set_xticks(x, [f"{lang}\n{score:.3f}\n{agreement[lang]:.2f}" if lang in agreement else f"{lang}\n{score:.3f}"
                      for lang, score in zip(langs, raw)], fontsize=7 if many else 8, rotation=90 if many else 0)
    ax.set_xlim(-0.6, len(langs) - 0.4)
    ax.set_xlabel("language, ranked by ŝ  /  raw score s  /  agreement with the pseudo labels", fontsize=8)
    ax.set_ylabel("normalised score ŝ = softmax(s)\n(dots: zoomed axis)")
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    how = "fixed ranking (scores for reference)" if selection.get("method") == "fixed_rank" else "scores on the pool"
    ax.set_title(title or f"Teacher selection: {how}, {selection.get('num_items', 0)} parallel items\n"
                          "s = mean confidence in the majority-vote pseudo label", fontsize=10)
    return _save(fig, path)


def _save(fig: Figure, path) -> Path:
    """Write the figure as PNG at `path` and as PDF and SVG beside it (same stem); return the PNG's path."""
    FigureCanvasAgg(fig)
    path = Path(path)
    for fmt in FORMATS:
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=130, metadata={"Date": None} if fmt == "svg" else None)
        write_bytes(path.with_suffix(f".{fmt}"), buffer.getvalue())
    return path


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
                                              roles, source_language, num_classes=_num_classes(run_dir, after),
                                              collapsed=comparison.get("collapsed_languages")))
        link_figure(run_dir / "comparison.md", ACCURACY_PNG, "per-language accuracy before and after")
    else:
        written.append(plot_language_accuracy(run_dir / ACCURACY_PNG, after, source_language=source_language,
                                              num_classes=_num_classes(run_dir, after)))
    link_figure(run_dir / "results.md", ACCURACY_PNG, "per-language accuracy")
    selection = _read_json(run_dir / "teacher_selection.json")
    if selection is not None and plot_teacher_selection(run_dir / SELECTION_PNG, selection["selection"]):
        written.append(run_dir / SELECTION_PNG)
        link_figure(run_dir / "comparison.md", SELECTION_PNG, "teacher selection")
    return written


def _num_classes(run_dir: Path, results: dict) -> int | None:
    """C for the chance line: a stored confusion matrix, else the width of a saved logits file."""
    found = infer_num_classes(results)
    if found is None:
        for logits in sorted((run_dir / "predictions").glob("*_logits.npy")):
            shape = np.load(logits, mmap_mode="r", allow_pickle=False).shape
            return int(shape[-1]) if len(shape) == 2 else None
    return found


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text("utf-8")) if path.is_file() else None
