"""Data preparation for machines without internet: Hub -> local JSONL files + manifest, and verification.

`export_task` downloads a task's sources from the Hugging Face Hub (through a `HubClient`; tests pass
an in-memory stand-in) and writes `<data_dir>/<task>/<split>/<lang>.jsonl`, the layout `alsace.data`
reads: the task's text fields, `label` as an integer index and `id` where the source has one. Every
file is recorded in `<data_dir>/manifest.json` with its source, the exact Hub revision (a commit
sha), its row count and its sha256. `verify` checks a data directory against that manifest: files,
counts, hashes, row validity and the row alignment of parallel splits (equal counts, and equal
labels and ids row by row, which every parallel evaluation set here has).

Rows a model cannot use (an empty text field, a hidden label such as -1) are dropped; in a parallel
split a row is dropped in every language at once, so the files stay row-aligned, and the dropped
rows are listed in the manifest. A language whose whole split has hidden labels (COPA's test set on
the Hub) is not exported, and a note in the manifest says so.
"""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path

from alsace.data import MANIFEST, check_row, json_objects, misalignments, open_text, read_hub, row_counts
from alsace.errors import UserError
from alsace.files import sha256_of, write_json, write_text
from alsace.tasks import TASKS, HubSource, Task

logger = logging.getLogger(__name__)
FORMAT_VERSION = 1


# Exportable tasks (those with Hub sources) and their sources, by name; all of it comes from the registry.
TASK_SOURCES: dict[str, tuple[HubSource, ...]] = {name: task.hub_sources for name, task in TASKS.items()
                                                 if task.hub_sources}
SOURCES: dict[str, HubSource] = {source.name: source for sources in TASK_SOURCES.values() for source in sources}


class HubClient:
    """The real Hugging Face Hub: revisions from `huggingface_hub`, rows from `alsace.data.read_hub`.

    A thin layer over data's reader: the exporter pins revisions and snapshots models, and tests
    replace the whole client with an in-memory stand-in."""

    def dataset_revision(self, repo_id: str, revision: str) -> str:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(repo_id, revision=revision).sha

    def load_split(self, repo_id: str, config: str, split: str, revision: str):
        return read_hub(repo_id, config, split, revision)

    def model_files(self, repo_id: str, revision: str) -> tuple[str, list[str]]:
        from huggingface_hub import HfApi

        info = HfApi().model_info(repo_id, revision=revision)
        return info.sha, [s.rfilename for s in info.siblings]

    def download_model(self, repo_id: str, revision: str, local_dir: Path, allow_patterns: list[str]) -> None:
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id=repo_id, revision=revision, local_dir=local_dir, allow_patterns=allow_patterns)


def _hub(what: str, call):
    """Run one Hub call; any failure becomes one line saying what failed and what to do offline."""
    try:
        return call()
    except UserError:
        raise
    except Exception as err:  # the Hub and datasets raise many types; all mean "not from here"
        message = str(err).splitlines()[0][:200] if str(err) else ""
        raise UserError(
            f"{what}: the Hugging Face Hub call failed ({type(err).__name__}: {message}); run "
            "run_script/prepare_data.sh where the Hub is reachable and copy the data directory over"
        ) from None


# --------------------------------------------------------------------------------------------------
# Alignment
# --------------------------------------------------------------------------------------------------


def align_split(per_language: dict[str, list[tuple[dict | None, str | None]]], what: str):
    """Drop unusable rows; in a parallel split, a row unusable in any language is dropped in all.

    Returns `(rows per language, dropped [{row, language, reason}], skipped languages {lang: why})`.
    A language none of whose rows is usable (e.g. hidden test labels) is skipped, not aligned.
    """
    skipped = {lang: rows[0][1] if rows else "no rows" for lang, rows in per_language.items()
               if all(r is None for r, _ in rows)}
    usable = {lang: rows for lang, rows in per_language.items() if lang not in skipped}
    if misalignments(usable):
        raise UserError(f"{what}: languages have different row counts ({row_counts(usable)}), so rows cannot be "
                        "aligned")
    dropped = []
    n = len(next(iter(usable.values()), ()))
    for i in range(n):
        for lang, rows in usable.items():
            if rows[i][0] is None:
                dropped.append({"row": i, "language": lang, "reason": rows[i][1]})
                break
    bad = {d["row"] for d in dropped}
    kept = {lang: [r for i, (r, _) in enumerate(rows) if i not in bad] for lang, rows in usable.items()}
    return kept, dropped, skipped


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------


