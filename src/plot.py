"""(Re)draw the figures of a finished run and link them from its markdown files (`alsace.report.plots`).

    python src/plot.py --run_dir outputs/xnli-distill

Per-language accuracy (before -> after for a distillation run) and teacher selection, each as PNG, PDF
and SVG beside the run's results; prints the PNGs written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from alsace.arguments import parse
from alsace.errors import UserError
from alsace.run_dir import run_cli
from alsace.report.plots import plot_run


@dataclass
class PlotArguments:
    run_dir: str = field(default="", metadata={"help": "A finished run directory (it holds results.json)."})
    source_language: str = field(default="en", metadata={"help": "The language fine-tuned on (bold in the figure)."})

    def __post_init__(self):
        if not self.run_dir:
            raise UserError("--run_dir is required: the finished run whose figures to draw")
        if not (Path(self.run_dir) / "results.json").is_file():
            raise UserError(f"--run_dir {self.run_dir}: no results.json there; pass a finished run directory")


def main(argv=None) -> list[Path]:
    (args,) = parse((PlotArguments,), argv, __doc__)
    written = plot_run(args.run_dir, args.source_language)
    for png in written:
        print(png)
    return written


if __name__ == "__main__":
    run_cli(main)
