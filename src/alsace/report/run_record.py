"""What a run leaves beside its results: its arguments, its environment, its training record, a model card."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
from pathlib import Path

from alsace.files import jsonable, write_json, write_text
from alsace.run_config import flatten_run_args


def environment() -> dict:
    """Package versions, machine and git commit, for the run record (read from the installed packages: the
    reports import no model-side code; `cuda` from the torch the run has loaded, None if it has none)."""
    import sys
    from importlib.metadata import version

    commit, status = _git("rev-parse", "HEAD"), _git("status", "--porcelain")
    torch = sys.modules.get("torch")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__ if torch is not None else version("torch"),
        "transformers": version("transformers"),
        "datasets": version("datasets"),
        "cuda": torch.cuda.is_available() if torch is not None else None,
        # The CPU kernels torch chose (e.g. AVX2, AVX512): CPU runs with different ones round differently, so
        # seeded CPU training reproduces bit for bit only on machines that report the same value.
        "cpu_capability": torch.backends.cpu.get_cpu_capability() if torch is not None else None,
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


def write_run_record(output_dir, args: dict, markdown: dict[str, str] | None = None) -> None:
    """The resolved arguments and the environment of a run, and the checkpoint's model card (`markdown`: the
    run's results.md / comparison.md texts as written, else read from `output_dir`)."""
    write_json(Path(output_dir) / "run_args.json", args)
    write_json(Path(output_dir) / "environment.json", environment())
    write_text(Path(output_dir) / "README.md",
               model_card(output_dir, json.loads(json.dumps(args, default=jsonable)), markdown))


# The settings a reader of a model card needs to know how the checkpoint was trained, in this order.
CARD_SETTINGS = ("model_name_or_path", "task", "head", "prompt_language", "num_placeholder_tokens", "finetune_loss",
                 "max_train_samples", "selection_language", "kl_direction", "detach_teacher", "frozen_teacher",
                 "anchor_weight", "min_teacher_confidence", "temperature", "teacher_temperature", "teacher_threshold",
                 "lang_rank", "num_students", "pair_languages", "pool_size", "learning_rate",
                 "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "max_steps",
                 "warmup_steps", "weight_decay", "lr_scheduler_type", "deepspeed", "max_seq_length", "bf16", "seed")


def card_settings(flat: dict, state: dict | None) -> list[tuple[str, object]]:
    """(setting, value) rows of what the run used: a limit that did not apply is left out (max_steps > 0
    overrides num_train_epochs; max_steps -1 means "by epochs"), and the steps and epochs actually trained
    come from trainer_state.json."""
    by_steps = (flat.get("max_steps") or -1) > 0
    skip = {"num_train_epochs"} if by_steps else {"max_steps"}
    rows = [(key, flat[key]) for key in CARD_SETTINGS if flat.get(key) is not None and key not in skip]
    if state and state.get("global_step"):
        rows.append(("optimizer steps trained", state["global_step"]))
        if state.get("epoch") is not None:
            rows.append(("epochs over the training data", f"{state['epoch']:.2f}"))
    return rows


def model_card(output_dir, args: dict, markdown: dict[str, str] | None = None) -> str:
    """README.md for the checkpoint in `output_dir`: task, languages, head, results, training settings.

    Built from the run's own files (alsace_task.json, results.md, comparison.md; `markdown` gives the last two
    as texts instead) and its arguments (`args` as in run_args.json, nested by section).
    """
    from alsace.checkpoint import CheckpointInfo

    output_dir = Path(output_dir)
    flat = flatten_run_args(args)
    info = record.to_dict() if (record := CheckpointInfo.read(output_dir)) else {}
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
    if markdown is None:
        markdown = {name: (output_dir / name).read_text("utf-8") for name in ("results.md", "comparison.md")
                    if (output_dir / name).is_file()}
    for name in ("results.md", "comparison.md"):
        if name in markdown:  # their headings one level down, under this card's title
            lines += ["#" + line if line.startswith("#") else line for line in markdown[name].splitlines()] + [""]
    lines += ["## How it was trained", "", "| setting | value |", "|---|---|"]
    state_path = output_dir / "trainer_state.json"
    state = json.loads(state_path.read_text("utf-8")) if state_path.is_file() else None
    lines += [f"| {key} | {value} |" for key, value in card_settings(flat, state)]
    lines += ["", "All arguments: `run_args.json`; package versions and git commit: `environment.json`."]
    return "\n".join(lines) + "\n"


def save_training_record(output_dir, metrics: dict, state) -> None:
    """train_results.json / all_results.json (train metrics) and trainer_state.json, as the HF examples.

    trainer_state.json holds the loss curve (`log_history`) and `best_model_checkpoint`. Written with our
    atomic writer rather than `Trainer.save_metrics` / `save_state`; `log_metrics` is not called because
    it prints to stdout.
    """
    output_dir = Path(output_dir)
    write_json(output_dir / "train_results.json", metrics)
    write_json(output_dir / "all_results.json", metrics)
    write_text(output_dir / "trainer_state.json", json.dumps(dataclasses.asdict(state), indent=2, sort_keys=True) + "\n")
