"""Reading task data: local JSONL files (always) or the Hugging Face Hub (when reachable).

Local layout: `<data_dir>/<task>/<split>/<lang>.jsonl`, split in `train, validation, test`, one JSON
object per line with the task's text fields and an integer `label` (index into the task's label
names); an optional `id` must then match across languages row by row. Every problem is reported as a
`UserError` naming the file (and line) and the fix.

The unlabeled parallel pool (teacher selection and distillation) is built here too: the first N rows
of every language's dev split with the labels dropped (the original's choice), or a user file.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

from alsace.errors import UserError
from alsace.files import sha256_of
from alsace.tasks import Task

logger = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")
MANIFEST = "manifest.json"  # written by the exporter (`prepare_data.py`): every file it wrote, with its sha256


def local_path(task: Task, data_dir: str | Path, split: str, lang: str) -> Path:
    base = Path(task.data_dir) if task.data_dir else Path(data_dir) / task.name
    return base / split / f"{lang}.jsonl"


def json_objects(lines, name, hint: str = ""):
    """`(line_no, object)` for each non-blank line of a JSONL text; a bad line is a one-line `UserError`."""
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{name}:{line_no}: invalid JSON ({err.msg}){hint}") from None
        if not isinstance(obj, dict):
            raise UserError(f"{name}:{line_no}: expected a JSON object per line")
        yield line_no, obj


def read_jsonl(path: Path, task: Task, need_labels: bool = True) -> list[dict]:
    """Read and validate one local file; returns normalised rows (text fields, label, optional id)."""
    if not path.is_file():
        raise UserError(
            f"{path}: data file not found; export it with run_script/prepare_data.sh, "
            "or point --data_dir at a folder holding <task>/<split>/<lang>.jsonl"
        )
    with open_text(path) as handle:
        rows = [check_row(obj, task, f"{path}:{line_no}", need_labels)[0]
                for line_no, obj in json_objects(handle, path, "; fix or re-export the file")]
    if not rows:
        raise UserError(f"{path}: the file has no rows")
    return rows


class RowProblem(ValueError):
    """Why a row cannot be used: `kind` (text, candidates or label), `reason` (a few words, what the manifest
    records for a skipped Hub row) and `message` (the sentence an error gives after the file and line)."""

    def __init__(self, kind: str, reason: str, message: str):
        super().__init__(message)
        self.kind, self.reason, self.message = kind, reason, message


def check_row(obj: dict, task: Task, where: str | None = None, need_labels: bool = True,
              id_column: str | None = "id") -> tuple[dict | None, str | None]:
    """The one row validator: a raw row (a local file's JSON object, a Hub row, a pool file's item in one
    language) as a normalised row (text fields, candidates, label, id), checked.

    Raise mode (`where` given, e.g. `file:line`): a bad row is a `UserError` starting with `where`.
    Skip mode (`where` None, Hub rows): a bad row is `(None, reason)`, the reason the exporter records in
    the manifest; reading from the Hub and exporting for offline machines both use it, so a run reads the
    same rows either way. Returns `(row, None)` for a good row. `id_column`: the column kept as the row's
    `id` where the row has it (a Hub source's id column; a local file's optional `id`); None: no id.
    """
    try:
        return _normalised_row(obj, task, need_labels, id_column), None
    except RowProblem as problem:
        if where is None:
            return None, problem.reason
        raise UserError(f"{where}: {problem.message}") from None


def _normalised_row(obj: dict, task: Task, need_labels: bool, id_column: str | None) -> dict:
    """`check_row`'s checks, in order: text fields, candidates (probing), label; the first problem is raised
    as a `RowProblem`."""
    row = {}
    for name in task.text_fields:
        value = obj.get(name)
        if not isinstance(value, str) or not value.strip():
            raise RowProblem("text", f"empty {name}", f"field {name!r} is missing or empty; every row needs "
                                                      f"non-empty {', '.join(task.text_fields)}")
        row[name] = value
    num_classes = task.num_labels
    if task.candidate_field:
        row[task.candidate_field] = _candidates(obj, task)
        num_classes = len(row[task.candidate_field])
    if need_labels:
        label = obj.get("label")
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < num_classes:
            raise RowProblem("label", f"label {label!r} (hidden or out of range)",
                             f"label {label!r} is not an integer in 0..{num_classes - 1} "
                             f"({', '.join(task.label_names[:num_classes])})")
        row["label"] = label
    if id_column is not None and id_column in obj:
        row["id"] = str(obj[id_column])
    return row


def _candidates(obj: dict, task: Task) -> list[str]:
    """A probing row's candidate answers, checked, and its prompt's single mask slot."""
    candidates = obj.get(task.candidate_field)
    if (not isinstance(candidates, list) or not 2 <= len(candidates) <= task.num_labels
            or not all(isinstance(c, str) and c.strip() for c in candidates)):
        raise RowProblem("candidates", f"bad {task.candidate_field}",
                         f"{task.candidate_field!r} must be a list of 2..{task.num_labels} non-empty strings")
    for name in task.text_fields:
        if obj[name].count(task.mask_slot) != 1:
            raise RowProblem("candidates", f"mask slot in {name}",
                             f"field {name!r} must contain the mask slot {task.mask_slot!r} exactly once")
    return candidates


@contextlib.contextmanager
def open_text(path: Path):
    """Open a UTF-8 text file; an unreadable or non-UTF-8 file becomes a one-line `UserError`."""
    try:
        handle = open(path, encoding="utf-8")
    except OSError as err:
        raise UserError(f"{path}: cannot read it ({err.strerror}); check the file and its permissions") from None
    with handle:
        try:
            yield handle
        except UnicodeDecodeError:  # raised while the caller iterates over lines
            raise UserError(f"{path}: not UTF-8 text; re-export the file as UTF-8") from None


def read_hub(hub_id: str, config: str | None, split: str, revision: str | None = None):
    """One split of a Hub dataset as `datasets` loads it: the one place rows are read from the Hub
    (training here, `alsace.prepare.export` for prepare_data.py). `revision`: a branch, tag or commit to pin."""
    import datasets

    pinned = {} if revision is None else {"revision": revision}
    return datasets.load_dataset(hub_id, config, split=split, **pinned)


def _read_hub_or_explain(hub_id: str, config: str | None, split: str):
    """`read_hub` for training: any failure becomes one `UserError` pointing to exported files."""
    try:
        return read_hub(hub_id, config, split)
    except Exception as err:  # the Hub raises many types for "offline"; all mean the same to the user
        raise UserError(
            f"could not load {hub_id} ({config}, {split}) from the Hugging Face Hub "
            f"({type(err).__name__}); without internet, export the data elsewhere with "
            "run_script/prepare_data.sh and pass --data_dir"
        ) from None


def load_hub(task: Task, split: str, lang: str, need_labels: bool = True) -> list[dict]:
    """One language/split straight from the Hugging Face Hub, normalised like an exported file
    (`check_row` in skip mode: unusable rows are skipped)."""
    hub_id, config, hub_split = task.hub_source(lang, split)
    id_column = task.hub_source_for(lang).id_column
    raw = _read_hub_or_explain(hub_id, config, hub_split)
    rows = (check_row(dict(obj), task, None, need_labels, id_column)[0] for obj in raw)
    return [row for row in rows if row is not None]


def load_split(
    task: Task, split: str, lang: str, data_dir: str | None, need_labels: bool = True
) -> list[dict]:
    """Rows of one split of one language, from `data_dir` when given, else from the Hub."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    if lang not in task.languages:
        raise UserError(f"language {lang!r} is not in task {task.name} ({', '.join(task.languages)})")
    if data_dir is None and task.data_dir is None:
        return load_hub(task, split, lang, need_labels)
    return read_jsonl(local_path(task, data_dir or "", split, lang), task, need_labels)


