"""Results of an evaluation and of a before -> after comparison: results.json / results.md, predictions.

`build_results` turns per-language logits into the results.json dictionary (README, "Outputs"),
`compare` sets two of them side by side; the markdown and terminal tables are drawn from the same
stored numbers. Files are written atomically (`alsace.files`), by the main process only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alsace.distributed import is_main_process
from alsace.files import write_json, write_npy, write_text
from alsace.metrics import class_metrics, disparity, prediction_health

logger = logging.getLogger("alsace")


def build_results(task, split: str, model_name: str, evaluation: dict,
                  teachers: list[str] | None = None, students: list[str] | None = None) -> dict:
    """The results.json dictionary (README, "Outputs") from `evaluate_languages` output."""
    per_language = {
        lang: {"accuracy": r["accuracy"], "n": r["n"], **prediction_health(r["logits"]),
               **class_metrics(r["logits"], r["labels"])}
        for lang, r in evaluation.items()
    }
    accs = {lang: r["accuracy"] for lang, r in evaluation.items()}
    return {"task": task.name, "split": split, "model": model_name, "per_language": per_language,
            **disparity(accs, task.source_language, teachers, students)}


def results_markdown(results: dict, title: str, warning: str | None = None) -> str:
    """A per-language table plus the summary metrics (after `warning`, when given)."""
    langs = list(results["per_language"])
    lines = [f"# {title}", "", f"Task `{results['task']}`, split `{results['split']}`, model `{results['model']}`.", "",
             *([warning, ""] if warning else []),
             "| language | accuracy | n | majority-class share | mean entropy |", "|---|---:|---:|---:|---:|"]
    for lang in langs:
        r = results["per_language"][lang]
        lines.append(f"| {lang} | {100 * r['accuracy']:.2f} | {r['n']} | {100 * r['majority_share']:.1f} | "
                     f"{r['mean_entropy']:.3f} |")
    lines += ["", "| metric | value |", "|---|---:|"]
    for key in ("average", "transfer_gap", "spread", "std", "teacher_average", "student_average"):
        if results.get(key) is not None:
            lines.append(f"| {key} | {100 * results[key]:.2f} |")
    return "\n".join(lines) + "\n"


def save_evaluation(output_dir, results: dict, evaluation: dict, split: str, title: str) -> None:
    """results.json, results.md and per-language raw class logits and labels (.npy, no pickle)."""
    output_dir = Path(output_dir)
    for lang, r in evaluation.items():
        write_npy(output_dir / "predictions" / f"{lang}_{split}_logits.npy", r["logits"])
        write_npy(output_dir / "predictions" / f"{lang}_{split}_labels.npy", r["labels"])
    write_json(output_dir / "results.json", results)
    write_text(output_dir / "results.md", results_markdown(results, title))


def table_for_terminal(results: dict) -> str:
    """A compact one-screen version of the per-language table."""
    langs = list(results["per_language"])
    head = "  ".join(f"{lang:>6}" for lang in langs)
    accs = "  ".join(f"{100 * results['per_language'][lang]['accuracy']:6.2f}" for lang in langs)
    gap = results["transfer_gap"]
    return (f"{head}\n{accs}\naverage {100 * results['average']:.2f}  "
            f"transfer gap {100 * gap:.2f}" if gap is not None else f"{head}\n{accs}")


COLLAPSE_SHARE = 0.9  # a language predicting one class this often (and not before) has collapsed ...
COLLAPSE_RISE = 0.2  # ... and one whose majority-class share rose this much is collapsing


def is_collapsed(share_before: float, share_after: float) -> bool:
    """Collapse flag from the majority-class shares before and after distillation."""
    full = share_after >= COLLAPSE_SHARE and share_before < COLLAPSE_SHARE
    return full or share_after - share_before >= COLLAPSE_RISE


def compare(before: dict, after: dict, teachers: list[str], students: list[str]) -> dict:
    """Before -> after per language and for the summary metrics, with collapse flags."""
    per_language = {}
    for lang, b in before["per_language"].items():
        a = after["per_language"][lang]
        collapsed = is_collapsed(b["majority_share"], a["majority_share"])
        per_language[lang] = {
            "role": "teacher" if lang in teachers else "student" if lang in students else "-",
            "before": b["accuracy"], "after": a["accuracy"], "delta": a["accuracy"] - b["accuracy"],
            "majority_share_before": b["majority_share"], "majority_share_after": a["majority_share"],
            "entropy_before": b["mean_entropy"], "entropy_after": a["mean_entropy"], "collapsed": collapsed,
        }
    summary = {}
    for key in ("average", "transfer_gap", "spread", "std", "teacher_average", "student_average"):
        if before.get(key) is not None and after.get(key) is not None:
            summary[key] = {"before": before[key], "after": after[key], "delta": after[key] - before[key]}
    collapsed = [lang for lang, r in per_language.items() if r["collapsed"]]
    return {"task": after["task"], "split": after["split"], "per_language": per_language,
            "summary": summary, "collapsed_languages": collapsed}


def collapse_warning(collapsed: list[str]) -> str:
    """The Markdown warning that comparison.md and the distilled results.md carry when predictions collapsed."""
    return (f"**WARNING: predictions collapsed in {', '.join(collapsed)}** (one class "
            f"predicted for >= {100 * COLLAPSE_SHARE:.0f}% of rows, or its share up by >= "
            f"{100 * COLLAPSE_RISE:.0f} points): a narrower gap from collapsed "
            "predictions is not a result. A moving teacher cannot anchor the student: use "
            "RECIPE=recommended (--frozen_teacher) or a lower learning rate.")


def comparison_markdown(comp: dict) -> str:
    """The before -> after tables; with `comp["significance"]` (see `alsace.report.significance`), CI and p columns."""
    sig = comp.get("significance")
    lines = ["# Before -> after self-distillation", "",
             f"Task `{comp['task']}`, split `{comp['split']}`. Accuracy in %, Δ in points.", ""]
    if comp["collapsed_languages"]:
        lines += [collapse_warning(comp["collapsed_languages"]), ""]
    ci_head = f" {100 * sig['confidence']:.0f}% CI of Δ | p |" if sig else ""
    lines += ["| language | role | before | after | Δ | majority share before → after | entropy before → after |"
              + (ci_head + " p (Holm) |" if sig else ""),
              "|---|---|---:|---:|---:|---:|---:|" + ("---:|" * 3 if sig else "")]
    for lang, r in comp["per_language"].items():
        lines.append(f"| {lang} | {r['role']} | {100 * r['before']:.2f} | {100 * r['after']:.2f} | "
                     f"{100 * r['delta']:+.2f} | {100 * r['majority_share_before']:.0f} → "
                     f"{100 * r['majority_share_after']:.0f} | {r['entropy_before']:.3f} → {r['entropy_after']:.3f} |"
                     + (_significance_cells(sig["per_language"][lang], holm=True) if sig else ""))
    lines += ["", "| metric | before | after | Δ |" + ci_head, "|---|---:|---:|---:|" + ("---:|" * 2 if sig else "")]
    for key, r in comp["summary"].items():
        cells = ""
        if sig:
            cells = _significance_cells(sig[key]) if sig.get(key) else " | |"
        lines.append(f"| {key} | {100 * r['before']:.2f} | {100 * r['after']:.2f} | {100 * r['delta']:+.2f} |" + cells)
    quality = comp.get("selection_quality")
    if quality:
        lines += ["", f"Selection quality (reported, never used): Spearman ρ between the normalised teacher "
                      f"scores ŝ and the test accuracy before distillation, over {quality['num_languages']} "
                      f"languages: {quality['spearman_score_vs_accuracy']:.3f}."]
    if sig:
        lines += ["", f"CI and p: {sig['method']} over the same test rows ({sig['num_samples']} resamples, "
                      f"seed {sig['seed']}, {sig['resampling']}); p tests 'no change'; Holm adjusts for testing "
                      "every language."]
    return "\n".join(lines) + "\n"


def _significance_cells(s: dict, holm: bool = False) -> str:
    cells = f" [{100 * s['ci_low']:+.2f}, {100 * s['ci_high']:+.2f}] | {format_p(s['p_value'])} |"
    return cells + (f" {format_p(s['p_holm'])} |" if holm else "")


def format_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def comparison_for_terminal(comp: dict) -> str:
    lines = [f"{'lang':<6}{'role':<9}{'before':>8}{'after':>8}{'delta':>8}"]
    for lang, r in comp["per_language"].items():
        flag = "  COLLAPSED" if r["collapsed"] else ""
        lines.append(f"{lang:<6}{r['role']:<9}{100 * r['before']:8.2f}{100 * r['after']:8.2f}"
                     f"{100 * r['delta']:+8.2f}{flag}")
    for key, r in comp["summary"].items():
        lines.append(f"{key:<15}{100 * r['before']:8.2f}{100 * r['after']:8.2f}{100 * r['delta']:+8.2f}")
    return "\n".join(lines)


def save_results(output_dir, task, split: str, model_name: str, evaluation: dict, title: str,
                 teachers=None, students=None) -> dict:
    """Write results.json / results.md / predictions (main process only) and print the table."""
    results = build_results(task, split, model_name, evaluation, teachers, students)
    if is_main_process():
        save_evaluation(output_dir, results, evaluation, split, title)
        logger.info("%s\n%s", title, table_for_terminal(results))
    return results
