"""Mean ± std over seeds: per language, average, transfer gap and the before -> after changes.

    python src/aggregate.py --run_dirs outputs/ms/seed-13/distill outputs/ms/seed-21/distill \
        --output_dir outputs/ms

Reads finished run directories (all fine-tuning or all distillation runs), refuses runs whose task,
model or hyperparameters differ (naming the field), and writes aggregate.json and aggregate.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alsace.aggregation import aggregate, aggregate_markdown, check_compatible, load_run
from alsace.arguments import AggregateArguments, parse, split_list
from alsace.errors import run_cli
from alsace.reporting import write_json, write_text

logger = logging.getLogger("alsace.aggregate")


def main(argv=None) -> dict:
    (args,) = parse((AggregateArguments,), argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO)
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