def first_n(rows: list[dict], n: int | None, seed: int | None = None, stratified: bool = False) -> list[dict]:
    """The first `n` rows (the original's few-shot), or a seeded label-stratified sample of `n`."""
    if n is None or n >= len(rows):
        return rows
    if not stratified:
        return rows[:n]
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.array([r["label"] for r in rows])
    classes = np.unique(labels)
    # As equal a share per class as the data allows; leftovers filled from a shuffled remainder.
    per_class = {c: rng.permutation(np.flatnonzero(labels == c)).tolist() for c in classes}
    quota = n // len(classes)
    chosen = [i for c in classes for i in per_class[c][:quota]]
    rest = rng.permutation([i for c in classes for i in per_class[c][quota:]]).tolist()
    chosen += rest[: n - len(chosen)]
    return [rows[i] for i in sorted(chosen)]


def load_pool(
    task: Task, languages: list[str], data_dir: str | None, size: int, pool_file: str | None = None,
    rows_parallel: bool = False,
) -> dict[str, list[dict]]:
    """The unlabeled parallel pool: `{lang: [text rows]}`, row i parallel across languages.

    Default: the first `size` rows (all when `size` is None) of every language's `task.pool_split`
    (validation; GeoMLAMA: test), labels never read. With `pool_file`: a JSONL file with one object per
    item, `{lang: {field: text, ...}, ...}`.

    Row i must be the same item in every language, and that must be shown, not assumed: by equal ids,
    by files unchanged since `prepare_data.py` exported them from the Hub (their manifest sha256),
    by XNLI's row-parallel `all_languages` Hub configuration, by a pool file, or by the user's word
    (`rows_parallel`, `--pool_rows_parallel`). Otherwise the pool is refused.
    """
    if pool_file is not None:
        return _read_pool_file(Path(pool_file), task, languages, size)
    if data_dir is None and task.data_dir is None and task.parallel_hub_source is not None:
        return _parallel_hub_pool(task, languages, size)
    pool = {}
    for lang in languages:
        rows = load_split(task, task.pool_split, lang, data_dir, need_labels=False)
        if size is not None and len(rows) < size:
            raise UserError(
                f"--pool_size {size} is larger than the {task.name} {lang} {task.pool_split} split "
                f"({len(rows)} rows): lower --pool_size"
            )
        pool[lang] = rows[:size]
    what = f"{task.name} {task.pool_split} pool"
    check_parallel(pool, what)
    if (not rows_parallel and not all("id" in row for rows in pool.values() for row in rows)
            and not (data_dir is not None and _exported_unchanged(task, data_dir, task.pool_split, languages))):
        raise UserError(
            f"{what}: rows carry no id, so nothing shows that row i is the same item in every language; "
            "add an equal \"id\" to parallel rows, export the data with run_script/prepare_data.sh, give "
            "--pool_file with parallel items, or pass --pool_rows_parallel if the files are row-parallel")
    return pool


