"""Wiring shared by the two entry points: logging, output directories, features, evaluation."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from alsace.data import load_split
from alsace.errors import UserError
from alsace.evaluation import evaluate_languages
from alsace.reporting import build_results, is_main_process, save_evaluation, table_for_terminal
from alsace.scoring import Collator, Featurizer
from alsace.tasks import Task
from alsace.tracking import check_report_to

logger = logging.getLogger("alsace")


def setup_logging(training_args) -> None:
    """Log format and level (rank 0 informs, the others warn); a missing --report_to package fails here."""
    check_report_to(training_args.report_to)
    level = logging.INFO if is_main_process() else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=level)
    import transformers

    transformers.utils.logging.set_verbosity_warning()


def prepare_output_dir(output_dir: str, overwrite: bool) -> str | None:
    """Return the checkpoint to resume from, or None for a fresh run.

    A directory with `checkpoint-*` folders and no final results is an interrupted run: resume it.
    Any other non-empty directory is refused unless `--overwrite_output_dir`.
    """
    from transformers.trainer_utils import get_last_checkpoint

    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise UserError(f"--output_dir {output_dir}: exists and is not a directory")
    if not path.exists() or not any(path.iterdir()):
        path.mkdir(parents=True, exist_ok=True)
        _check_writable(path)
        return None
    _check_writable(path)
    if overwrite:
        return None
    last = get_last_checkpoint(str(path))
    if last is not None and not (path / "results.json").exists():
        logger.info("resuming the interrupted run from %s", last)
        return last
    raise UserError(
        f"--output_dir {output_dir} is not empty and holds no interrupted run to resume; "
        "choose another directory or pass --overwrite_output_dir"
    )


def _check_writable(path: Path) -> None:
    if not os.access(path, os.W_OK):
        raise UserError(f"--output_dir {path}: directory is not writable; choose another one")


def resolve_languages(task: Task, languages: str | None) -> list[str]:
    from alsace.arguments import split_list

    chosen = split_list(languages) or list(task.languages)
    return task.check_languages(chosen, "--languages")


def split_features(task: Task, featurizer: Featurizer, data_dir: str | None, split: str,
                   languages: list[str], max_rows: int | None = None) -> dict[str, list[dict]]:
    """Tokenised rows of one split for each language (read and tokenised once per run)."""
    out = {}
    for lang in languages:
        rows = load_split(task, split, lang, data_dir)
        out[lang] = featurizer.encode(rows[:max_rows] if max_rows else rows, lang)
    return out


def evaluate(model, features: dict[str, list[dict]], collator: Collator, training_args) -> dict:
    """Every language's class logits, labels and accuracy (one length-sorted pass)."""
    return evaluate_languages(model, features, collator, training_args.per_device_eval_batch_size,
                              training_args.device, bf16=training_args.bf16 or training_args.bf16_full_eval)


def save_results(output_dir, task: Task, split: str, model_name: str, evaluation: dict, title: str,
                 teachers=None, students=None) -> dict:
    """Write results.json / results.md / predictions (main process only) and print the table."""
    results = build_results(task, split, model_name, evaluation, teachers, students)
    if is_main_process():
        save_evaluation(output_dir, results, evaluation, split, title)
        logger.info("%s\n%s", title, table_for_terminal(results))
    return results
