"""Task files: bring your own parallel classification dataset without code changes.

`--task path/to/mytask.json` (and `TASK=path/to/mytask.json` in the run scripts) loads a JSON file:

    {"name": "sib200",
     "languages": ["en", "fr", "sw"],                 # the first is the training (source) language
     "text_fields": ["text"],                         # one or two fields of each JSONL row
     "label_names": ["science", "travel", "politics"],  # row "label" = index into this list
     "data_dir": "sib200",                            # relative to the task file: <split>/<lang>.jsonl
     "prompt": {"template": "{text} Topic: {mask}.",  # only needed for --head prompt
                "label_words": ["science", "travel", "politics"]},
     "pool_size": 500}                                # optional: unlabeled parallel items (default 500)

`template` and `label_words` may also map languages to per-language values (used with
`--prompt_language native`); the source language's entry is then required. Files needed: train for the
source language, validation and test for every language. Every problem found is reported at once, in
one `UserError`, so a user fixes the file in one go.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from alsace.errors import UserError
from alsace.prompts import template_slots

REQUIRED_KEYS = ("name", "languages", "text_fields", "label_names", "data_dir")
OPTIONAL_KEYS = ("prompt", "pool_size", "description")
PROMPT_KEYS = ("template", "label_words")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def read_task_file(path: str | Path, check_files: bool = True) -> dict:
    """Read and validate a task file; return the keyword arguments of its `alsace.tasks.Task` (this module
    does not import `alsace.tasks`: `get_task` builds the task). Raise one `UserError` listing every problem.
    `check_files=False` skips the data files (a checkpoint's copy, read to classify new text)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--task {path}: task file not found")
    try:
        spec = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"--task {path}: not valid JSON ({err})") from None
    if not isinstance(spec, dict):
        raise UserError(f"--task {path}: expected a JSON object with keys {', '.join(REQUIRED_KEYS)}")
    problems = _check_spec(spec, path, check_files)
    if problems:
        listed = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, start=1))
        raise UserError(f"--task {path}: {len(problems)} problem(s): {listed}")
    return _task_arguments(spec, path)


def _check_spec(spec: dict, path: Path, check_files: bool = True) -> list[str]:
    problems = [f"unknown key {k!r} (allowed: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)})"
                for k in spec if k not in REQUIRED_KEYS + OPTIONAL_KEYS]
    problems += [f"missing key {k!r}" for k in REQUIRED_KEYS if k not in spec]
    name, langs = spec.get("name"), spec.get("languages")
    fields, labels = spec.get("text_fields"), spec.get("label_names")
    if "name" in spec and not (isinstance(name, str) and _NAME.match(name)):
        problems.append("'name' must be a non-empty string of letters, digits, '_', '-' or '.'")
    if "languages" in spec and not _unique_strings(langs, minimum=2):
        problems.append("'languages' must list at least 2 distinct language codes")
    if "text_fields" in spec and not (_unique_strings(fields, minimum=1) and len(fields) <= 2
                                      and not {"label", "id"} & set(fields)):
        problems.append("'text_fields' must list 1 or 2 distinct field names (not 'label' or 'id')")
    if "label_names" in spec and not _unique_strings(labels, minimum=2):
        problems.append("'label_names' must list at least 2 distinct names")
    if "pool_size" in spec and not (isinstance(spec["pool_size"], int) and spec["pool_size"] >= 1):
        problems.append("'pool_size' must be a positive integer")
    if "prompt" in spec:
        problems += _check_prompt(spec["prompt"], spec)
    if isinstance(spec.get("data_dir"), str) and _unique_strings(langs, minimum=2) and check_files:
        problems += _check_files(path.parent / spec["data_dir"], langs)
    elif "data_dir" in spec and not isinstance(spec["data_dir"], str):
        problems.append("'data_dir' must be a path (relative to the task file)")
    return problems


