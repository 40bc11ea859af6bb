"""User-facing errors and the end of a run: one clear line, a meaningful exit status, no traceback.

Anything the user can fix (a flag, a file, a checkpoint) raises `UserError` with a message that names
the input and the fix. Entry points wrap `main` in `run_cli`, which prints that line and exits 2.
Programming errors keep their traceback (exit 1). `run_cli` also ends every run the same way: a finished
run says where its results are; a run that fails for any reason leaves the output location as it was
before the command (what this invocation created is removed, parent folders included) unless it holds a
complete checkpoint to resume from; SIGINT (Ctrl-C) and SIGTERM (`kill`, `timeout`, cluster schedulers)
say how to continue and exit 130 and 143, as shells expect, keeping what a rerun reuses.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import Callable, Sequence


class UserError(Exception):
    """An error in the user's input: printed as one line, exit status 2."""


class RunComplete(Exception):
    """--output_dir already holds this finished run: said in one line, exit status 0."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is (so it stops like Ctrl-C does); exit status 143."""


class Interrupted(Exception):
    """SIGINT or SIGTERM: one line saying what is kept and how to continue, exit status 130 or 143."""

    def __init__(self, message: str, code: int = 130):
        super().__init__(message)
        self.code = code


def stop_code(stop: BaseException) -> int:
    """The exit status of a stop: 143 for SIGTERM, 130 for SIGINT."""
    return getattr(stop, "code", 143 if isinstance(stop, Terminated) else 130)


def _on_sigterm(signum, frame):
    raise Terminated()


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


def _complete_checkpoint(path: Path) -> str | None:
    """The name of a complete `checkpoint-N` folder (its trainer_state.json is written last), if any."""
    import json

    found = sorted(((int(m.group(1)), p) for p in path.glob("checkpoint-*")
                    if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))), reverse=True)
    for step, folder in found:  # the newest first
        try:
            state = json.loads((folder / "trainer_state.json").read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if state.get("global_step") == step:
            return folder.name
    return None


def _completed_stages(path: Path) -> list[str]:
    stages = path / "stages"
    return sorted(p.stem for p in stages.glob("*.done")) if stages.is_dir() else []


def restore_output_dir(interrupted: bool = False) -> str:
    """Undo what this invocation wrote, unless the run can continue from it; say which in a few words.

    A complete checkpoint (or, after an interruption, a completed stage) is kept: the same command
    continues from it. Otherwise every path this invocation created is removed, then the output folder
    and its parents if this invocation created them; nothing that was there before is touched.
    """
    path, before = _run["output_dir"], _run["before"]
    if path is None or before is None or not path.is_dir():
        return ""
    checkpoint = _complete_checkpoint(path)
    if checkpoint:
        return f" ({path} is kept: rerun the same command to resume from {checkpoint})"
    stages = _completed_stages(path)
    if interrupted and stages:
        return f" ({path} is kept with its completed {', '.join(stages)}, which the rerun reuses)"
    new = paths_under(path) - before
    for rel in sorted(new, key=lambda r: r.count(os.sep), reverse=True):
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


def _note(err: BaseException, interrupted: bool = False) -> str:
    note = getattr(err, "restore_note", None)
    return restore_output_dir(interrupted) if note is None else note


def script_variable_hint(message: str) -> str:
    """` (LR= in run_script/x.sh)` when the first flag a message names came from a run script's variable.

    The scripts export `ALSACE_SCRIPT` (their path) and `ALSACE_SCRIPT_VARIABLES` (`flag=VAR ...`).
    """
    script, pairs = os.environ.get("ALSACE_SCRIPT"), os.environ.get("ALSACE_SCRIPT_VARIABLES", "")
    flag = re.search(r"--(\w+)", message)
    variables = dict(pair.split("=", 1) for pair in pairs.split() if "=" in pair)
    if not script or not flag or flag.group(1) not in variables:
        return ""
    return f" (set by {variables[flag.group(1)]}= in {script})"


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
