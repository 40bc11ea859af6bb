"""The life of a run, shared by the entry points: logging, the output directory, training and stopping.

A run's output directory is created, resumed or refused here (`prepare_output_dir`); `train` runs the
Trainer and turns Ctrl-C, a non-finite loss and running out of memory into one line that names what a
rerun does; `evaluate` scores every language under the same guard.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import sys
import tempfile
from pathlib import Path

from alsace.distributed import broadcast_from_main, is_main_process
from alsace.errors import Interrupted, RunComplete, UserError, track_output_dir, where_results_are
from alsace.evaluation import eval_bf16, evaluate_languages
from alsace.features import Collator
from alsace.report.run_record import save_training_record
from alsace.report.tracking import check_report_to
from alsace.tasks import Task

logger = logging.getLogger("alsace")


def setup_logging(training_args) -> None:
    """Log format and level (rank 0 informs, the others warn); a missing --report_to package fails here."""
    check_report_to(training_args.report_to)
    level = logging.INFO if is_main_process() else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=level)
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_warning()
    if not sys.stderr.isatty():  # a log file: no carriage-return progress bars, the Trainer logs lines instead
        training_args.disable_tqdm = True
        datasets.disable_progress_bars()
    if training_args.use_cpu or training_args.device.type == "cpu":
        training_args.dataloader_pin_memory = False  # pinning needs an accelerator; avoids a warning per eval


def prepare_output_dir(output_dir: str, overwrite: bool, requested: str | None = None) -> str | None:
    """Return the checkpoint to resume from, or None for a fresh run.

    `requested` (`--resume_from_checkpoint`) names the checkpoint explicitly; otherwise:

    A directory with a complete `checkpoint-*` folder and no final results is an interrupted run:
    resume it. Any other non-empty directory is refused unless `--overwrite_output_dir`, which also
    removes the previous run's checkpoints and results (a stale `checkpoint-900` must never be resumed
    by a later rerun of the new run). Under data parallelism rank 0 inspects and creates the
    directory and every rank receives its answer: all ranks resume from the same checkpoint or fail
    with the same message, and no rank looks while another is already writing.
    """
    outcome = None
    if is_main_process():
        try:
            outcome = ("ok", _requested_checkpoint(requested) if requested else
                       _inspect_output_dir(Path(output_dir), overwrite))
        except (UserError, RunComplete) as err:
            outcome = (type(err).__name__, str(err))
    status, value = broadcast_from_main(outcome)
    if status != "ok":
        raise {"UserError": UserError, "RunComplete": RunComplete}[status](value)
    return value


def _inspect_output_dir(path: Path, overwrite: bool) -> str | None:
    if path.exists() and not path.is_dir():
        raise UserError(f"--output_dir {path}: exists and is not a directory")
    track_output_dir(path, created=not path.exists())
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # a real write: os.access says yes to root on read-only mounts
            pass
    except OSError as err:
        raise UserError(f"--output_dir {path}: cannot write there ({err.strerror}); "
                        "choose a writable directory") from None
    if not any(path.iterdir()):
        return None
    if overwrite:
        _remove_previous_run(path)
        return None
    if (path / "results.json").is_file() and (path / "run_args.json").is_file():
        raise RunComplete(f"{path} holds a finished run, nothing to do; {where_results_are(path)} "
                          "(pass --overwrite_output_dir to run it again)")
    last = last_complete_checkpoint(path)
    if last is not None and not (path / "results.json").exists():
        logger.info("resuming the interrupted run from %s", last)
        return last
    raise UserError(
        f"--output_dir {path} is not empty and holds no interrupted run to resume; "
        "choose another directory or pass --overwrite_output_dir"
    )


def _requested_checkpoint(requested: str) -> str:
    match = CHECKPOINT_NAME.fullmatch(Path(requested).name)
    if not match or not _is_complete(Path(requested), int(match.group(1))):
        raise UserError(f"--resume_from_checkpoint {requested}: not a complete checkpoint-N folder; omit the "
                        "flag to resume the last complete checkpoint of --output_dir automatically")
    return requested


# What a previous run left that --overwrite_output_dir must not mix with the new run's files.
RUN_OUTPUTS = ("results.json", "results.md", "comparison.json", "comparison.md", "teacher_selection.json",
               "run_args.json", "environment.json", "predictions", "baseline", "train_results.json",
               "all_results.json", "trainer_state.json")


def _remove_previous_run(path: Path) -> None:
    stale = [p for p in path.iterdir() if p.name in RUN_OUTPUTS or CHECKPOINT_NAME.fullmatch(p.name)]
    for item in stale:
        if item.is_dir():
            shutil.rmtree(item)
        else:
            item.unlink()
    if stale:
        names = ", ".join(sorted(p.name for p in stale))
        logger.warning("--overwrite_output_dir: removed the previous run's %s", names)


CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")


def last_complete_checkpoint(path: Path) -> str | None:
    """The newest `checkpoint-N` whose `trainer_state.json` (the Trainer writes it last) is intact.

    A run killed while saving leaves a newer folder without it; resuming from that would crash or
    silently restart the optimizer, so it is skipped with a warning.
    """
    found = sorted(((int(m.group(1)), p) for p in Path(path).iterdir()
                    if (m := CHECKPOINT_NAME.fullmatch(p.name)) and p.is_dir()), reverse=True)
    for step, checkpoint in found:
        if _is_complete(checkpoint, step):
            return str(checkpoint)
        logger.warning("skipping %s: incomplete (the run was stopped while saving it)", checkpoint)
    return None


def _is_complete(checkpoint: Path, step: int) -> bool:
    try:
        return json.loads((checkpoint / "trainer_state.json").read_text("utf-8")).get("global_step") == step
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def stop_cleanly(training_args, phase: str):
    """Turn the two failures of long runs into one-line `UserError`s that name the fix.

    A non-finite loss (raised by `AlsaceTrainer.compute_loss`) keeps every checkpoint saved so far;
    running out of GPU memory is answered with the batch-size flags to change.
    """
    import torch

    try:
        yield
    except FloatingPointError as err:
        last = last_complete_checkpoint(Path(training_args.output_dir))
        kept = f"the last good checkpoint, {last}, is kept" if last else "no checkpoint had been saved yet"
        raise UserError(f"training stopped: {err}; {kept}; start again in a new --output_dir "
                        "(or with --overwrite_output_dir)") from None
    except torch.OutOfMemoryError:
        raise UserError(out_of_memory_message(training_args, phase)) from None


def out_of_memory_message(training_args, phase: str) -> str:
    eval_flag = f"--per_device_eval_batch_size (now {training_args.per_device_eval_batch_size})"
    if phase != "training":
        return f"out of GPU memory during {phase}: lower {eval_flag} or --max_seq_length"
    return (f"out of GPU memory during training: lower --per_device_train_batch_size (now "
            f"{training_args.per_device_train_batch_size}) and raise --gradient_accumulation_steps (now "
            f"{training_args.gradient_accumulation_steps}) by the same factor to keep the effective batch size; "
            f"or add --gradient_checkpointing, shorten --max_seq_length, or (evaluation) lower {eval_flag}")


def train(trainer, resume_from: str | None) -> None:
    """`trainer.train`, resuming from `resume_from` (model, optimizer, scheduler and RNG state).

    Ctrl-C becomes one line naming the step and the checkpoint a rerun resumes from (`Interrupted`).
    """
    try:
        with stop_cleanly(trainer.args, "training"):
            result = trainer.train(resume_from_checkpoint=resume_from)
    except KeyboardInterrupt:
        last = last_complete_checkpoint(Path(trainer.args.output_dir))
        resume = (f"rerun the same command to resume from {Path(last).name}" if last else
                  "no checkpoint had been saved yet, so a rerun starts again")
        raise Interrupted(f"interrupted at step {trainer.state.global_step}; {resume}") from None
    if is_main_process():
        save_training_record(trainer.args.output_dir, result.metrics, trainer.state)


def resolve_languages(task: Task, languages: str | None) -> list[str]:
    from alsace.arguments import split_list

    chosen = split_list(languages) or list(task.languages)
    return task.check_languages(chosen, "--languages")


def evaluate(model, features: dict[str, list[dict]], collator: Collator, training_args) -> dict:
    """Every language's class logits, labels and accuracy (one length-sorted pass)."""
    with stop_cleanly(training_args, "evaluation"):
        return evaluate_languages(model, features, collator, training_args.per_device_eval_batch_size,
                                  training_args.device, bf16=eval_bf16(training_args))