def _check_prompt(prompt, spec: dict) -> list[str]:
    if not isinstance(prompt, dict):
        return ["'prompt' must be an object with 'template' and 'label_words'"]
    problems = [f"unknown key 'prompt.{k}' (allowed: {', '.join(PROMPT_KEYS)})" for k in prompt if k not in PROMPT_KEYS]
    problems += [f"missing key 'prompt.{k}'" for k in PROMPT_KEYS if k not in prompt]
    langs = spec.get("languages") if _unique_strings(spec.get("languages"), 2) else None
    fields = set(spec.get("text_fields") or []) if _unique_strings(spec.get("text_fields"), 1) else None
    num_labels = len(spec["label_names"]) if _unique_strings(spec.get("label_names"), 2) else None
    for key, check in (("template", lambda t: _template_problem(t, fields)),
                       ("label_words", lambda w: _label_words_problem(w, num_labels))):
        if key not in prompt:
            continue
        value = prompt[key]
        per_lang = value if isinstance(value, dict) else {None: value}
        if isinstance(value, dict) and langs:
            problems += [f"'prompt.{key}' names language {k!r}, which is not in 'languages'"
                         for k in value if k not in langs]
            if langs[0] not in value:
                problems.append(f"'prompt.{key}' needs an entry for the source language {langs[0]!r}")
        for lang, item in per_lang.items():
            problem = check(item)
            if problem:
                problems.append(f"'prompt.{key}'{f' ({lang})' if isinstance(value, dict) else ''}: {problem}")
    return problems


def _template_problem(template, fields: set[str] | None) -> str | None:
    if not isinstance(template, str):
        return "must be a string"
    slots = template_slots(template)
    if slots.count("mask") != 1:
        return "must contain {mask} exactly once"
    if fields is not None:
        unknown = [s for s in slots if s not in fields | {"mask", "placeholders"}]
        unused = [f for f in sorted(fields) if f not in slots]
        if unknown:
            return f"slot(s) {', '.join('{' + s + '}' for s in unknown)} are not text fields"
        if unused:
            return f"text field(s) {', '.join(unused)} do not appear in it"
    return None


def _label_words_problem(words, num_labels: int | None) -> str | None:
    if not (isinstance(words, list) and all(isinstance(w, str) and w.strip() for w in words)):
        return "must be a list of non-empty words"
    if num_labels is not None and len(words) != num_labels:
        return f"has {len(words)} words for {num_labels} labels"
    return None


def _check_files(data_dir: Path, langs: list[str]) -> list[str]:
    if not data_dir.is_dir():
        return [f"data_dir {data_dir} is not a directory"]
    needed = [data_dir / "train" / f"{langs[0]}.jsonl"]
    needed += [data_dir / split / f"{lang}.jsonl" for split in ("validation", "test") for lang in langs]
    missing = [str(p.relative_to(data_dir)) for p in needed if not p.is_file()]
    return [f"missing file(s) in {data_dir}: {', '.join(missing)}"] if missing else []


def _unique_strings(value, minimum: int) -> bool:
    return (isinstance(value, list) and len(value) >= minimum and len(set(value)) == len(value)
            and all(isinstance(v, str) and v.strip() for v in value))


def _task_arguments(spec: dict, path: Path) -> dict:
    langs = tuple(spec["languages"])
    prompt = spec.get("prompt", {})
    template, words = prompt.get("template", {}), prompt.get("label_words", {})
    templates = template if isinstance(template, dict) else {langs[0]: template}
    label_words = words if isinstance(words, dict) else {langs[0]: words}
    return dict(
        name=spec["name"],
        languages=langs,
        text_fields=tuple(spec["text_fields"]),
        label_names=tuple(spec["label_names"]),
        templates=dict(templates),
        label_words={lang: tuple(w) for lang, w in label_words.items()},
        pool_size=spec.get("pool_size", 500),
        data_dir=str((path.parent / spec["data_dir"]).resolve()),
    )
