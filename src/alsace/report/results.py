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
from alsace.metrics import calibration, class_metrics, disparity, prediction_health

logger = logging.getLogger("alsace")


def build_results(task, split: str, model_name: str, evaluation: dict,
                  teachers: list[str] | None = None, students: list[str] | None = None) -> dict:
    """The results.json dictionary (README, "Outputs") from `evaluate_languages` output."""
    per_language = {
        lang: {"accuracy": r["accuracy"], "n": r["n"], **prediction_health(r["logits"]),
               **calibration(r["logits"], r["labels"]), **class_metrics(r["logits"], r["labels"]),
               **({"distinct_inputs": r["distinct_inputs"]} if "distinct_inputs" in r else {})}
        for lang, r in evaluation.items()
    }
    accs = {lang: r["accuracy"] for lang, r in evaluation.items()}
    return {"task": task.name, "split": split, "model": model_name, "per_language": per_language,
            **disparity(accs, task.source_language, teachers, students), **mean_calibration(per_language)}


CALIBRATION_KEYS = ("mean_nll", "mean_ece")  # means over languages of each language's NLL and ECE


def mean_calibration(per_language: dict) -> dict:
    """`mean_nll` and `mean_ece` over languages (absent in results written before they existed)."""
    if not all("nll" in r for r in per_language.values()):
        return {}
    return {"mean_nll": float(sum(r["nll"] for r in per_language.values()) / len(per_language)),
            "mean_ece": float(sum(r["ece"] for r in per_language.values()) / len(per_language))}