def write_rows(path: Path, rows: list[dict]) -> dict:
    """Write one JSONL file (atomically); return its manifest entry."""
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return {"rows": len(rows), "bytes": path.stat().st_size, "sha256": sha256_of(path)}


def export_task(task: str, data_dir: str | Path, client, splits=("train", "validation", "test"),
                languages: list[str] | None = None, train_languages: str = "en",
                revisions: dict[str, str] | None = None) -> dict:
    """Export one task (all its sources) and record it in the manifest; returns the task's entry.

    `train_languages`: "en" exports the train split of English only (the only one ALSACE trains on;
    the others are machine translations), "all" every language's. `revisions`: source name -> Hub
    revision to pin (default: the source's, "main"); the resolved commit sha is recorded.
    """
    if task not in TASK_SOURCES:
        raise UserError(f"--tasks: unknown task {task!r}; choose from {', '.join(TASK_SOURCES)}")
    data_dir, task = Path(data_dir), TASKS[task]
    entry = {"sources": {}, "text_fields": None, "num_labels": None, "files": {}, "dropped": {}, "notes": []}
    for source in task.hub_sources:
        wanted = [lang for lang in source.languages if languages is None or lang in languages]
        if not wanted:
            continue
        revision = (revisions or {}).get(source.name, source.revision)
        sha = _hub(f"{source.hub_id} (revision {revision})", lambda: client.dataset_revision(source.hub_id, revision))
        entry["sources"][source.name] = {"hub_id": source.hub_id, "revision": sha, "requested_revision": revision,
                                         "license": source.license}
        entry["text_fields"], entry["num_labels"] = list(task.text_fields), task.num_labels
        for split in (s for s in splits if s in source.splits):
            split_langs = wanted if split != "train" or train_languages == "all" else [
                lang for lang in wanted if lang == "en"]
            if split_langs:
                _export_split(task, source, split, split_langs, sha, client, data_dir, entry)
    if not entry["files"]:
        raise UserError(f"task {task.name}: nothing to export for the requested --languages / --splits")
    # Sources are aligned one by one above; COPA's English must also line up with XCOPA's languages.
    task_dir = data_dir / task.name
    rows = {relative: _read_checked(task_dir / relative, task)[0]
            for relative in entry["files"]}
    for problem in _alignment_problems(task_dir, rows):
        logger.warning("%s", problem)
        entry["notes"].append(f"WARNING {problem}")
    _update_manifest(data_dir, task.name, entry)
    return entry


def _export_split(task: Task, source: HubSource, split: str, split_langs: list[str], sha: str, client,
                  data_dir: Path, entry: dict) -> None:
    per_language = {}
    for lang in split_langs:
        config = source.config or lang
        raw = _hub(f"{source.hub_id} ({config}, {split})",
                   lambda: client.load_split(source.hub_id, config, source.splits[split], sha))
        per_language[lang] = [check_row(dict(r), task, None, id_column=source.id_column) for r in raw]
        logger.info("%s %s %s: %d rows", source.hub_id, config, split, len(per_language[lang]))
    kept, dropped, skipped = align_split(per_language, f"{source.hub_id} {split}")
    for lang, why in skipped.items():
        entry["notes"].append(f"{split}/{lang}.jsonl not exported: no usable row in {source.hub_id} ({why})")
    if dropped:
        entry["dropped"].setdefault(split, []).extend({**d, "source": source.name} for d in dropped)
    for lang, rows in kept.items():
        relative = f"{split}/{lang}.jsonl"
        entry["files"][relative] = {**write_rows(data_dir / task.name / relative, rows), "source": source.name}


