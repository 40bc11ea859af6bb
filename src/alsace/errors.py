"""The errors a user sees: what went wrong, as one line that names the input and the fix.

Anything the user can fix (a flag, a file, a checkpoint) raises `UserError`; a stop (Ctrl-C, SIGTERM)
becomes `Interrupted` with its exit status. No state and no files here: how a run ends (`run_cli`) and what
happens to its output directory live in `alsace.run_dir`.
"""

from __future__ import annotations

import os
import re


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
