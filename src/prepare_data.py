"""Data preparation for clusters without internet: export the tasks from the Hub, snapshot a model, verify.

    python src/prepare_data.py --data_dir data --tasks xnli,pawsx,xcopa        # where the Hub is reachable
    python src/prepare_data.py --tasks none --model xlm-roberta-large --model_dir models/xlm-roberta-large
    python src/prepare_data.py --data_dir data --verify                       # on the cluster, after copying

Writes <data_dir>/<task>/<split>/<lang>.jsonl (the layout `--data_dir` reads) and <data_dir>/manifest.json
(source, Hub revision, row count and sha256 of every file); see alsace.prepare.export and data/README.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from alsace.arguments import parse, split_list
from alsace.errors import UserError
from alsace.logs import configure_logging
from alsace.run_dir import run_cli
from alsace.prepare.export import SOURCES, TASK_SOURCES, HubClient, export_task, snapshot_model, verify

logger = logging.getLogger("alsace.prepare_data")


@dataclass
class ExportArguments:
    data_dir: str = field(default="data", metadata={"help": "Where <task>/<split>/<lang>.jsonl and manifest.json go."})
    tasks: str = field(default="xnli,pawsx,xcopa", metadata={
        "help": "Comma-separated tasks to export (xnli, pawsx, xcopa = XCOPA + COPA for English), or none."})
    languages: str | None = field(default=None, metadata={"help": "Only these languages (default: all of each task)."})
    splits: str = field(default="train,validation,test", metadata={"help": "Comma-separated splits to export."})
    train_languages: str = field(default="en", metadata={
        "help": "en: the train split of English only (what ALSACE trains on); all: every language's "
                "(machine-translated; XNLI's are 392,702 rows each)."})
    hub_revisions: str | None = field(default=None, metadata={
        "help": "Pin Hub revisions per source, e.g. xnli=<commit>,copa=refs/convert/parquet "
                f"(sources: {', '.join(SOURCES)}). Default: main; the resolved commit is recorded."})
    verify: bool = field(default=False, metadata={
        "help": "Check <data_dir> against its manifest (files, row counts, sha256, valid rows, parallel "
                "alignment) instead of exporting."})

    def __post_init__(self):
        if self.train_languages not in ("en", "all"):
            raise UserError(f"--train_languages {self.train_languages!r}: choose en or all")
        unknown = [t for t in split_list(self.tasks) or [] if t != "none" and t not in TASK_SOURCES]
        if unknown:
            raise UserError(f"--tasks: unknown {', '.join(unknown)}; choose from {', '.join(TASK_SOURCES)} or none")
        bad = [s for s in split_list(self.splits) or [] if s not in ("train", "validation", "test")]
        if bad:
            raise UserError(f"--splits: unknown {', '.join(bad)}; choose from train, validation, test")

    def revisions(self) -> dict[str, str]:
        pins = {}
        for item in split_list(self.hub_revisions) or []:
            name, _, revision = item.partition("=")
            if name not in SOURCES or not revision:
                raise UserError(f"--hub_revisions {item!r}: use SOURCE=REVISION with SOURCE in {', '.join(SOURCES)}")
            pins[name] = revision
        return pins


@dataclass
class ModelSnapshotArguments:
    model: str | None = field(default=None, metadata={"help": "Hub model id to snapshot, e.g. xlm-roberta-large."})
    model_dir: str | None = field(default=None, metadata={
        "help": "Where the snapshot goes (default: models/<model id>); pass it as --model_name_or_path later."})
    model_revision: str = field(default="main", metadata={"help": "Model revision (branch, tag or commit)."})


def main(argv=None) -> dict:
    export_args, model_args = parse((ExportArguments, ModelSnapshotArguments), argv, __doc__)
    configure_logging()
    if export_args.verify:
        problems, checked = verify(export_args.data_dir)
        for problem in problems:
            print(f"problem: {problem}")
        if problems:
            raise UserError(f"{export_args.data_dir}: {len(problems)} problem(s) against its manifest (listed "
                            "above); re-export or re-copy those files")
        print(f"ok: {checked} files in {export_args.data_dir} match {export_args.data_dir}/manifest.json")
        return {"checked": checked}

    client, done = HubClient(), {}
    tasks = [t for t in split_list(export_args.tasks) or [] if t != "none"]
    for task in tasks:
        entry = export_task(task, export_args.data_dir, client, split_list(export_args.splits),
                            split_list(export_args.languages), export_args.train_languages, export_args.revisions())
        done[task] = entry
        rows = sum(f["rows"] for f in entry["files"].values())
        print(f"{task}: {len(entry['files'])} files, {rows} rows -> {Path(export_args.data_dir) / task}")
        for note in entry["notes"]:
            print(f"  note: {note}")
    if model_args.model:
        model_dir = model_args.model_dir or str(Path("models") / model_args.model)
        record = snapshot_model(model_args.model, model_dir, client, model_args.model_revision)
        done["model"] = record
        print(f"{model_args.model} @ {record['revision']}: {len(record['files'])} files -> {model_dir}")
    if not done:
        raise UserError("nothing to do: give --tasks, --model or --verify")
    return done


if __name__ == "__main__":
    run_cli(main)