def pool_labels(task: Task, languages: list[str], data_dir: str | None, size: int | None,
                pool_file: str | None = None) -> dict[str, list[int]] | None:
    """The labels of `load_pool`'s default pool where its local files carry them, `{lang: [label]}`; else None.

    For evaluation only (how well a ranking by the pool's own accuracy ranks the test accuracy); selection
    never reads them. None for a pool file, a Hub pool, or a file with a hidden or missing label.
    """
    if pool_file is not None or (data_dir is None and task.data_dir is None):
        return None
    try:
        return {lang: [row["label"] for row in load_split(task, task.pool_split, lang, data_dir)[:size]]
                for lang in languages}
    except UserError:
        return None


def _exported_unchanged(task: Task, data_dir: str, split: str, languages: list[str]) -> bool:
    """True when every language's file is listed in `<data_dir>/manifest.json` with its current sha256
    (the exporter aligned those rows across the Hub's languages and dropped a bad row in all of them)."""
    manifest = Path(data_dir) / MANIFEST
    if task.data_dir or not manifest.is_file():
        return False
    try:
        files = json.loads(manifest.read_text("utf-8"))["tasks"][task.name]["files"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return False
    for lang in languages:
        entry, path = files.get(f"{split}/{lang}.jsonl"), local_path(task, data_dir, split, lang)
        if not isinstance(entry, dict) or not path.is_file() or entry.get("sha256") != sha256_of(path):
            return False
    return True


def _parallel_hub_pool(task: Task, languages: list[str], size: int | None) -> dict[str, list[dict]]:
    """The pool from the task's row-parallel Hub config (XNLI's `all_languages`): one row holds every
    language's translation of one item, so the pool is parallel by construction."""
    source = task.parallel_hub_source
    split = source.splits[task.pool_split]
    raw = _read_hub_or_explain(source.hub_id, source.parallel_config, split)
    if size is not None and len(raw) < size:
        raise UserError(f"--pool_size {size} is larger than {task.name.upper()}'s {split} split ({len(raw)} rows): "
                        "lower it")
    pool = {lang: [] for lang in languages}
    for obj in raw.select(range(size if size is not None else len(raw))):
        translations = {name: _translations(obj[name]) for name in task.text_fields}
        for lang in languages:
            pool[lang].append({name: translations[name][lang] for name in task.text_fields})
    return pool


def _translations(value: dict) -> dict[str, str]:
    """One field of a multilingual Hub row as `{lang: text}`: a `Translation` feature is that already (XNLI's
    premise); a `TranslationVariableLanguages` one lists `language` and `translation` (XNLI's hypothesis)."""
    if set(value) == {"language", "translation"}:
        return dict(zip(value["language"], value["translation"]))
    return value


def _read_pool_file(path: Path, task: Task, languages: list[str], size: int) -> dict[str, list[dict]]:
    if not path.is_file():
        raise UserError(f"--pool_file {path}: file not found")
    pool = {lang: [] for lang in languages}
    with open_text(path) as handle:
        for line_no, item in json_objects(handle, path):
            for lang in languages:
                texts = item.get(lang)
                try:  # not a dict: no text field, the same message
                    pool[lang].append(_normalised_row(texts if isinstance(texts, dict) else {}, task,
                                                      need_labels=False, id_column=None))
                except RowProblem as problem:
                    if problem.kind == "text":
                        raise UserError(
                            f"{path}:{line_no}: item lacks language {lang!r} with non-empty "
                            f"{', '.join(task.text_fields)}; every item needs every language"
                        ) from None
                    raise UserError(f"{path}:{line_no} ({lang}): {problem.message}") from None
    if size is not None and len(pool[languages[0]]) < size:
        raise UserError(f"--pool_size {size} is larger than --pool_file {path} ({len(pool[languages[0]])} items)")
    check_parallel(pool, f"--pool_file {path}")
    return {lang: rows[:size] for lang, rows in pool.items()}


def misalignments(per_language: dict[str, list[dict]], same_row=None) -> list[tuple[str, int | None]]:
    """The one alignment check of parallel rows (training's pool here, the exporter's files in
    `alsace.prepare.export`): for each language after the first, where it stops being parallel to the first,
    as `(lang, None)` when its row count differs, or `(lang, i)` for the first row i where
    `same_row(first's row, its row)` is false (`same_row` None: counts only). Aligned languages are left out."""
    if not per_language:
        return []
    (_, ref), *others = per_language.items()
    found = []
    for lang, rows in others:
        if len(rows) != len(ref):
            found.append((lang, None))
        elif same_row is not None:
            i = next((i for i, (a, b) in enumerate(zip(ref, rows)) if not same_row(a, b)), None)
            if i is not None:
                found.append((lang, i))
    return found


def row_counts(per_language: dict[str, list]) -> str:
    """`en=3, fr=2`: every language's row count, for a misalignment message."""
    return ", ".join(f"{lang}={len(rows)}" for lang, rows in per_language.items())


def check_parallel(per_language: dict[str, list[dict]], what: str) -> None:
    """Fail unless every language has the same number of rows, equal ids where rows carry ids and, for probing
    rows, as many candidates (a row's list field: class k is candidate k in every language)."""
    found = misalignments(per_language, lambda a, b: not _id_differs(a, b) and _list_differs(a, b) is None)
    if any(i is None for _, i in found):
        raise UserError(f"{what}: languages are not row-aligned (row counts {row_counts(per_language)}); "
                        "use parallel files")
    if found:
        (ref_lang, ref), (lang, i) = next(iter(per_language.items())), found[0]
        a, b = ref[i], per_language[lang][i]
        if _id_differs(a, b):
            raise UserError(f"{what}: row {i} has id {a['id']!r} in {ref_lang} but {b['id']!r} in {lang}; "
                            "the files must be parallel row by row")
        field = _list_differs(a, b)
        raise UserError(f"{what}: row {i} has {len(a.get(field, ()))} {field} in {ref_lang} but "
                        f"{len(b.get(field, ()))} in {lang}; {field} must be parallel across languages")


def _id_differs(a: dict, b: dict) -> bool:
    return "id" in a and "id" in b and a["id"] != b["id"]


def _list_differs(a: dict, b: dict) -> str | None:
    """The first list field (a probing row's candidates) whose length differs between two rows."""
    fields = [k for k, v in {**a, **b}.items() if isinstance(v, list)]
    return next((k for k in fields if len(a.get(k, ())) != len(b.get(k, ()))), None)
