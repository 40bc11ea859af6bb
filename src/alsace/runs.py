"""Training and evaluating a run, shared by the entry points: logging, the configuration, training and stopping.

What happens to the run's output directory (created, continued, refused, restored) is `alsace.run_dir`'s.
`run_configuration` builds what `run_config.json` stores. `train` runs the Trainer and turns
Ctrl-C, SIGTERM, a non-finite loss and running out of memory into one line that names what a rerun does;
`evaluate` scores every language under the same guard.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path

from alsace.distributed import is_main_process
from alsace.errors import Interrupted, UserError, stop_code
from alsace.evaluation import eval_bf16, evaluate_languages
from alsace.features import Collator
from alsace.logs import configure_logging
from alsace.run_config import CONFIG_FILE, config_digest
from alsace.run_dir import last_complete_checkpoint
from alsace.report.run_record import save_training_record
from alsace.tracking import check_report_to



def setup_logging(training_args) -> None:
    """Log format and level (rank 0 informs, the others warn); a missing --report_to package fails here."""
    check_report_to(training_args.report_to)
    level = logging.INFO if is_main_process() else logging.WARNING
    configure_logging(level)
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_warning()
    if not sys.stderr.isatty():  # a log file: no carriage-return progress bars, the Trainer logs lines instead
        training_args.disable_tqdm = True
        datasets.disable_progress_bars()
    if training_args.use_cpu or training_args.device.type == "cpu":
        training_args.dataloader_pin_memory = False  # pinning needs an accelerator; avoids a warning per eval


def check_training_numbers(training_args) -> None:
    """Numbers that would fail (or silently do nothing) hours later, refused before any work."""
    if training_args.learning_rate <= 0:
        raise UserError(f"--learning_rate {training_args.learning_rate}: must be > 0")
    for flag in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if getattr(training_args, flag) < 1:
            raise UserError(f"--{flag} {getattr(training_args, flag)}: must be >= 1")
    if training_args.max_steps <= 0 and training_args.num_train_epochs <= 0:
        raise UserError(f"--num_train_epochs {training_args.num_train_epochs}: no training at all (and no "
                        "--max_steps); give a positive number of epochs or --max_steps")


def run_configuration(sections: dict, training_args, task_path: str, model_path: str, **resolved) -> dict:
    """The run's configuration as `run_config.json` stores it: every argument section (after presets,
    argument files and defaults) plus what is derived at run time and changes results: the number of
    processes (the effective batch size), a task file's fingerprint and the starting checkpoint's own
    configuration (a rerun after the checkpoint was replaced by another run is another run)."""
    from alsace.files import sha256_of
    from alsace.run_config import build_config

    extra = {**resolved, "world_size": training_args.world_size}
    if task_path.endswith(".json") and Path(task_path).is_file():
        extra["task_file_sha256"] = sha256_of(Path(task_path))
    init = Path(model_path).expanduser() / CONFIG_FILE
    if init.is_file():
        extra["init_config"] = config_digest(json.loads(init.read_text("utf-8")))
    return build_config({**sections, "training_args": training_args.to_dict()}, extra)


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

    Ctrl-C and SIGTERM become one line naming the step and the checkpoint a rerun resumes from (`Interrupted`).
    """
    try:
        with stop_cleanly(trainer.args, "training"):
            result = trainer.train(resume_from_checkpoint=resume_from)
    except KeyboardInterrupt as stop:
        last = last_complete_checkpoint(Path(trainer.args.output_dir))
        resume = (f"rerun the same command to resume from {Path(last).name}" if last else
                  "no checkpoint had been saved yet: rerun the same command to train again from step 0")
        what = "terminated (SIGTERM)" if stop_code(stop) == 143 else "interrupted"
        raise Interrupted(f"{what} at step {trainer.state.global_step}; {resume}", stop_code(stop)) from None
    if is_main_process():
        save_training_record(trainer.args.output_dir, result.metrics, trainer.state)


def evaluate(model, features: dict[str, list[dict]], collator: Collator, training_args) -> dict:
    """Every language's class logits, labels and accuracy (one length-sorted pass)."""
    with stop_cleanly(training_args, "evaluation"):
        return evaluate_languages(model, features, collator, training_args.per_device_eval_batch_size,
                                  training_args.device, bf16=eval_bf16(training_args))
