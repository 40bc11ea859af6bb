"""The task registry: one frozen `Task` per dataset, everything task-specific in one place.

A task knows its languages (the first is the English/source language), the text fields of each row,
its label names, where it lives on the Hugging Face Hub, its prompt (one template per language, the
English one used everywhere by default, as in the original) and its per-task presets (pool size,
the paper's teacher threshold, the original code's fixed language ranking).

Three shapes of task share the one scoring function (`alsace.scoring.class_logits`):
- classification (XNLI, PAWS-X, task files): fixed classes, one label word per class;
- multiple choice (XCOPA): one text field per class (`choice_fields`); the prompt head still reads a
  label word per class (`1` / `2`), the classification head becomes `AutoModelForMultipleChoice`;
- candidate probing (GeoMLAMA): each row lists its own candidate answers (`candidate_field`) and a
  prompt with a mask slot; class logit k = mean log-probability of candidate k's pieces.

Prompt templates are plain strings with `{field}` slots for the text fields, `{placeholders}` for the
original's `歌` tokens and `{mask}` for the answer position; see `alsace.prompts`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources

from alsace.errors import UserError
from alsace.task_file import read_task_file


@dataclass(frozen=True)
class HubSource:
    """One Hugging Face Hub dataset holding some of a task's languages."""

    name: str  # what `prepare_data.py --hub_revisions NAME=...` pins
    hub_id: str
    languages: tuple[str, ...]
    splits: dict[str, str]  # our split -> the Hub's split
    license: str
    config: str | None = None  # a fixed Hub config; None: the language code is the config
    id_column: str | None = None  # the Hub column exported as the row's `id`
    revision: str = "main"
    # Read straight from the Hub (no exported files): our split -> the Hub split read instead.
    stand_ins: dict[str, str] = field(default_factory=dict)
    # A config whose rows hold every language's translation of one item (XNLI's `all_languages`): read straight
    # from the Hub, the parallel pool comes from it, parallel by construction. None: the pool needs ids.
    parallel_config: str | None = None


ALL_SPLITS = {"train": "train", "validation": "validation", "test": "test"}


