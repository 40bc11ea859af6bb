"""The one logging setup of the entry points: `time LEVEL logger: message` lines on stderr.

`configure_logging` is what every entry point that logs calls (`src/aggregate.py`, `src/benchmark.py`,
`src/prepare_data.py`, and `src/finetune.py` / `src/distill.py` through `alsace.runs.setup_logging`, which
also quiets transformers and picks the level by rank). Light: no torch or transformers import.
"""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%H:%M:%S"


def configure_logging(level: int = logging.INFO) -> None:
    """Format and level of the root logger (a no-op when the process configured logging already)."""
    logging.basicConfig(format=LOG_FORMAT, datefmt=DATE_FORMAT, level=level)
