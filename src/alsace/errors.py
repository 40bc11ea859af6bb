"""User-facing errors and the end of a run: one clear line, a meaningful exit status, no traceback.

Anything the user can fix (a flag, a file, a checkpoint) raises `UserError` with a message that names
the input and the fix. Entry points wrap `main` in `run_cli`, which prints that line and exits 2.
Programming errors keep their traceback. `run_cli` also ends every run the same way: a finished run
says where its results are; a run that fails before its first checkpoint removes the output directory
it created (nothing half-written); Ctrl-C says how to resume and exits 130, as shells expect.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Callable, Sequence


class UserError(Exception):
    """An error in the user's input: printed as one line, exit status 2."""


class RunComplete(Exception):
    """--output_dir already holds this finished run: said in one line, exit status 0."""


class Interrupted(Exception):
    """Ctrl-C (SIGINT): one line saying what is kept and how to resume, exit status 130."""


# The output directory of the run in progress, and whether this process created it (rank 0 only).
_run = {"output_dir": None, "created": False}


def track_output_dir(output_dir, created: bool) -> None:
    """Remember the run's output directory: `run_cli` reports it at the end or removes it on failure."""
    _run.update(output_dir=Path(output_dir), created=created)


def _holds_a_model(path: Path) -> bool:
    return any(p.name.startswith("checkpoint-") or p.suffix == ".safetensors" for p in path.iterdir())


def remove_failed_start() -> str:
    """Remove the output directory this run created if it holds no checkpoint or model yet."""
    path = _run["output_dir"]
    if path is None or not _run["created"] or not path.is_dir() or _holds_a_model(path):
        return ""
    shutil.rmtree(path, ignore_errors=True)
    return f" (removed {path}, which this run had created)"


def where_results_are(output_dir) -> str:
    """'results in DIR: results.md, ... ; plots: ...' for the files a finished run directory holds."""
    path = Path(output_dir)
    tables = [n for n in ("results.md", "comparison.md", "results.json", "comparison.json") if (path / n).is_file()]
    plots = sorted(p.name for p in path.glob("*.png"))
    text = f"results in {path}/: {', '.join(tables) or 'no results file'}"
    return text + (f"; plots: {', '.join(plots)}" if plots else "")


def run_cli(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> None:
    """Run an entry point's `main`, ending it with one line and the right exit status."""
    _run.update(output_dir=None, created=False)
    try:
        main(argv)
    except UserError as err:
        print(f"error: {err}{remove_failed_start()}", file=sys.stderr)
        sys.exit(2)
    except RunComplete as done:
        print(done)
        sys.exit(0)
    except (Interrupted, KeyboardInterrupt) as stop:
        message = str(stop) or "interrupted before training started; nothing to resume"
        newline = "\n" if sys.stderr.isatty() else ""  # below a progress bar cut off mid-line
        print(f"{newline}{message}{remove_failed_start()}", file=sys.stderr)
        sys.exit(130)
    if _run["output_dir"] is not None and _run["output_dir"].is_dir():
        print(f"done: {where_results_are(_run['output_dir'])}")
