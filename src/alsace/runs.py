"""The life of a run, shared by the entry points: logging, the output directory, training and stopping.

A run's output directory is created, resumed or refused here (`prepare_output_dir`): it stores the run's
resolved configuration (`run_config.json`) before any work, and a rerun with the same configuration
continues (from the last complete checkpoint, or training from step 0, reusing completed stages:
`RunStages`) while a rerun with another configuration is refused. `train` runs the Trainer and turns
Ctrl-C, SIGTERM, a non-finite loss and running out of memory into one line that names what a rerun does;
`evaluate` scores every language under the same guard.
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
from alsace.errors import (Interrupted, RunComplete, UserError, paths_under, stop_code, track_output_dir,
                           where_results_are)
from alsace.evaluation import eval_bf16, evaluate_languages
from alsace.features import Collator
from alsace.files import write_json, write_text
from alsace.run_config import CONFIG_FILE, config_differences, config_digest
from alsace.report.run_record import save_training_record
from alsace.report.tracking import check_report_to

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


def stored_config(output_dir) -> dict:
    """The configuration the run stored before any work (`run_config.json`): what its results belong to."""
    return json.loads((Path(output_dir) / CONFIG_FILE).read_text("utf-8"))


def prepare_output_dir(output_dir: str, overwrite: bool, requested: str | None = None,
                       config: dict | None = None) -> str | None:
    """Store the run's configuration in `output_dir`; return the checkpoint to resume from, or None.

    An empty or new directory starts a fresh run. A directory holding `run_config.json` is the same run
    when the stored configuration equals `config` in every result-changing setting: a finished run is
    not redone (`RunComplete`); an unfinished one continues from its last complete `checkpoint-*` (or
    from step 0), reusing the stages it completed. Any difference is refused before any work, one line
    per setting. `--overwrite_output_dir` removes the previous run's outputs first (a stale
    `checkpoint-900` must never be resumed by a later rerun of the new run). `requested`
    (`--resume_from_checkpoint`) names the checkpoint explicitly. Under data parallelism rank 0 inspects
    and creates the directory and every rank receives its answer.
    """
    outcome = None
    if is_main_process():
        try:
            last = _inspect_output_dir(Path(output_dir), overwrite, config)
            outcome = ("ok", _requested_checkpoint(requested) if requested else last)
        except (UserError, RunComplete) as err:
            outcome = (type(err).__name__, str(err))
    status, value = broadcast_from_main(outcome)
    if status != "ok":
        raise {"UserError": UserError, "RunComplete": RunComplete}[status](value)
    return value


def _first_missing(path: Path) -> Path | None:
    """The topmost folder of `path` that does not exist yet (what creating it creates), or None."""
    missing = None
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing = folder
    return missing


def _inspect_output_dir(path: Path, overwrite: bool, config: dict | None) -> str | None:
    if path.exists() and not path.is_dir():
        raise UserError(f"--output_dir {path}: exists and is not a directory")
    track_output_dir(path, created=_first_missing(path), before=paths_under(path) if path.is_dir() else ())
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # a real write: os.access says yes to root on read-only mounts
            pass
    except OSError as err:
        raise UserError(f"--output_dir {path}: cannot write there ({err.strerror}); "
                        "choose a writable directory") from None
    if overwrite:
        _remove_previous_run(path)  # what is left (a model, a README) is replaced as the new run writes it
    if overwrite or not any(path.iterdir()):
        if config is not None:
            write_json(path / CONFIG_FILE, config)
        return None
    stored_path = path / CONFIG_FILE
    if not stored_path.is_file():
        raise UserError(f"--output_dir {path} is not empty and holds no {CONFIG_FILE} (not a run of this version, "
                        "so its settings cannot be compared); choose another directory (OUTPUT_DIR) or pass "
                        "--overwrite_output_dir")
    try:
        stored = json.loads(stored_path.read_text("utf-8"))
    except ValueError:
        raise UserError(f"{stored_path}: not valid JSON; choose another directory (OUTPUT_DIR) or pass "
                        "--overwrite_output_dir") from None
    if config is not None:
        differences = config_differences(stored, config)
        if differences:
            raise UserError(
                f"--output_dir {path} holds a run of another configuration ({len(differences)} setting"
                f"{'s' if len(differences) > 1 else ''} differ, stored → now):\n  " + "\n  ".join(differences)
                + "\nrun it into another directory (OUTPUT_DIR= / --output_dir) or replace that run with "
                  "--overwrite_output_dir")
    if RunStages(path, stored).done("run", broadcast=False):
        raise RunComplete(f"{path} holds a finished run, nothing to do; {where_results_are(path)} "
                          "(pass --overwrite_output_dir to run it again)")
    last = last_complete_checkpoint(path)
    completed = RunStages(path, stored).completed()
    reused = f"; reusing its completed {', '.join(completed)}" if completed else ""
    if last is not None:
        logger.info("resuming the interrupted run from %s%s", last, reused)
    else:
        logger.info("continuing the interrupted run in %s: training starts at step 0%s", path, reused)
    return last


class RunStages:
    """Which stages of a run are complete: `stages/<name>.done`, written after the stage's outputs.

    A marker holds the digest of the configuration that wrote it, so a stage is reused only when it is
    complete and was written by this configuration. Under data parallelism every rank gets rank 0's
    answer (a rank that skipped a stage the others run would wait forever in their collectives).
    """

    def __init__(self, output_dir, config: dict):
        self.folder = Path(output_dir) / "stages"
        self.digest = config_digest(config)

    def done(self, name: str, broadcast: bool = True) -> bool:
        marker = self.folder / f"{name}.done"
        answer = is_main_process() and marker.is_file() and marker.read_text("utf-8").strip() == self.digest
        return broadcast_from_main(answer) if broadcast else answer

    def completed(self) -> list[str]:
        return [p.stem for p in sorted(self.folder.glob("*.done")) if self.done(p.stem, broadcast=False)]

    def mark(self, name: str) -> None:
        if is_main_process():
            write_text(self.folder / f"{name}.done", self.digest + "\n")


def _requested_checkpoint(requested: str) -> str:
    match = CHECKPOINT_NAME.fullmatch(Path(requested).name)
    if not match or not _is_complete(Path(requested), int(match.group(1))):
        raise UserError(f"--resume_from_checkpoint {requested}: not a complete checkpoint-N folder; omit the "
                        "flag to resume the last complete checkpoint of --output_dir automatically")
    return requested


# What a previous run left that --overwrite_output_dir must not mix with the new run's files.
RUN_OUTPUTS = ("results.json", "results.md", "comparison.json", "comparison.md", "teacher_selection.json",
               "run_args.json", "environment.json", "predictions", "baseline", "train_results.json",
               "all_results.json", "trainer_state.json", CONFIG_FILE, "stages")


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


def remove_checkpoints(output_dir, keep: bool) -> None:
    """After a finished run: the intermediate `checkpoint-*` folders (optimizer state, 3x the model each)
    go unless `--keep_checkpoints`; the final model stays in the run directory itself."""
    if keep or not is_main_process():
        return
    removed = [p for p in Path(output_dir).iterdir() if CHECKPOINT_NAME.fullmatch(p.name) and p.is_dir()]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    if removed:
        logger.info("removed the intermediate %s (pass --keep_checkpoints to keep them)",
                    ", ".join(sorted(p.name for p in removed)))


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
