"""Mean ± std over seeds: per language, average, transfer gap and the before -> after changes.

    python src/aggregate.py --run_dirs outputs/ms/seed-13/distill outputs/ms/seed-21/distill \
        --output_dir outputs/ms

Reads finished run directories (all fine-tuning or all distillation runs), refuses runs whose task,
model or hyperparameters differ (naming the field), and writes aggregate.json and aggregate.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from alsace.arguments import parse, split_list
from alsace.errors import UserError
from alsace.run_dir import run_cli
from alsace.files import write_json, write_text
from alsace.logs import configure_logging
from alsace.report.aggregation import aggregate, aggregate_markdown, check_compatible, load_run

logger = logging.getLogger("alsace.aggregate")


@dataclass
class AggregateArguments:
    run_dirs: list[str] = field(default_factory=list, metadata={
        "help": "Finished run directories of one configuration, one per seed (all fine-tuning or all "
                "distillation runs)."})
    output_dir: str = field(default="", metadata={"help": "Where aggregate.json and aggregate.md are written."})
    ignore_fields: str | None = field(default=None, metadata={
        "help": "Comma-separated run_args fields to leave out of the same-configuration check, for "
                "differences that do not change the numbers (e.g. data_dir after moving the data)."})

    def __post_init__(self):
        if not self.run_dirs:
            raise UserError("--run_dirs: give the run directories to aggregate, e.g. outputs/ms/seed-*/distill")
        if not self.output_dir:
            raise UserError("--output_dir: say where aggregate.json and aggregate.md go")


def main(argv=None) -> dict:
    (args,) = parse((AggregateArguments,), argv, __doc__)
    configure_logging()
    ignore = frozenset(split_list(args.ignore_fields) or [])
    runs = [load_run(run_dir, ignore) for run_dir in args.run_dirs]
    check_compatible(runs)
    agg = aggregate(runs)
    markdown = aggregate_markdown(agg)
    write_json(Path(args.output_dir) / "aggregate.json", agg)
    write_text(Path(args.output_dir) / "aggregate.md", markdown)
    logger.info("%d runs aggregated into %s\n%s", len(runs), Path(args.output_dir) / "aggregate.md", markdown)
    return agg


if __name__ == "__main__":
    run_cli(main)
