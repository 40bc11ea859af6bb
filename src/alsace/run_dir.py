"""The life of a run directory, in one place: created, continued, refused, restored, reported.

A run's output directory is created, continued or refused by `prepare_output_dir`: it stores the run's
resolved configuration (`run_config.json`) before any work; a rerun with the same configuration continues
(from the last complete `checkpoint-N`, or training from step 0, reusing the stages it completed:
`RunStages`), a rerun with another configuration is refused. Entry points wrap `main` in `run_cli`, which
ends every run the same way: one `error:` line and exit 2 for a `UserError`; a finished run says where its
results are; a run that fails for any reason leaves the output location as it was before the command (what
this invocation created is removed, parent folders included, `restore_output_dir`) unless it holds a
complete checkpoint to resume from; SIGINT (Ctrl-C) and SIGTERM (`kill`, `timeout`, cluster schedulers) say
how to continue and exit 130 and 143, as shells expect, keeping what a rerun reuses.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from alsace.distributed import broadcast_from_main, is_main_process
from alsace.errors import Interrupted, RunComplete, Terminated, UserError, script_variable_hint, stop_code
from alsace.files import write_json, write_text
from alsace.run_config import CONFIG_FILE, config_differences, config_digest

logger = logging.getLogger("alsace")
OVERWRITE_FLAG = "--overwrite_output_dir"  # pragma: no mutate (named in messages)

# The output directory of the run in progress (rank 0 only): the folders this invocation created above it
# (`created`: the topmost one, or None) and every path inside it before the command (`before`, relative).
_run = {"output_dir": None, "created": None, "before": None}


def track_output_dir(output_dir, created=None, before=frozenset()) -> None:
    """Remember the run's output directory: `run_cli` reports it at the end or restores it on failure."""
    _run.update(output_dir=Path(output_dir), created=None if created is None else Path(created),
                before=frozenset(before))


def paths_under(path: Path) -> set[str]:
    """Every file and folder under `path`, relative to it."""
    return {str(Path(root, name).relative_to(path)) for root, dirs, files in os.walk(path) for name in dirs + files}


def stored_config(output_dir) -> dict:
    """The configuration the run stored before any work (`run_config.json`): what its results belong to."""
    return json.loads((Path(output_dir) / CONFIG_FILE).read_bytes())


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
                        "choose a writable directory") from None  # pragma: no mutate
    if overwrite:
        _remove_previous_run(path)  # what is left (a model, a README) is replaced as the new run writes it
    if overwrite or not any(path.iterdir()):
        if config is not None:
            write_json(path / CONFIG_FILE, config)
        return None
    stored_path = path / CONFIG_FILE
    if not stored_path.is_file():
        raise UserError(f"--output_dir {path} is not empty and holds no {CONFIG_FILE} (not a run of this version, "
                        "so its settings cannot be compared); "  # pragma: no mutate
                        "choose another directory (OUTPUT_DIR) or pass "  # pragma: no mutate
                        f"{OVERWRITE_FLAG}")
    try:
        stored = json.loads(stored_path.read_bytes())
    except ValueError:
        raise UserError(f"{stored_path}: not valid JSON; choose another directory (OUTPUT_DIR) or pass "
                        f"{OVERWRITE_FLAG}") from None
    if config is not None:
        differences = config_differences(stored, config)
        if differences:
            raise UserError(
                f"--output_dir {path} holds a run of another configuration ({len(differences)} setting"
                f"{'s' if len(differences) > 1 else ''} differ, stored → now):\n  " + "\n  ".join(differences)
                + "\nrun it into another directory (OUTPUT_DIR= / --output_dir) or replace that run with "  # pragma: no mutate
                  f"{OVERWRITE_FLAG}")
    if RunStages(path, stored).done("run", broadcast=False):
        raise RunComplete(f"{path} holds a finished run, nothing to do; {where_results_are(path)} "
                          "(pass --overwrite_output_dir to run it again)")  # pragma: no mutate
    last = last_complete_checkpoint(path)
    completed = RunStages(path, stored).completed()
    reused = f"; reusing its completed {', '.join(completed)}" if completed else ""  # pragma: no mutate (logged only)
    if last is not None:
        logger.info("resuming the interrupted run from %s%s", last, reused)  # pragma: no mutate
    else:
        logger.info("continuing the interrupted run in %s: "  # pragma: no mutate
                    "training starts at step 0%s", path, reused)  # pragma: no mutate
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
        answer = is_main_process() and marker.is_file() and marker.read_bytes().decode().strip() == self.digest
        return broadcast_from_main(answer) if broadcast else answer

    def completed(self) -> list[str]:
        return [p.stem for p in sorted(self.folder.glob("*.done")) if self.done(p.stem, broadcast=False)]

    @staticmethod
    def marked(output_dir) -> list[str]:
        """Every stage marked done in `output_dir`, whichever configuration wrote it (to say what is kept)."""
        return sorted(p.stem for p in (Path(output_dir) / "stages").glob("*.done"))

    def mark(self, name: str) -> None:
        if is_main_process():
            write_text(self.folder / f"{name}.done", self.digest + "\n")


def _requested_checkpoint(requested: str) -> str:
    match = CHECKPOINT_NAME.fullmatch(Path(requested).name)
    if not match or not _is_complete(Path(requested), int(match.group(1))):
        raise UserError(f"--resume_from_checkpoint {requested}: not a complete checkpoint-N folder; omit the "
                        "flag to resume the last complete checkpoint "  # pragma: no mutate
                        "of --output_dir automatically"  # pragma: no mutate
                        )
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
        logger.warning("--overwrite_output_dir: removed the previous run's %s", names)  # pragma: no mutate