def results_markdown(results: dict, title: str, warning: str | None = None) -> str:
    """A per-language table plus the summary metrics (after `warning`, when given)."""
    langs = list(results["per_language"])
    lines = [f"# {title}", "", f"Task `{results['task']}`, split `{results['split']}`, model `{results['model']}`.", "",
             *([warning, ""] if warning else []),
             "| language | accuracy | n | majority-class share | mean entropy | NLL | ECE |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for lang in langs:
        r = results["per_language"][lang]
        lines.append(f"| {lang} | {100 * r['accuracy']:.2f} | {r['n']} | {100 * r['majority_share']:.1f} | "
                     f"{r['mean_entropy']:.3f} | {_num(r.get('nll'))} | {_num(r.get('ece'))} |")
    lines += ["", "| metric | value |", "|---|---:|"]
    for key in ("average", "transfer_gap", "spread", "std", "teacher_average", "student_average"):
        if results.get(key) is not None:
            lines.append(f"| {key} | {100 * results[key]:.2f} |")
    for key in CALIBRATION_KEYS:
        if results.get(key) is not None:
            lines.append(f"| {key} | {results[key]:.3f} |")
    return "\n".join(lines) + "\n"


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def save_evaluation(output_dir, results: dict, evaluation: dict, split: str, title: str, markdown: bool = True) -> None:
    """results.json, results.md and per-language raw class logits and labels (.npy, no pickle); a run's final
    results.md is written later, with its figures (`markdown=False`; `alsace.report.run_report`)."""
    output_dir = Path(output_dir)
    for lang, r in evaluation.items():
        write_npy(output_dir / "predictions" / f"{lang}_{split}_logits.npy", r["logits"])
        write_npy(output_dir / "predictions" / f"{lang}_{split}_labels.npy", r["labels"])
    write_json(output_dir / "results.json", results)
    if markdown:
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
COLLAPSE_RISE = 0.2  # ... and one whose majority-class share rose this much is collapsing (or skewing)


UNREADABLE_SHARE = 0.5  # a language whose rows tokenise to fewer distinct inputs than this share is unreadable


def is_unreadable(result: dict) -> bool:
    """Fewer distinct token sequences than half the rows (results.json's `distinct_inputs`, when recorded): the
    tokenizer reads little of the language, so its rows cannot be told apart whatever the training does."""
    return result.get("distinct_inputs") is not None and result["distinct_inputs"] < UNREADABLE_SHARE * result["n"]


def is_collapsed(share_before: float, share_after: float) -> bool:
    """The majority-class share signal: one class for >= 90 % of rows (not before), or its share up >= 20 points."""
    full = share_after >= COLLAPSE_SHARE and share_before < COLLAPSE_SHARE
    return full or share_after - share_before >= COLLAPSE_RISE


def is_skew(share_before: float, share_after: float, accuracy_delta: float) -> bool:
    """A share up >= 20 points while accuracy rose and below 90 %: predictions moved towards a class that
    is more often right (a skew), not a collapse."""
    return (share_after - share_before >= COLLAPSE_RISE and accuracy_delta > 0
            and share_after < COLLAPSE_SHARE)


def collapse_flags(before: dict, after: dict) -> tuple[bool, bool]:
    """(collapsed, skewed) for one language's results.json entries before and after."""
    share_before, share_after = before["majority_share"], after["majority_share"]
    skewed = is_skew(share_before, share_after, after["accuracy"] - before["accuracy"])
    return is_collapsed(share_before, share_after) and not skewed, skewed


def compare(before: dict, after: dict, teachers: list[str], students: list[str],
            source_language: str | None = None) -> dict:
    """Before -> after per language and for the summary metrics, with collapse and skew flags."""
    per_language = {}
    for lang, b in before["per_language"].items():
        a = after["per_language"][lang]
        collapsed, skewed = collapse_flags(b, a)
        per_language[lang] = {
            "role": "teacher" if lang in teachers else "student" if lang in students else "-",
            "before": b["accuracy"], "after": a["accuracy"], "delta": a["accuracy"] - b["accuracy"],
            "majority_share_before": b["majority_share"], "majority_share_after": a["majority_share"],
            "entropy_before": b["mean_entropy"], "entropy_after": a["mean_entropy"], "collapsed": collapsed,
            "skewed": skewed,
        }
        if a.get("distinct_inputs") is not None:
            per_language[lang].update(distinct_inputs=a["distinct_inputs"], n=a["n"])
        if "nll" in b and "nll" in a:
            per_language[lang].update({"nll_before": b["nll"], "nll_after": a["nll"],
                                       "ece_before": b["ece"], "ece_after": a["ece"]})
    summary = {}
    for key in ("average", "transfer_gap", "spread", "std", "teacher_average", "student_average"):
        if before.get(key) is not None and after.get(key) is not None:
            summary[key] = {"before": before[key], "after": after[key], "delta": after[key] - before[key]}
    calibration = {key: {"before": before[key], "after": after[key], "delta": after[key] - before[key]}
                   for key in CALIBRATION_KEYS if before.get(key) is not None and after.get(key) is not None}
    return {"task": after["task"], "split": after["split"], "source_language": source_language,
            "per_language": per_language, "summary": summary, "calibration": calibration,
            "collapsed_languages": [lang for lang, r in per_language.items() if r["collapsed"]],
            "skewed_languages": [lang for lang, r in per_language.items() if r["skewed"]],
            "unreadable_languages": [lang for lang in per_language if is_unreadable(after["per_language"][lang])]}


def top_fell(comp: dict, source_language: str) -> list[dict]:
    """The top that fell significantly: the source language and the teacher average, when their paired-bootstrap
    interval lies below 0 (`comp["significance"]`). A narrower gap then comes partly from the top falling."""
    sig = comp.get("significance") or {}
    fell = []
    for name, stats in ((source_language, sig.get("per_language", {}).get(source_language)),
                        ("teacher_average", sig.get("teacher_average"))):
        if stats and stats["ci_high"] < 0:
            fell.append({"name": name, "delta": stats["delta"], "ci_low": stats["ci_low"],
                         "ci_high": stats["ci_high"]})
    return fell


def top_fell_warning(fell: list[dict]) -> str:
    """One Markdown line naming what fell, with its Δ and interval (points)."""
    parts = [f"{f['name']} {100 * f['delta']:+.2f} (CI [{100 * f['ci_low']:+.2f}, {100 * f['ci_high']:+.2f}])"
             for f in fell]
    return (f"**WARNING: the top fell significantly: {'; '.join(parts)}.** A narrower gap that comes from the top "
            "falling is not the method working; read the gap with this.")


def collapse_warning(collapsed: list[str], frozen_teacher: bool = False, unreadable: list[str] | None = None,
                     left_out: list[str] | None = None) -> str:
    """The Markdown warning that comparison.md and the distilled results.md carry when predictions collapsed.
    Each collapsed language gets the advice that fits it: one `--skip_unreadable` kept out of training moved only
    through the shared weights; one among `unreadable` (test rows of few distinct inputs) is the tokenizer's
    limit; the recipe's advice is given only when some collapsed language is neither."""
    kept_out = [lang for lang in collapsed if lang in (left_out or [])]
    unreadable = [lang for lang in collapsed if lang in (unreadable or []) and lang not in kept_out]
    advice = []
    if len(kept_out) + len(unreadable) < len(collapsed):
        advice.append("The teacher was already frozen (RECIPE=recommended): lower --learning_rate or --max_steps, and "
                      "check the teacher selection (selection quality below; --selection_method dawid_skene)."
                      if frozen_teacher else
                      "A moving teacher cannot anchor the student: use RECIPE=recommended (--frozen_teacher) or a "
                      "lower learning rate.")
    if unreadable:
        advice.append(f"{', '.join(unreadable)}: the test rows tokenise to fewer distinct "
                      "inputs than half the rows (the tokenizer reads little of the script), so the model cannot tell "
                      "the items apart and training towards per-item targets ends at the most common class; leave "
                      "such a language out of training (--skip_unreadable, SKIP_UNREADABLE=true) or out of the run "
                      "(--languages, LANGUAGES) rather than change the recipe.")
    if kept_out:
        advice.append(f"{', '.join(kept_out)}: left out of training (--skip_unreadable), so it moved only through the "
                      "weights it shares with the trained languages; its rows are too few distinct inputs for its "
                      "predicted classes to say anything about the method. Leave it out of the run (--languages, "
                      "LANGUAGES) to drop it from the report.")
    return (f"**WARNING: predictions collapsed in {', '.join(collapsed)}** (one class "
            f"predicted for >= {100 * COLLAPSE_SHARE:.0f}% of rows, or its share up by >= "
            f"{100 * COLLAPSE_RISE:.0f} points while accuracy did not rise): a narrower gap from collapsed "
            f"predictions is not a result. {' '.join(advice)}")


def comparison_markdown(comp: dict) -> str:
    """The before -> after tables; with `comp["significance"]` (see `alsace.report.significance`), CI and p columns."""
    sig = comp.get("significance")
    lines = ["# Before -> after self-distillation", "",
             f"Task `{comp['task']}`, split `{comp['split']}`. Accuracy in %, Δ in points.", ""]
    if comp["collapsed_languages"]:
        lines += [collapse_warning(comp["collapsed_languages"], comp.get("frozen_teacher", False),
                                   comp.get("unreadable_languages"), comp.get("left_out")), ""]
    if comp.get("top_fell"):
        lines += [top_fell_warning(comp["top_fell"]), ""]
    if comp.get("skewed_languages"):
        lines += [f"Skewed, not collapsed: {', '.join(comp['skewed_languages'])} (majority-class share up >= "
                  f"{100 * COLLAPSE_RISE:.0f} points, below {100 * COLLAPSE_SHARE:.0f} %, with accuracy up).", ""]
    if comp.get("unreadable_languages"):
        per = comp["per_language"]
        lines += ["Few distinct inputs: " + ", ".join(f"{lang} ({per[lang]['distinct_inputs']} of {per[lang]['n']} "
                                                      "rows)" for lang in comp["unreadable_languages"])
                  + ": the tokenizer reads little of these languages, so their accuracy says little about the method.",
                  ""]
    if comp.get("left_out"):
        lines += [f"Left out of training (`--skip_unreadable`: pool rows with fewer distinct inputs than half the "
                  f"items): {', '.join(comp['left_out'])}; their role is `-` and they changed only through the "
                  "shared weights.", ""]
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
    if comp.get("calibration"):
        lines += ["", "Calibration (lower is better): negative log-likelihood and 15-bin expected calibration "
                      "error, mean over languages, then per language.", "",
                  "| metric | before | after | Δ |", "|---|---:|---:|---:|"]
        lines += [f"| {key} | {r['before']:.3f} | {r['after']:.3f} | {r['delta']:+.3f} |"
                  for key, r in comp["calibration"].items()]
        lines += ["", "| language | NLL before → after | ECE before → after |", "|---|---:|---:|"]
        lines += [f"| {lang} | {r['nll_before']:.3f} → {r['nll_after']:.3f} | {r['ece_before']:.3f} → "
                  f"{r['ece_after']:.3f} |" for lang, r in comp["per_language"].items() if "nll_before" in r]
    quality = comp.get("selection_quality")
    if quality:
        lines += ["", f"Selection quality (reported, never used): Spearman ρ between the deciding teacher "
                      f"scores ({quality.get('method', 'paper')}) and the test accuracy before distillation, over "
                      f"{quality['num_languages']} languages: {quality['spearman_score_vs_accuracy']:.3f}."]
        if quality.get("by_method"):
            lines += ["", "| selection method | Spearman ρ vs accuracy before |", "|---|---:|"]
            lines += [f"| {method} | {rho:.3f} |" for method, rho in quality["by_method"].items()]
        if "pool_accuracy_reference" in quality:
            lines += ["", f"Reference (uses the pool's labels, so not a selection method): ranking the languages by "
                          f"their accuracy on the pool's own labels gives ρ = "
                          f"{quality['pool_accuracy_reference']:.3f} against the test accuracy; a label-free "
                          "estimate from this pool can hardly rank better (both accuracies are noisy samples)."]
    source = comp.get("source_language") or "the source language"  # a comparison may record none
    if comp.get("pool_targets"):
        names = {"majority_vote": "majority vote", "dawid_skene": "Dawid–Skene posterior", "source": f"{source} alone"}
        targets = comp["pool_targets"]
        used = targets.get("trained_on")
        lines += ["", "Per-item targets on the pool's own labels (reported, never used): "
                  + ", ".join(f"{names[k]} {100 * v:.1f} % right" for k, v in targets["accuracy"].items())
                  + (f"; this run trained towards `{used}`." if used else
                     "; this run's targets were the moving network's own (no frozen teacher).")]
    if comp.get("source_changes"):
        lines += ["", source_changes_line(comp["source_changes"], source)]
    if sig:
        lines += ["", f"CI and p: {sig['method']} over the same test rows ({sig['num_samples']} resamples, "
                      f"seed {sig['seed']}, {sig['resampling']}); p tests 'no change'; Holm adjusts for testing "
                      "every language."]
    return "\n".join(lines) + "\n"


def source_changes_line(c: dict, source: str) -> str:
    """One sentence on what the source language's accuracy change is made of (`source_changes`)."""
    line = (f"{source}'s change is made of flipped rows: {c['right_to_wrong']} right → wrong and "
            f"{c['wrong_to_right']} wrong → right of {c['n']} ({c['changed']} predictions changed")
    if "to_others_majority" in c:
        line += (f"; {c['to_others_majority']} of them now predict the other languages' majority vote, which was "
                 f"right on {100 * c['others_majority_accuracy_before']:.1f} % of the rows before, {source} on "
                 f"{100 * c['source_accuracy_before']:.1f} %")
    return line + ")."


def _significance_cells(s: dict, holm: bool = False) -> str:
    cells = f" [{100 * s['ci_low']:+.2f}, {100 * s['ci_high']:+.2f}] | {format_p(s['p_value'])} |"
    return cells + (f" {format_p(s['p_holm'])} |" if holm else "")


def format_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def comparison_for_terminal(comp: dict) -> str:
    lines = [f"{'lang':<6}{'role':<9}{'before':>8}{'after':>8}{'delta':>8}"]
    for lang, r in comp["per_language"].items():
        flag = "  COLLAPSED" if r["collapsed"] else "  skewed" if r.get("skewed") else ""
        lines.append(f"{lang:<6}{r['role']:<9}{100 * r['before']:8.2f}{100 * r['after']:8.2f}"
                     f"{100 * r['delta']:+8.2f}{flag}")
    for key, r in comp["summary"].items():
        lines.append(f"{key:<15}{100 * r['before']:8.2f}{100 * r['after']:8.2f}{100 * r['delta']:+8.2f}")
    if comp.get("top_fell"):
        lines.append("THE TOP FELL (CI below 0): " + ", ".join(f"{f['name']} {100 * f['delta']:+.2f}"
                                                             for f in comp["top_fell"]))
    return "\n".join(lines)


def save_results(output_dir, task, split: str, model_name: str, evaluation: dict, title: str,
                 teachers=None, students=None, markdown: bool = True) -> dict:
    """Write results.json / results.md / predictions (main process only) and print the table."""
    results = build_results(task, split, model_name, evaluation, teachers, students)
    if is_main_process():
        save_evaluation(output_dir, results, evaluation, split, title, markdown)
        logger.info("%s\n%s", title, table_for_terminal(results))
    return results


# ---------------------------------------------------------------- per-language dev scalars during training

def dev_table(scalars: dict[str, float]) -> str:
    """The per-language scalars as two aligned lines (languages, accuracy in %), plus average and gap."""
    langs = [k[len("eval_"):-len("_accuracy")] for k in scalars if k.endswith("_accuracy") and k != "eval_average_accuracy"]
    head = "  ".join(f"{lang:>6}" for lang in langs)
    accs = "  ".join(f"{100 * scalars[f'eval_{lang}_accuracy']:6.2f}" for lang in langs)
    tail = f"average {100 * scalars['eval_average_accuracy']:.2f}"
    if "eval_transfer_gap" in scalars:
        tail += f"  transfer gap {100 * scalars['eval_transfer_gap']:.2f}"
    return f"{head}\n{accs}\n{tail}"


def language_scalars(accuracies: dict[str, float], source_language: str) -> dict[str, float]:
    """`{eval_<lang>_accuracy, eval_average_accuracy, eval_transfer_gap}` from per-language accuracies."""
    summary = disparity(accuracies, source_language)
    scalars = {f"eval_{lang}_accuracy": acc for lang, acc in accuracies.items()}
    scalars["eval_average_accuracy"] = summary["average"]
    if summary["transfer_gap"] is not None:
        scalars["eval_transfer_gap"] = summary["transfer_gap"]
    return scalars