@dataclass(frozen=True)
class Task:
    name: str
    languages: tuple[str, ...]  # languages[0] is the training (source) language
    text_fields: tuple[str, ...]
    label_names: tuple[str, ...]
    templates: dict[str, str]  # language -> prompt template; the source language's always present
    label_words: dict[str, tuple[str, ...]]  # language -> one verbalizer word per label
    hub_sources: tuple[HubSource, ...] = ()  # where the task's data lives on the Hub (none: local files only)
    num_placeholder_tokens: int = 0  # the original's default count of `歌` placeholders
    pool_size: int | None = 500  # unlabeled parallel items for selection and distillation (None: all rows)
    pool_split: str = "validation"  # the split the default pool is read from
    has_train: bool = True  # False: zero-shot probing, finetune.py needs --skip_training
    choice_fields: tuple[str, ...] = ()  # multiple choice: the field holding each class's answer
    choice_context: str | None = None  # multiple-choice head: template of the text shared by all choices
    candidate_field: str | None = None  # probing: the row field listing the row's candidate answers
    mask_slot: str = "<mask>"  # probing: the marker in the row's prompt where the answer goes
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

    def hub_source_for(self, lang: str) -> HubSource:
        """The Hub dataset holding `lang`."""
        source = next((s for s in self.hub_sources if lang in s.languages), None)
        if source is None:
            raise UserError(f"task {self.name} has no Hub source: pass --data_dir with local files")
        return source

    @property
    def parallel_hub_source(self) -> HubSource | None:
        """The Hub source with a row-parallel config holding every language of the task, if any."""
        return next((s for s in self.hub_sources
                     if s.parallel_config and set(self.languages) <= set(s.languages)), None)

    def hub_source(self, lang: str, split: str) -> tuple[str, str | None, str]:
        """(Hub id, config name, Hub split) holding `split` of `lang`."""
        source = self.hub_source_for(lang)
        hub_split = source.stand_ins.get(split, source.splits.get(split))
        if hub_split is None:
            raise UserError(f"task {self.name} has no {split} split for {lang} on the Hub ({source.hub_id}); "
                            "use local files for it")
        return source.hub_id, source.config or lang, hub_split

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
        hub_sources=(HubSource("xnli", "facebook/xnli", xnli_langs, ALL_SPLITS,
                               "CC BY-NC 4.0 (English train = MultiNLI: OANC / CC BY-SA 3.0 / CC BY 3.0)",
                               parallel_config="all_languages"),),
        num_placeholder_tokens=6,
        pool_size=500,
        paper_threshold=0.06,
        lang_rank=("en", "fr", "bg", "es", "de", "vi", "ru", "el", "zh", "th", "tr", "hi", "ar", "ur", "sw"),
        num_students=8,
    )
    pawsx_langs = ("en", "de", "es", "fr", "ja", "ko", "zh")
    pawsx = Task(
        name="pawsx",
        languages=pawsx_langs,
        text_fields=("sentence1", "sentence2"),
        label_names=("not_paraphrase", "paraphrase"),
        # The original has no `歌` slot in the PAWS-X template and English prompts only.
        templates=_templates_from_parts(
            original["pawsx"]["template_parts"], ("sentence1", "sentence2"), placeholders=False
        ),
        label_words={k: tuple(v) for k, v in original["pawsx"]["label_words"].items()},
        hub_sources=(HubSource("pawsx", "google-research-datasets/paws-x", pawsx_langs, ALL_SPLITS,
                               "free for any purpose, acknowledgement of Google LLC appreciated", id_column="id"),),
        num_placeholder_tokens=0,
        pool_size=500,
        paper_threshold=0.2,
        lang_rank=("en", "es", "fr", "de", "zh", "ko", "ja"),
        num_students=5,
    )
    xcopa_langs = ("et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh")
    xcopa = Task(
        name="xcopa",
        languages=("en", *xcopa_langs),
        text_fields=("premise", "question", "choice1", "choice2"),
        label_names=("choice1", "choice2"),
        # Our design (the original has no XCOPA): premise, the asked relation (`question` is the English
        # word "cause" or "effect" in every language of the data) and both numbered choices; the answer
        # at the mask is the choice's number, a verbalizer that is one short token in every tokenizer.
        templates={"en": "{premise} What was the {question}? Option 1: {choice1} Option 2: {choice2} "
                         "Answer: option {mask}."},
        label_words={"en": ("1", "2")},
        hub_sources=(
            # English is SuperGLUE COPA (train 400, validation 100, test 500 with hidden labels): its test
            # is not exported, and read from the Hub its validation doubles as the test.
            HubSource("copa", "aps/super_glue", ("en",), ALL_SPLITS, "BSD 2-Clause", config="copa",
                      id_column="idx", stand_ins={"test": "validation"}),
            HubSource("xcopa", "cambridgeltl/xcopa", xcopa_langs, {"validation": "validation", "test": "test"},
                      "CC BY 4.0", id_column="idx"),
        ),
        pool_size=100,  # the whole dev split: XCOPA has only 100 dev rows per language
        paper_threshold=0.2,
        choice_fields=("choice1", "choice2"),
        choice_context="{premise} What was the {question}?",
    )
    geomlama = Task(
        name="geomlama",
        languages=("en", "zh", "hi", "fa", "sw"),
        text_fields=("prompt",),
        # Candidates are per row (2 to 9 in the released data); class k is the row's k-th candidate.
        label_names=tuple(f"candidate_{k}" for k in range(1, 10)),
        templates={},
        label_words={},
        pool_split="test",  # probing data has a single split
        pool_size=None,  # every prompt
        has_train=False,
        candidate_field="candidates",
    )
    return {task.name: task for task in (xnli, pawsx, xcopa, geomlama)}


TASKS: dict[str, Task] = _build_registry()


def get_task(name: str, check_files: bool = True) -> Task:
    """Look a task up by name (`xnli`, `pawsx`, `xcopa`, `geomlama`) or load a task file (`*.json`)."""
    if name.endswith(".json"):
        return Task(**read_task_file(name, check_files))
    if name not in TASKS:
        raise UserError(f"--task {name!r}: unknown task; choose one of {', '.join(sorted(TASKS))} "
                        "or pass the path of a task file (*.json)")
    return TASKS[name]
