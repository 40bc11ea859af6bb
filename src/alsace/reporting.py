"""Writing run records: atomic files, results.json / results.md, predictions, environment.

Every file is written to a temporary name and renamed into place, so a crash never leaves a
half-written result. Only the main process writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from alsace.metrics import class_metrics, disparity, prediction_health


def is_main_process() -> bool:
    import torch

    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or \
        torch.distributed.get_rank() == 0


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results should be readable like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path, text: str) -> None:
    _atomic_write(path, lambda h: h.write(text.encode("utf-8")))


def write_bytes(path, data: bytes) -> None:
    _atomic_write(path, lambda h: h.write(data))


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_jsonable) + "\n")


def write_npy(path, array: np.ndarray) -> None:
    _atomic_write(path, lambda h: np.save(h, array, allow_pickle=False))


def _jsonable(obj):
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def environment() -> dict:
    """Package versions, machine and git commit, for the run record."""
    import datasets
    import torch
    import transformers

    commit, status = _git("rev-parse", "HEAD"), _git("status", "--porcelain")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "cuda": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(),
        "git_commit": commit or None,
        # Uncommitted changes mean git_commit alone does not say what code ran; None: not a git checkout.
        "git_dirty": None if status is None or not commit else bool(status),
    }


def _git(*args: str) -> str | None:
    """stdout of a git command run in the package's folder, or None when git or the repository is missing."""
    try:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def write_run_record(output_dir, args: dict) -> None:
    """The resolved arguments and the environment of a run, and the checkpoint's model card."""
    write_json(Path(output_dir) / "run_args.json", args)
    write_json(Path(output_dir) / "environment.json", environment())
    write_text(Path(output_dir) / "README.md", model_card(output_dir, json.loads(json.dumps(args, default=_jsonable))))


# The settings a reader of a model card needs to know how the checkpoint was trained, in this order.
CARD_SETTINGS = ("model_name_or_path", "task", "head", "prompt_language", "num_placeholder_tokens", "finetune_loss",
                 "max_train_samples", "selection_language", "kl_direction", "detach_teacher", "temperature",
                 "teacher_threshold", "pool_size", "learning_rate", "per_device_train_batch_size",
                 "gradient_accumulation_steps", "num_train_epochs", "max_steps", "warmup_steps", "weight_decay",
                 "lr_scheduler_type", "max_seq_length", "bf16", "seed")


def model_card(output_dir, args: dict) -> str:
    """README.md for the checkpoint in `output_dir`: task, languages, head, results, training settings.

    Built from the run's own files (alsace_task.json, results.md, comparison.md) and its arguments
    (`args` as in run_args.json, nested by section).
    """
    from alsace.arguments import flatten_run_args

    output_dir = Path(output_dir)
    flat = flatten_run_args(args)
    info_path = output_dir / "alsace_task.json"
    info = json.loads(info_path.read_text("utf-8")) if info_path.is_file() else {}
    languages = args.get("resolved", {}).get("languages") or []
    stage = "self-distillation (src/distill.py)" if "distill_args" in args else "English fine-tuning (src/finetune.py)"
    lines = ["---", f"language: [{', '.join(languages)}]", "library_name: transformers",
             f"tags: [alsace, cross-lingual, {info.get('task', flat.get('task', ''))}]", "---", "",
             f"# {info.get('task', flat.get('task'))}: {stage}", "",
             f"Trained from `{flat.get('model_name_or_path')}` by this project's {stage}.", "",
             f"- task: `{info.get('task', flat.get('task'))}`, labels: {', '.join(info.get('label_names', []))}",
             f"- head: `{info.get('head', flat.get('head'))}`, prompt language: `{info.get('prompt_language')}`, "
             f"placeholder tokens: {info.get('num_placeholder_tokens')}",
             f"- languages evaluated: {', '.join(languages)}", "",
             "Classify new text with `python src/predict.py --model_name_or_path <this folder> --input rows.jsonl`.", ""]
    for name in ("results.md", "comparison.md"):
        if (output_dir / name).is_file():  # their headings one level down, under this card's title
            lines += ["#" + line if line.startswith("#") else line
                      for line in (output_dir / name).read_text("utf-8").splitlines()] + [""]
    lines += ["## How it was trained", "", "| setting | value |", "|---|---|"]
    lines += [f"| {key} | {flat[key]} |" for key in CARD_SETTINGS if flat.get(key) is not None]
    lines += ["", "All arguments: `run_args.json`; package versions and git commit: `environment.json`."]
    return "\n".join(lines) + "\n"


def build_results(task, split: str, model_name: str, evaluation: dict,
                  teachers: list[str] | None = None, students: list[str] | None = None) -> dict:
    """The results.json dictionary (DESIGN.md section 5) from `evaluate_languages` output."""
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
    """The before -> after tables; with `comp["significance"]` (see `alsace.significance`), CI and p columns."""
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
