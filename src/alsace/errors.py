"""User-facing errors: one clear line, a non-zero exit, no traceback.

Anything the user can fix (a flag, a file, a checkpoint) raises `UserError` with a message that names
the input and the fix. Entry points wrap `main` in `run_cli`, which prints that line and exits 2.
Programming errors keep their traceback.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence


class UserError(Exception):
    """An error in the user's input: printed as one line, exit status 2."""


def run_cli(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> None:
    """Run an entry point's `main`, turning `UserError` into `error: <message>` and exit 2."""
    try:
        main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