def remove_checkpoints(output_dir, keep: bool) -> None:
    """After a finished run: the intermediate `checkpoint-*` folders (optimizer state, 3x the model each)
    go unless `--keep_checkpoints`; the final model stays in the run directory itself."""
    if keep or not is_main_process():
        return
    removed = [p for p in Path(output_dir).iterdir() if CHECKPOINT_NAME.fullmatch(p.name) and p.is_dir()]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    if removed:
        logger.info("removed the intermediate %s (pass --keep_checkpoints to keep them)",  # pragma: no mutate
                    ", ".join(sorted(p.name for p in removed)))


CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")


def last_complete_checkpoint(path: Path, warn: bool = True) -> str | None:
    """The newest `checkpoint-N` whose `trainer_state.json` (the Trainer writes it last) is intact.

    A run killed while saving leaves a newer folder without it; resuming from that would crash or
    silently restart the optimizer, so it is skipped with a warning.
    """
    found = sorted(((int(m.group(1)), p) for p in Path(path).iterdir()
                    if (m := CHECKPOINT_NAME.fullmatch(p.name)) and p.is_dir()), reverse=True)
    for step, checkpoint in found:
        if _is_complete(checkpoint, step):
            return str(checkpoint)
        if warn:
            logger.warning("skipping %s: incomplete "  # pragma: no mutate
                           "(the run was stopped while saving it)",  # pragma: no mutate
                           checkpoint)
    return None


def _is_complete(checkpoint: Path, step: int) -> bool:
    try:
        return json.loads((checkpoint / "trainer_state.json").read_bytes()).get("global_step") == step
    except (OSError, ValueError):
        return False


def restore_output_dir(interrupted: bool = False) -> str:
    """Undo what this invocation wrote, unless the run can continue from it; say which in a few words.

    A complete checkpoint (or, after an interruption, a completed stage) is kept: the same command
    continues from it. Otherwise every path this invocation created is removed, then the output folder
    and its parents if this invocation created them; nothing that was there before is touched.
    """
    path, before = _run["output_dir"], _run["before"]
    if path is None or before is None or not path.is_dir():
        return ""
    checkpoint = last_complete_checkpoint(path, warn=False)
    if checkpoint:
        return f" ({path} is kept: rerun the same command to resume from {Path(checkpoint).name})"
    stages = RunStages.marked(path)
    if interrupted and stages:
        return f" ({path} is kept with its completed {', '.join(stages)}, which the rerun reuses)"
    new = paths_under(path) - before
    for rel in sorted(new):  # a folder before what it holds: removing it removes them, which are then skipped
        item = path / rel
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        elif item.exists() or item.is_symlink():
            item.unlink(missing_ok=True)
    created, removed = _run["created"], path
    if created is not None:
        folder = path
        while True:
            try:
                folder.rmdir()  # only empty folders: never another run's files
            except OSError:
                break
            removed = folder
            if folder == created or folder.parent == folder:
                break
            folder = folder.parent
        if not path.exists():
            return f" (removed {removed}, which this run had created)"
    return f" (removed what this run had written to {path})" if new else ""


def where_results_are(output_dir) -> str:
    """'results in DIR: results.md, ... ; plots: ...' for the files a finished run directory holds."""
    path = Path(output_dir)
    tables = [n for n in ("results.md", "comparison.md", "results.json", "comparison.json") if (path / n).is_file()]
    plots = sorted(p.name for p in path.glob("*.png"))
    text = f"results in {path}/: {', '.join(tables) or 'no results file'}"
    return text + (f"; plots: {', '.join(plots)}" if plots else "")


def restores_output_dir(main: Callable) -> Callable:
    """Decorate an entry point's `main`: whatever it raises, the output location is restored first
    (`restore_output_dir`), also when `main` is called in-process; `run_cli` prints the note it leaves."""
    import functools

    @functools.wraps(main)
    def guarded(*args, **kwargs):
        _run.update(output_dir=None, created=None, before=None)
        try:
            return main(*args, **kwargs)
        except RunComplete:
            raise
        except (Interrupted, KeyboardInterrupt, Exception) as err:
            err.restore_note = restore_output_dir(interrupted=isinstance(err, (Interrupted, KeyboardInterrupt)))
            raise

    return guarded


def _on_sigterm(signum, frame):
    raise Terminated()


def _note(err: BaseException, interrupted: bool = False) -> str:
    note = getattr(err, "restore_note", None)
    return restore_output_dir(interrupted) if note is None else note


def run_cli(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> None:
    """Run an entry point's `main`, ending it with one line and the right exit status."""
    _run.update(output_dir=None, created=None, before=None)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        main(argv)
    except UserError as err:
        print(f"error: {err}{script_variable_hint(str(err))}{_note(err)}", file=sys.stderr)
        sys.exit(2)
    except RunComplete as done:
        print(done)
        sys.exit(0)
    except (Interrupted, KeyboardInterrupt) as stop:
        note = _note(stop, interrupted=True)
        message = str(stop) or ("terminated (SIGTERM)" if stop_code(stop) == 143 else "interrupted") + (
            "; rerun the same command to continue" if "is kept" in note else "")
        if isinstance(stop, Interrupted) and "resume from checkpoint-" in message:
            note = ""  # the message already says which checkpoint is kept
        newline = "\n" if sys.stderr.isatty() else ""  # below a progress bar cut off mid-line
        print(f"{newline}{message}{note}", file=sys.stderr)
        sys.exit(stop_code(stop))
    except BaseException as err:
        if not isinstance(err, SystemExit):  # any other failure: the traceback, and nothing half-written
            note = _note(err)
            if note:
                print(f"error: {type(err).__name__}{note}", file=sys.stderr)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if _run["output_dir"] is not None and _run["output_dir"].is_dir():
        print(f"done: {where_results_are(_run['output_dir'])}")