def _update_manifest(data_dir: Path, task: str, entry: dict) -> None:
    path = data_dir / MANIFEST
    manifest = json.loads(path.read_text("utf-8")) if path.is_file() else {"format_version": FORMAT_VERSION, "tasks": {}}
    import datasets

    entry["exported_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    entry["datasets_version"] = datasets.__version__
    manifest["tasks"][task] = entry
    write_json(path, manifest)


# --------------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------------


def verify(data_dir: str | Path) -> tuple[list[str], int]:
    """Check every manifest file (exists, rows, sha256, valid rows) and parallel alignment.

    Returns (problems, number of files checked); no problem means the directory matches its manifest.
    """
    data_dir = Path(data_dir)
    path = data_dir / MANIFEST
    if not path.is_file():
        raise UserError(f"{path}: no manifest; export the data with run_script/prepare_data.sh first")
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: invalid JSON ({err.msg}); re-export the data") from None
    problems, checked = [], 0
    for task, entry in manifest.get("tasks", {}).items():
        if task not in TASK_SOURCES:
            problems.append(f"{path}: unknown task {task!r} (exportable: {', '.join(TASK_SOURCES)})")
            continue
        loaded = {}
        for relative, expected in entry["files"].items():
            file = data_dir / task / relative
            checked += 1
            if not file.is_file():
                problems.append(f"{file}: missing")
                continue
            rows, bad = _read_checked(file, TASKS[task])
            problems += bad
            if len(rows) != expected["rows"]:
                problems.append(f"{file}: {len(rows)} rows, manifest says {expected['rows']}")
            if sha256_of(file) != expected["sha256"]:
                problems.append(f"{file}: sha256 differs from the manifest (file changed since export)")
            loaded[relative] = rows
        problems += _alignment_problems(data_dir / task, loaded)
    return problems, checked


def _read_checked(file: Path, task: Task) -> tuple[list[dict], list[str]]:
    """The rows of one file (as written), and its first invalid row (if any) as a problem line.

    Rows are checked by the training code's own reader (`alsace.data`); a line that is not a JSON
    object, or text that is not UTF-8, ends the reading of the file."""
    rows, problems = [], []
    try:
        with open_text(file) as handle:
            for line_no, obj in json_objects(handle, file):
                where = f"{file}:{line_no}"
                try:
                    check_row(obj, task, where)
                except UserError as err:
                    if not problems:
                        problems.append(f"{where}: not a valid row ({str(err).removeprefix(where + ': ')})")
                rows.append(obj)
    except UserError as err:
        problems = problems or [str(err)]
    return rows, problems


def _same_label_and_id(a: dict, b: dict) -> bool:
    return a.get("label") == b.get("label") and a.get("id") == b.get("id")


def _alignment_problems(task_dir: Path, loaded: dict[str, list[dict]]) -> list[str]:
    """Per split with several languages: equal counts, then equal labels and ids row by row."""
    problems = []
    by_split = {}
    for relative, rows in loaded.items():
        split, name = relative.split("/")
        by_split.setdefault(split, {})[name.removesuffix(".jsonl")] = rows
    for split, per_language in by_split.items():
        if len(per_language) < 2:
            continue
        ref_lang, ref = next(iter(per_language.items()))
        for lang, i in misalignments(per_language, _same_label_and_id):
            rows = per_language[lang]
            if i is None:
                problems.append(f"{task_dir / split}: {lang} has {len(rows)} rows, {ref_lang} {len(ref)}: not parallel")
                continue
            a, b = ref[i], rows[i]
            problems.append(f"{task_dir / split}: row {i + 1} differs between {ref_lang} and {lang} "
                            f"(label {a.get('label')!r} vs {b.get('label')!r}, id {a.get('id')!r} vs "
                            f"{b.get('id')!r}): not parallel")
    return problems


# --------------------------------------------------------------------------------------------------
# Model snapshots
# --------------------------------------------------------------------------------------------------

MODEL_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "tokenizer*", "spiece*",
                  "sentencepiece*"]


def snapshot_model(name: str, model_dir: str | Path, client, revision: str = "main") -> dict:
    """Download a model's config, tokenizer and safetensors weights into `model_dir` for offline use.

    Only safetensors weights are fetched (no pickled `.bin`, no TF/Flax/ONNX copies); a repository
    without them is refused. `snapshot.json` records the commit sha and the sha256 of every file.
    """
    sha, files = _hub(f"model {name} (revision {revision})", lambda: client.model_files(name, revision))
    if not any(f.endswith(".safetensors") for f in files):
        raise UserError(f"--model {name}: the repository has no safetensors weights; convert it first "
                        "(this project never loads pickled .bin files)")
    model_dir = Path(model_dir)
    _hub(f"model {name}", lambda: client.download_model(name, sha, model_dir, MODEL_PATTERNS))
    record = {"model": name, "revision": sha, "requested_revision": revision, "files": {}}
    for file in sorted(p for p in model_dir.rglob("*") if p.is_file() and ".cache" not in p.parts):
        if file.name == "snapshot.json":
            continue
        record["files"][str(file.relative_to(model_dir))] = {"bytes": file.stat().st_size, "sha256": sha256_of(file)}
    write_json(model_dir / "snapshot.json", record)
    return record
