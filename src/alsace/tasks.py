"""The task registry: one frozen `Task` per dataset, everything task-specific in one place.

A task knows its languages (the first is the English/source language), the text fields of each row,
its label names, where it lives on the Hugging Face Hub, its prompt (one template per language, the
English one used everywhere by default, as in the original) and its per-task presets (pool size,
the paper's teacher threshold, the original code's fixed language ranking).

Prompt templates are plain strings with `{field}` slots for the text fields, `{placeholders}` for the
original's `歌` tokens and `{mask}` for the answer position; see `alsace.prompts`.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from importlib import resources

from alsace.errors import UserError


@dataclass(frozen=True)
class Task:
    name: str
    languages: tuple[str, ...]  # languages[0] is the training (source) language
    text_fields: tuple[str, ...]
    label_names: tuple[str, ...]
    templates: dict[str, str]  # language -> prompt template; "en" always present
    label_words: dict[str, tuple[str, ...]]  # language -> one verbalizer word per label
    hub_id: str | None = None
    hub_split_names: dict[str, str] = field(default_factory=dict)  # our split -> Hub split
    num_placeholder_tokens: int = 0  # the original's default count of `歌` placeholders
    pool_size: int = 500  # unlabeled parallel items for selection and distillation
    paper_threshold: float | None = None  # θ quoted in the paper (informational preset)
    lang_rank: tuple[str, ...] = ()  # the original code's fixed ranking (preset for --lang_rank)
    num_students: int | None = None  # the original code's student count for that ranking
    data_dir: str | None = None  # task files only: where `<split>/<lang>.jsonl` live

    @property
    def source_language(self) -> str:
        return self.languages[0]

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def check_languages(self, languages, flag: str) -> list[str]:
        """Validate a user-given language list against the task; return it as a list."""
        unknown = [lang for lang in languages if lang not in self.languages]
        if unknown:
            raise UserError(
                f"{flag}: language(s) {', '.join(unknown)} not in task {self.name} "
                f"(it has: {', '.join(self.languages)})"
            )
        return list(languages)


def _original_prompts() -> dict:
    """The original code's exact per-language prompt strings (shipped as package data)."""
    text = resources.files("alsace").joinpath("resources/prompts_original.json").read_text("utf-8")
    return json.loads(text)


def _templates_from_parts(parts: dict[str, list[str]], fields: tuple[str, str], placeholders: bool):
    """Turn the original's [A, B, C] parts into templates: A f0 B f1 [placeholders] C <mask>."""
    slot = "{placeholders}" if placeholders else ""
    return {
        lang: f"{a}{{{fields[0]}}}{b}{{{fields[1]}}}{slot}{c}{{mask}}."
        for lang, (a, b, c) in parts.items()
    }


def _build_registry() -> dict[str, Task]:
    original = _original_prompts()
    xnli_langs = ("en", "ar", "bg", "de", "el", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
    xnli = Task(
        name="xnli",
        languages=xnli_langs,
        text_fields=("premise", "hypothesis"),
        label_names=("entailment", "neutral", "contradiction"),
        templates=_templates_from_parts(
            original["xnli"]["template_parts"], ("premise", "hypothesis"), placeholders=True
        ),
        label_words={k: tuple(v) for k, v in original["xnli"]["label_words"].items()},
        hub_id="facebook/xnli",
        hub_split_names={"train": "train", "validation": "validation", "test": "test"},
        num_placeholder_tokens=6,
        pool_size=500,
        paper_threshold=0.06,
        lang_rank=("en", "fr", "bg", "es", "de", "vi", "ru", "el", "zh", "th", "tr", "hi", "ar", "ur", "sw"),
        num_students=8,
    )
    pawsx = Task(
        name="pawsx",
        languages=("en", "de", "es", "fr", "ja", "ko", "zh"),
        text_fields=("sentence1", "sentence2"),
        label_names=("not_paraphrase", "paraphrase"),
        # The original has no `歌` slot in the PAWS-X template and English prompts only.
        templates=_templates_from_parts(
            original["pawsx"]["template_parts"], ("sentence1", "sentence2"), placeholders=False
        ),
        label_words={k: tuple(v) for k, v in original["pawsx"]["label_words"].items()},
        hub_id="google-research-datasets/paws-x",
        hub_split_names={"train": "train", "validation": "validation", "test": "test"},
        num_placeholder_tokens=0,
        pool_size=500,
        paper_threshold=0.2,
        lang_rank=("en", "es", "fr", "de", "zh", "ko", "ja"),
        num_students=5,
    )
    return {task.name: task for task in (xnli, pawsx)}


TASKS: dict[str, Task] = _build_registry()


# Tasks defined beside their own code, built on first use: name -> (module, function returning a Task).
EXTRA_TASKS = {"demo": ("alsace.demo_data", "demo_task")}


def get_task(name: str) -> Task:
    """Look a task up by name (`xnli`, `pawsx`, ...)."""
    if name not in TASKS and name in EXTRA_TASKS:
        module, builder = EXTRA_TASKS[name]
        return getattr(importlib.import_module(module), builder)()
    if name not in TASKS:
        raise UserError(f"--task {name!r}: unknown task; choose one of {', '.join(sorted([*TASKS, *EXTRA_TASKS]))}")
    return TASKS[name]
