"""Command-line arguments: one dataclass per concern, parsed with `HfArgumentParser`.

Both entry points share `ModelArguments`, `DataArguments` and `PromptArguments` with the stock
`TrainingArguments`; fine-tuning adds `FinetuneArguments`, distillation `DistillArguments`.
Language lists are comma-separated strings so that shell scripts can pass them as one word.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from dataclasses import dataclass, field, fields

from alsace.errors import UserError
from alsace.losses import ANCHOR_TARGETS, KL_DIRECTIONS, LossConfig
from alsace.checkpoint import CHECKPOINT_INFO
from alsace.run_config import flatten_run_args
from alsace.modeling import HEADS
from alsace.selection import (SELECTION_METHODS, TEACHER_TARGETS, max_normalized_score, min_normalized_score,
                              score_bound)


def split_list(value: str | None) -> list[str] | None:
    """'en,fr, de' -> ['en', 'fr', 'de']; None or '' -> None."""
    if value is None or not value.strip():
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


@dataclass(frozen=True)
class DevPolicy:
    """The labelled dev rows evaluated during training; one policy for both entry points.

    `checkpoint_language`'s dev accuracy is the Trainer's evaluation metric, the one that chooses the kept
    checkpoint with `--load_best_model_at_end` (fine-tuning: `--selection_language`, evaluated whenever
    `--eval_strategy` is not no; distillation: `--dev_language`, with `--select_best_on_dev`); None: no dev
    evaluation. `languages`: every dev set read (once), the checkpoint language first, plus every `--languages`
    language with `--eval_all_dev_languages` (`per_language`: their accuracy is logged at each evaluation).
    Each set is its first `max_rows` rows (fine-tuning: `--max_selection_samples`; distillation:
    `--max_eval_samples`), so a language's dev accuracy is always over the same rows.
    """

    checkpoint_language: str | None = None
    languages: tuple[str, ...] = ()
    max_rows: int | None = None
    per_language: bool = False

    @classmethod
    def of(cls, checkpoint_language: str | None, languages: list[str], max_rows: int | None,
           every_language: bool) -> DevPolicy:
        if checkpoint_language is None:
            return cls()
        read = [checkpoint_language, *languages] if every_language else [checkpoint_language]
        return cls(checkpoint_language, tuple(dict.fromkeys(read)), max_rows, every_language)


@dataclass(frozen=True)
class Resolved:
    """Every flag that means something only with the task or another flag, resolved once after parsing."""

    languages: list[str]  # --languages (default: all of the task's)
    dev: DevPolicy
    threshold: float | None = None  # θ (--teacher_threshold); None = the mean of the normalised scores
    ranking: list[str] | None = None  # a fixed ranking (--lang_rank), best first; None = scored on the pool
    pair_languages: list[str] | None = None  # --pair_languages: train on all their pairs


def resolve_languages(task, languages: str | None) -> list[str]:
    """`--languages` as a list, each one of the task's (default: all of them)."""
    return task.check_languages(split_list(languages) or list(task.languages), "--languages")


@dataclass
class ModelArguments:
    _argument_group_name = "model"  # its --help section (HfArgumentParser)

    model_name_or_path: str = field(metadata={"help": "Hub id or local directory of the model / checkpoint."})
    head: str | None = field(default=None, metadata={
        "help": "prompt: cloze prompt on a masked LM (or first decoder step of a seq2seq LM), the "
                "original's method; classification: AutoModelForSequenceClassification. Default: the head "
                "the checkpoint was trained with (its alsace_task.json), else prompt."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the Hub."})

    def __post_init__(self):
        if self.head is not None and self.head not in HEADS:
            raise UserError(f"--head {self.head!r}: choose {' or '.join(HEADS)}")


@dataclass
class DataArguments:
    _argument_group_name = "data and evaluation"  # its --help section (HfArgumentParser)

    task: str | None = field(default=None, metadata={
        "help": "Task name from the registry (xnli, pawsx, xcopa, geomlama), or the path of a task file "
                "(*.json) describing your own parallel classification dataset (see docs). Default: the task "
                "the checkpoint was trained for (its alsace_task.json), else xnli."})
    data_dir: str | None = field(default=None, metadata={
        "help": "Folder holding <task>/<split>/<lang>.jsonl. Unset: download from the Hugging Face Hub."})
    languages: str | None = field(default=None, metadata={
        "help": "Comma-separated languages to evaluate (default: all of the task's)."})
    max_seq_length: int = field(default=512, metadata={
        "help": "Maximum tokens per input (original: 512; XTREME: 128). Text fields are shortened, "
                "never the template or the mask."})
    eval_split: str = field(default="test", metadata={"help": "Split evaluated per language at the end."})
    max_eval_samples: int | None = field(default=None, metadata={
        "help": "Evaluate only the first N rows per language (quick checks; not for reported numbers)."})
    cache_dir: str | None = field(default=None, metadata={
        "help": "Folder for cached tokenised features (default: the Hugging Face datasets cache, "
                "HF_DATASETS_CACHE/alsace_features). Keyed by tokenizer, task, prompt settings and data."})
    overwrite_cache: bool = field(default=False, metadata={
        "help": "Tokenise again and replace the cached features."})
    eval_all_dev_languages: bool = field(default=False, metadata={
        "help": "At every evaluation during training, also score every language's dev split and log "
                "per-language accuracy, average and gap as scalars (costly with many languages; off: the "
                "selection language alone is evaluated)."})

    def __post_init__(self):
        if self.eval_split not in ("validation", "test"):
            raise UserError(f"--eval_split {self.eval_split!r}: choose validation or test")
        if self.max_seq_length < 8:
            raise UserError(f"--max_seq_length {self.max_seq_length}: too small; use at least 64")
        self.check_data_dir()

    def check_data_dir(self):
        """--data_dir with a task file would be silently ignored (also checked once the checkpoint's task is known)."""
        if self.data_dir is not None and self.task is not None and self.task.endswith(".json"):
            raise UserError(f"--data_dir {self.data_dir}: a task file (--task {self.task}) says where its data are "
                            "(its own \"data_dir\"); drop --data_dir (DATA_DIR in run_script/*.sh) or edit the "
                            "task file's data_dir")


@dataclass
class PromptArguments:
    _argument_group_name = "prompt"  # its --help section (HfArgumentParser)

    prompt_language: str = field(default="en", metadata={
        "help": "en: the English template and label words for every language (the original's "
                "setting); native: per-language templates and label words where the task has them."})
    num_placeholder_tokens: int | None = field(default=None, metadata={
        "help": "Literal '歌' placeholder tokens before the question (original XNLI: 6, a leftover of "
                "soft prompts). Default: the task's original value; 0 disables."})

    def __post_init__(self):
        if self.prompt_language not in ("en", "native"):
            raise UserError(f"--prompt_language {self.prompt_language!r}: choose en or native")
        if self.num_placeholder_tokens is not None and self.num_placeholder_tokens < 0:
            raise UserError("--num_placeholder_tokens must be >= 0")


@dataclass
class OutputArguments:
    """What both entry points do with a non-empty `--output_dir` (inherited by their argument classes)."""

    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "Replace the run in a non-empty output directory (its results, checkpoints and stored "
                "configuration are removed first). Without it, a rerun with the same configuration continues "
                "that run and one with another configuration is refused."})
    keep_checkpoints: bool = field(default=False, metadata={
        "help": "Keep the intermediate checkpoint-* folders (optimizer state) after a finished run; off: they "
                "are removed, the final model stays in --output_dir."})


@dataclass
class FinetuneArguments(OutputArguments):
    _argument_group_name = "fine-tuning"  # its --help section (HfArgumentParser)

    max_train_samples: int | None = field(default=None, metadata={
        "help": "Train on N English rows (k-shot). The original's few-shot takes the first N."})
    train_sampling: str = field(default="first", metadata={
        "help": "first: the first N rows (faithful); stratified: a seeded label-balanced sample of N."})
    finetune_loss: str = field(default="full_vocab", metadata={
        "help": "full_vocab: cross-entropy over the whole vocabulary at the mask (the original); "
                "label_words: cross-entropy over the label words only."})
    selection_language: str = field(default="en", metadata={
        "help": "Dev language for model selection during fine-tuning (honest zero-shot: en; the "
                "original selected on ar, which also overlaps the distillation pool)."})
    max_selection_samples: int | None = field(default=None, metadata={
        "help": "Use only the first N dev rows for model selection (quick checks)."})
    skip_training: bool = field(default=False, metadata={
        "help": "Evaluate the model as it is, without training (zero-shot probing such as GeoMLAMA, which "
                "has no training data); the unchanged model is still saved, so distill.py can start from it."})

    def __post_init__(self):
        if self.train_sampling not in ("first", "stratified"):
            raise UserError(f"--train_sampling {self.train_sampling!r}: choose first or stratified")
        if self.finetune_loss not in ("full_vocab", "label_words"):
            raise UserError(f"--finetune_loss {self.finetune_loss!r}: choose full_vocab or label_words")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise UserError("--max_train_samples must be >= 1")

    def resolve(self, task, data_args, training_args) -> Resolved:
        """The checks that need the task, and the dev policy: `--selection_language` when evaluating."""
        languages = resolve_languages(task, data_args.languages)
        task.check_languages([self.selection_language], "--selection_language")
        if not task.has_train and not self.skip_training:
            raise UserError(f"--task {task.name} has no training data (zero-shot probing): pass --skip_training")
        evaluating = training_args.eval_strategy != "no"
        return Resolved(languages, DevPolicy.of(self.selection_language if evaluating else None, languages,
                                                self.max_selection_samples, data_args.eval_all_dev_languages))


# The smallest --pool_size accepted. A language's score s is a mean of per-item probabilities (spread
# about 0.2-0.3 on real models), so its standard error is about 0.25/sqrt(N): 0.11 at N = 5, the size of
# the gaps between languages; below that the ranking is a coin toss. distill.py warns below
# POOL_SIZE_WARNING (the paper's smallest pool, XCOPA's 100 dev rows; standard error about 0.025).
MIN_POOL_SIZE = 5
POOL_SIZE_WARNING = 100

# Above this learning rate a moving teacher (neither --frozen_teacher nor --detach_teacher) is in neither
# recipe: RECIPE=original keeps the paper's 3e-8, RECIPE=recommended freezes the teacher.
MOVING_TEACHER_MAX_LR = 1e-6

LOSS_DEFAULTS = {f.name: f.default for f in fields(LossConfig)}  # the consistency loss's flags default to these


@dataclass
class DistillArguments(OutputArguments):
    _argument_group_name = "teacher selection and self-distillation"  # its --help section (HfArgumentParser)

    pool_size: int | None = field(default=None, metadata={
        "help": "Unlabeled parallel items (default: the task's: 500 for XNLI/PAWS-X, 100 = all of "
                "XCOPA's dev split, every GeoMLAMA prompt): the first N rows of each language's dev split "
                "(GeoMLAMA: its only split), labels dropped."})
    pool_file: str | None = field(default=None, metadata={
        "help": "JSONL of parallel items {lang: {field: text}} replacing the dev-split pool."})
    pool_rows_parallel: bool = field(default=False, metadata={
        "help": "Declare the pool's per-language files row-parallel when their rows carry no id (nothing can "
                "check it); without ids, exported data or --pool_file the pool is refused."})
    teacher_threshold: str = field(default="mean", metadata={
        "help": "θ on the softmax-normalised scores: 'mean' (mean of the normalised scores), "
                "'paper' (the paper's value for the task: 0.06 XNLI, 0.2 PAWS-X, 0.2 XCOPA) or a float. "
                "ŝ = softmax(s) over T languages with s in [0, 1] is at most e/(e+T-1) (0.31 for T = 7, "
                "0.198 for T = 12) and stays near 1/T: 0.2 leaves no teacher for XCOPA (12 languages) and, with "
                "realistic scores (ŝ 0.13-0.16), for PAWS-X; only XNLI's 0.06 is usable."})
    lang_rank: str | None = field(default=None, metadata={
        "help": "Skip scoring and use a fixed ranking instead: comma-separated languages best first, "
                "or 'original' for the original code's preset of the task. Needs --num_students."})
    num_students: int | None = field(default=None, metadata={
        "help": "With --lang_rank: the last N ranked languages are students (original XNLI: 8)."})
    pair_languages: str | None = field(default=None, metadata={
        "help": "Explicit comma-separated languages: train on all their pairs (overrides selection)."})
    selection_method: str = field(default="paper", metadata={
        "help": "This project's extension: the label-free estimate that scores each language. paper: the mean "
                "probability of the majority-vote pseudo label (the paper); dawid_skene: the expected accuracy "
                "under a Dawid-Skene model of the languages' predictions (crowd-kit), robust when most "
                "languages are weak and the majority is often wrong; source_agreement: agreement with the "
                "source language's predictions. Every method is computed and recorded; this one decides."})
    source_guard: bool = field(default=False, metadata={
        "help": "This project's extension: put the source language first in the ranking (a teacher), so it "
                "is never the side that learns from a lower-ranked or less reliable language; off = the paper."})
    skip_unreadable: bool = field(default=False, metadata={
        "help": "This project's extension: leave out of every training pair the languages whose pool rows "
                "tokenise to fewer distinct inputs than half the items (e.g. a script the vocabulary maps to "
                "<unk>): identical inputs with different targets can learn only the class prior, which drives "
                "such a language to one class. They are still scored, evaluated and reported; off = the paper."})
    teacher_targets: str = field(default="mixture", metadata={
        "help": "This project's extension, with --frozen_teacher: mixture = each pair's target is its teacher "
                "language's own starting distribution (a student paired with several teachers learns their "
                "mixture); dawid_skene = every pair's target is the item's Dawid-Skene posterior over classes "
                "from all languages' starting predictions; source = every pair's target is the source "
                "language's starting distribution on the item."})
    kl_direction: str = field(default=LOSS_DEFAULTS["kl_direction"], metadata={
        "help": "teacher_target: KL(P_teacher || P_student), the paper; student_target: "
                "KL(P_student || P_teacher), what the released code computes; symmetric: the mean."})
    detach_teacher: bool = field(default=LOSS_DEFAULTS["detach_teacher"], metadata={
        "help": "Stop gradients through the higher-ranked side (the original lets both sides learn)."})
    temperature: float = field(default=LOSS_DEFAULTS["temperature"], metadata={"help": "Softmax temperature of both sides."})
    frozen_teacher: bool = field(default=False, metadata={
        "help": "This project's extension: the teacher side's distribution is the starting checkpoint's, "
                "computed once on the pool, so the targets cannot drift with the student (the paper: the "
                "teacher side is the same, moving network). Halves the sequences per step."})
    anchor_weight: float = field(default=LOSS_DEFAULTS["anchor_weight"], metadata={
        "help": "This project's extension: add this weight x cross-entropy on labelled source-language "
                "training rows (one per pair in each batch) to the consistency loss; 0 = off (the paper)."})
    anchor_target: str = field(default="labels", metadata={
        "help": "This project's extension, with --anchor_weight > 0: labels = cross-entropy against the gold "
                "labels of the source language's training rows; self = KL from the starting checkpoint's own "
                "class distribution on the source language's pool items to the model's (learning without "
                "forgetting: keeps the source language's predictions on unseen inputs where they were)."})
    anchor_train_rows: bool = field(default=False, metadata={
        "help": "This project's extension, with --anchor_target self: anchor the source language's training rows "
                "too (their labels unused: the starting checkpoint's own distribution on them is the target, and "
                "--anchor_features_weight holds their hidden states), so the anchor covers more of the source "
                "language than the pool items; off = the pool items only."})
    anchor_features_weight: float = field(default=LOSS_DEFAULTS["anchor_features_weight"], metadata={
        "help": "This project's extension, with --anchor_weight > 0: add this weight x the mean squared "
                "difference between the model's hidden states (every layer, every token) on the anchor rows and "
                "the starting checkpoint's, which a frozen copy of it computes (twice the model's memory); "
                "holds the source language's whole representation, not only its class distribution on those "
                "rows; 0 = off."})
    source_alignment_weight: float = field(default=LOSS_DEFAULTS["source_alignment_weight"], metadata={
        "help": "This project's extension: add this weight x the mean squared difference between each trained "
                "row's hidden states, averaged over its tokens (every layer), and the starting checkpoint's on "
                "the same pool item in the source language (computed once, before training), so that a "
                "language's representation is pulled to the source language's, not only its class distribution; "
                "needs the source language among --languages and an encoder's classification or prompt head on a "
                "one-input task; 0 = off (the paper)."})
    train_only_embeddings: bool = field(default=False, metadata={
        "help": "This project's extension: train only the input-embedding rows of tokens that the source "
                "language's training and pool rows never use; every other weight, those rows and the special tokens' "
                "rows (<unk> included) stay frozen, so "
                "the source language's predictions on inputs made of its seen tokens cannot change (needs "
                "--weight_decay 0). Off: the whole model trains, as in the paper."})
    teacher_temperature: float | None = field(default=LOSS_DEFAULTS["teacher_temperature"], metadata={
        "help": "This project's extension: the teacher side's own softmax temperature (below 1 sharpens the "
                "targets); default: --temperature, as the paper."})
    min_teacher_confidence: float = field(default=LOSS_DEFAULTS["min_teacher_confidence"], metadata={
        "help": "This project's extension: only pairs whose teacher-side maximum class probability is at "
                "least this count in the loss; 0 = every pair (the paper)."})
    pool_passes: float = field(default=0.0, metadata={
        "help": "This project's extension: train for the steps that show each language's pool items this many "
                "times on average (steps = passes x languages x items / (2 x pairs per step), rounded up), so "
                "that more languages get more steps; 0 = off (--num_train_epochs decides, the paper). A "
                "--max_steps > 0 wins over it."})
    select_best_on_dev: bool = field(default=False, metadata={
        "help": "Keep the checkpoint with the best dev accuracy: shorthand for the stock "
                "--load_best_model_at_end --metric_for_best_model accuracy (needs --eval_strategy, the same "
                "--save_strategy and --save_steps a multiple of --eval_steps); default: the last step, as the "
                "original."})
    dev_language: str = field(default="en", metadata={
        "help": "With --select_best_on_dev: the labelled dev language used for selection."})
    allow_untuned_checkpoint: bool = field(default=False, metadata={
        "help": "Distil a checkpoint without alsace_task.json (not fine-tuned by src/finetune.py for the "
                "task). Off: refused, since an untuned model's teacher scores are noise."})

    @property
    def anchors_on_pool(self) -> bool:
        """Whether the anchor rows are the source language's pool items (`--anchor_target self`, weight > 0)."""
        return self.anchor_weight > 0 and self.anchor_target == "self"

    def __post_init__(self):
        if self.kl_direction not in KL_DIRECTIONS:
            raise UserError(f"--kl_direction {self.kl_direction!r}: choose {', '.join(KL_DIRECTIONS[:-1])} "
                            f"or {KL_DIRECTIONS[-1]}")
        if self.temperature <= 0:
            raise UserError("--temperature must be > 0")
        if self.teacher_temperature is not None and self.teacher_temperature <= 0:
            raise UserError("--teacher_temperature must be > 0 (omit it to use --temperature)")
        if self.anchor_weight < 0:
            raise UserError(f"--anchor_weight {self.anchor_weight}: must be >= 0 (0 turns the anchor off)")
        if self.anchor_features_weight < 0:
            raise UserError(f"--anchor_features_weight {self.anchor_features_weight}: must be >= 0 (0 turns it off)")
        if self.anchor_features_weight > 0 and self.anchor_weight <= 0:
            raise UserError(f"--anchor_features_weight {self.anchor_features_weight} holds the hidden states of "
                            "the anchor rows, which --anchor_weight > 0 brings: set --anchor_weight (e.g. 1.0) too")
        if self.source_alignment_weight < 0:
            raise UserError(f"--source_alignment_weight {self.source_alignment_weight}: must be >= 0 (0 turns it off)")
        if self.anchor_target not in ANCHOR_TARGETS:
            raise UserError(f"--anchor_target {self.anchor_target!r}: choose {' or '.join(ANCHOR_TARGETS)}")
        if self.anchor_train_rows and not self.anchors_on_pool:
            raise UserError("--anchor_train_rows adds the source language's training rows to the self-anchor: "
                            "it needs --anchor_target self and --anchor_weight > 0 (or drop --anchor_train_rows)")
        if not 0 <= self.min_teacher_confidence < 1:
            raise UserError(f"--min_teacher_confidence {self.min_teacher_confidence}: must be in [0, 1) "
                            "(0 keeps every pair)")
        if self.teacher_threshold not in ("mean", "paper"):
            try:
                float(self.teacher_threshold)
            except ValueError:
                raise UserError(f"--teacher_threshold {self.teacher_threshold!r}: use mean, paper or a float") from None
        if self.selection_method not in SELECTION_METHODS:
            raise UserError(f"--selection_method {self.selection_method!r}: choose {', '.join(SELECTION_METHODS)}")
        if self.teacher_targets not in TEACHER_TARGETS:
            raise UserError(f"--teacher_targets {self.teacher_targets!r}: choose {' or '.join(TEACHER_TARGETS)}")
        if self.teacher_targets != "mixture" and not self.frozen_teacher:
            raise UserError(f"--teacher_targets {self.teacher_targets} needs --frozen_teacher (the targets are "
                            "computed once from the starting checkpoint); add --frozen_teacher or drop it")
        if self.lang_rank is not None and self.num_students is None:
            raise UserError("--lang_rank needs --num_students (how many of the last ranked are students)")
        if self.pool_passes < 0:
            raise UserError(f"--pool_passes {self.pool_passes} (POOL_PASSES in run_script/distillation.sh): must be "
                            ">= 0 (0 = off: --num_train_epochs or --max_steps decide)")
        if self.pool_size is not None and self.pool_size < MIN_POOL_SIZE:
            raise UserError(f"--pool_size {self.pool_size} (POOL_SIZE in run_script/distillation.sh): use at least "
                            f"{MIN_POOL_SIZE} items; teacher scores from fewer are noise (the paper: 100-500)")

    def loss_config(self) -> LossConfig:
        """The consistency loss's options (`LossConfig`), from the flags of the same names."""
        return LossConfig(**{f.name: getattr(self, f.name) for f in fields(LossConfig)})

    def warnings(self, learning_rate: float) -> list[str]:
        """Settings that are accepted but do not do what they seem to (logged before any work)."""
        notes = []
        if self.frozen_teacher and self.detach_teacher:
            notes.append("--detach_teacher has no effect with --frozen_teacher: the frozen teacher's targets are "
                         "computed once, before training, so no gradient flows through the teacher side anyway")
        if not (self.frozen_teacher or self.detach_teacher or learning_rate <= MOVING_TEACHER_MAX_LR):
            notes.append(
                f"--learning_rate {learning_rate:g} with a moving teacher (no --frozen_teacher) is neither recipe: the "
                f"KL loss tends to collapse every language to one class at such rates (README, docs/real_encoder.md); "
                f"use RECIPE=recommended in run_script/distillation.sh (--frozen_teacher, lr 2e-5) or the paper's "
                f"lr 3e-8 (RECIPE=original)")
        return notes

    def resolve(self, task, data_args, training_args, model_args, info) -> Resolved:
        """Every check that needs the task, the languages or the training arguments, before any work; the
        threshold θ, a fixed ranking, the pair languages and the dev policy (`--dev_language` with
        `--select_best_on_dev`), resolved once."""
        languages = resolve_languages(task, data_args.languages)
        if len(languages) < 2:
            raise UserError(f"--languages {','.join(languages)}: self-distillation needs at least two languages (a "
                            "teacher and a student); list two or more, or omit the flag for all of the task's")
        threshold = self.threshold(task)
        if self.anchor_weight > 0 and self.anchor_target == "labels" and not task.has_train:
            raise UserError(f"--anchor_weight: task {task.name} has no labelled training rows to anchor on; "
                            "pass --anchor_weight 0, or --anchor_target self")
        if self.train_only_embeddings and training_args.weight_decay > 0:
            raise UserError(f"--train_only_embeddings with --weight_decay {training_args.weight_decay:g}: decay would "
                            "shrink the frozen embedding rows too; pass --weight_decay 0 (WEIGHT_DECAY=0)")
        if self.anchor_train_rows and not task.has_train:
            raise UserError(f"--anchor_train_rows: task {task.name} has no training rows in the source language; "
                            "drop --anchor_train_rows")
        if self.anchor_weight > 0 and self.anchor_target == "self" and task.source_language not in languages:
            raise UserError(f"--anchor_target self anchors the source language {task.source_language} on its pool "
                            f"items: add it to --languages, or pass --anchor_target labels")
        if self.source_alignment_weight > 0 and task.source_language not in languages:
            raise UserError(f"--source_alignment_weight pulls every language to the source language "
                            f"{task.source_language}'s features on the same pool items: add it to --languages, or "
                            f"pass --source_alignment_weight 0")
        if self.source_alignment_weight > 0 and (task.candidate_field or (model_args.head == "classification"
                                                                          and task.choice_fields)):
            raise UserError(f"--source_alignment_weight: task {task.name} with --head {model_args.head} scores one "
                            f"input per {'candidate' if task.candidate_field else 'choice'}, which has no single "
                            f"pooled representation to align; pass --source_alignment_weight 0")
        if self.frozen_teacher and self.teacher_targets == "source" and task.source_language not in languages:
            raise UserError(f"--teacher_targets source takes every target from the source language "
                            f"{task.source_language}'s pool predictions: add it to --languages, or choose "
                            f"--teacher_targets mixture or dawid_skene")
        high, low, uniform = max_normalized_score(len(languages)), min_normalized_score(len(languages)), 1 / len(languages)
        if self.teacher_threshold == "paper" and threshold > high:
            raise UserError(
                f"--teacher_threshold paper: θ = {task.paper_threshold} for {task.name} can leave no teacher with "
                f"{len(languages)} languages: {score_bound(len(languages))}; use mean (the default) or a float "
                f"near 1/T = {uniform:.3f}")
        if threshold is not None and self.lang_rank is None and not low < threshold <= high:
            raise UserError(
                f"--teacher_threshold {self.teacher_threshold}: no scores can split {len(languages)} languages at it: "
                f"ŝ = softmax(s) with s in [0, 1] lies in [{low:.4f}, {high:.4f}] (a θ at or below the lower end makes "
                f"every language a teacher); use mean (the default) or a float inside that range, near 1/T = "
                f"{uniform:.3f}")
        pair_languages = self.check_pair_languages(languages)  # before any work
        if self.select_best_on_dev:
            task.check_languages([self.dev_language], "--dev_language")
            if training_args.eval_strategy == "no" or training_args.save_strategy != training_args.eval_strategy:
                raise UserError("--select_best_on_dev needs --eval_strategy steps (or epoch) and the same "
                                "--save_strategy, so that evaluated checkpoints are saved")
        if not self.allow_untuned_checkpoint and info is None:  # `info`: the checkpoint's CheckpointInfo
            raise UserError(f"--model_name_or_path {model_args.model_name_or_path}: no {CHECKPOINT_INFO}, so not a "
                            f"checkpoint fine-tuned for a task by src/finetune.py (an untuned model picks teachers by "
                            f"noise); fine-tune it first (run_script/finetuning.sh) or pass --allow_untuned_checkpoint")
        ranking = None
        if self.lang_rank is not None:
            ranking = list(task.lang_rank) if self.lang_rank == "original" else split_list(self.lang_rank)
        dev = DevPolicy.of(self.dev_language if self.select_best_on_dev else None, languages,
                           data_args.max_eval_samples, data_args.eval_all_dev_languages)
        return Resolved(languages, dev, threshold, ranking, pair_languages)

    def check_pair_languages(self, languages: list[str]) -> list[str] | None:
        """`--pair_languages` as a list, each one among `--languages` (the pool is read for those only)."""
        chosen = split_list(self.pair_languages)
        if chosen is None:
            return None
        outside = [lang for lang in chosen if lang not in languages]
        if outside:
            raise UserError(f"--pair_languages: {', '.join(outside)} not among --languages ({', '.join(languages)}); "
                            "add them to --languages or drop them from --pair_languages")
        if len(set(chosen)) < 2 or len(set(chosen)) != len(chosen):
            raise UserError(f"--pair_languages {self.pair_languages}: give at least two different languages, each once")
        return chosen

    def threshold(self, task) -> float | None:
        """θ for `select_teachers`: None = the mean of the normalised scores; `paper`: the task's value."""
        if self.teacher_threshold == "mean":
            return None
        if self.teacher_threshold == "paper":
            if task.paper_threshold is None:
                raise UserError(f"--teacher_threshold paper: the paper quotes no θ for {task.name}; "
                                "use mean or a float")
            return task.paper_threshold
        return float(self.teacher_threshold)


# What --select_best_on_dev stands for (the stock flags; one given explicitly wins).
SELECT_BEST_FLAGS = {"load_best_model_at_end": True, "metric_for_best_model": "accuracy"}


def select_best_flags(argv: list[str]) -> list[str]:
    """`--select_best_on_dev` spelled as the stock flags it stands for, added to argv before parsing.

    TrainingArguments must see `load_best_model_at_end` when it is built: its `__post_init__` derives
    `greater_is_better` from the metric (set afterwards it stays None and the lowest accuracy wins)
    and checks that every evaluated step is also saved.
    """
    from transformers.hf_argparser import string_to_bool

    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--select_best_on_dev", type=string_to_bool, nargs="?", const=True, default=False)
    if not pre.parse_known_args(argv)[0].select_best_on_dev:
        return argv
    given = {a.split("=")[0] for a in argv}
    return argv + [part for flag, value in SELECT_BEST_FLAGS.items() if f"--{flag}" not in given
                   for part in (f"--{flag}", str(value).lower())]


CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


def parse(dataclass_types, argv, description: str | None = None):
    """Parse argv into the dataclasses; every command-line mistake becomes a one-line `UserError`.

    A single argument ending in .json/.yaml/.yml is a file of `flag: value` pairs instead (as in the
    Hugging Face examples); a run's own run_args.json, nested by section, is accepted too.
    """
    parser = _parser(dataclass_types, description)
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        parser.print_help()
        sys.exit(0)
    if argv and argv[0].lower().endswith(CONFIG_SUFFIXES) and not argv[0].startswith("-"):
        return _parse_file(parser, dataclass_types, argv[0], _file_output_dir(argv))
    argv = join_negative_numbers(argv)
    if DistillArguments in dataclass_types:
        argv = select_best_flags(argv)
    # Checked before TrainingArguments exists: it would register a half-built DeepSpeed config globally.
    if any(a.split("=")[0] == "--deepspeed" for a in argv) and importlib.util.find_spec("deepspeed") is None:
        raise UserError("--deepspeed needs the optional DeepSpeed package: pip install deepspeed "
                        "(GPU machines), or run without --deepspeed")
    if any(t.__name__ == "TrainingArguments" for t in dataclass_types) and not _given("--output_dir", argv):
        # Without it the Trainer would write an untracked ./trainer_output with the library's defaults.
        raise UserError("--output_dir is required: say where this run's checkpoint and results go, "
                        "e.g. --output_dir outputs/my-run (or use run_script/*.sh, which name it for you)")
    try:
        *parsed, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    except ValueError as err:  # TrainingArguments' own validation
        raise UserError(" ".join(str(err).split())) from None
    except ImportError as err:  # another flag whose optional package is missing
        raise UserError(f"a flag needs a package that is not installed: {str(err).splitlines()[0]}") from None
    if unknown:
        flags = " ".join(a for a in unknown if a.startswith("-")) or " ".join(unknown)
        raise UserError(f"unknown flag(s) {flags}: check the spelling; --help lists every flag")
    return parsed


NEGATIVE_NUMBER = re.compile(r"-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def join_negative_numbers(argv: list[str]) -> list[str]:
    """`--flag -1e-3` as `--flag=-1e-3`: argparse reads `-1e-3` as an unknown option and answers "expected
    one argument", where the value should reach the flag's own check (which names the flag and the fix)."""
    out = []
    for arg in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and NEGATIVE_NUMBER.fullmatch(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def _file_output_dir(argv: list[str]) -> str | None:
    """The only flag an arguments file takes beside it: `--output_dir DIR` (where a replay goes)."""
    rest = argv[1:]
    if not rest:
        return None
    if len(rest) == 2 and rest[0] == "--output_dir":
        return rest[1]
    if len(rest) == 1 and rest[0].startswith("--output_dir="):
        return rest[0].split("=", 1)[1]
    raise UserError(f"{argv[0]}: an arguments file takes no other flag than --output_dir DIR; put the others "
                    "in the file")


def _parse_file(parser, dataclass_types, path: str, output_dir: str | None = None):
    """The dataclasses from a JSON or YAML file of `flag: value` pairs (flat, or nested by section).

    A run's own record (run_config.json / run_args.json, nested by section) is a replay: the same
    configuration into a new directory, `--output_dir` or else `<the run's folder>-replay`; it never
    overwrites the run it came from (`overwrite_output_dir` and `resume_from_checkpoint` are dropped).
    """
    import json
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise UserError(f"{path}: arguments file not found")
    try:
        if file.suffix.lower() == ".json":
            values = json.loads(file.read_text("utf-8"))
        else:
            import yaml

            values = yaml.safe_load(file.read_text("utf-8"))
    except ValueError as err:  # json.JSONDecodeError
        raise UserError(f"{path}: not valid JSON ({str(err).splitlines()[0]})") from None
    except Exception as err:  # yaml.YAMLError
        if type(err).__module__.startswith("yaml"):
            raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
        raise
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a mapping of flag names to values")
    replay = any(k.endswith("_args") and isinstance(v, dict) for k, v in values.items())  # a run's own record
    values = flatten_run_args(values)
    if replay:
        from pathlib import Path as _Path

        from alsace.run_config import ACTION_FIELDS

        for key in ACTION_FIELDS:
            values.pop(key, None)
        recorded = values.get("output_dir")
        if output_dir is None and recorded and _Path(recorded).exists():
            output_dir = f"{recorded.rstrip('/')}-replay"
            print(f"{path}: replaying the run of {recorded} into {output_dir} (--output_dir DIR chooses the folder)",
                  file=sys.stderr)
    if output_dir is not None:
        values["output_dir"] = output_dir
    if values.get("select_best_on_dev") and DistillArguments in dataclass_types:  # as `select_best_flags`
        values = {**SELECT_BEST_FLAGS, **values}
    if values.get("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        raise UserError(f"{path}: deepspeed needs the optional DeepSpeed package: pip install deepspeed")
    if any(t.__name__ == "TrainingArguments" for t in dataclass_types) and not values.get("output_dir"):
        raise UserError(f"{path}: output_dir is required: say where this run's checkpoint and results go")
    values = {k: _number(v, dataclass_types, k) for k, v in values.items()}
    try:
        return list(parser.parse_dict(values, allow_extra_keys=False))
    except ValueError as err:
        message = str(err).strip().splitlines()[0]
        if message.startswith("Some keys are not used"):
            message = "unknown key(s) " + message.split(":", 1)[1].strip() + ": check the spelling; --help lists every flag"
        raise UserError(f"{path}: {message}") from None
    except TypeError as err:  # a missing required field, or a value of the wrong type
        raise UserError(f"{path}: {str(err).splitlines()[0]}") from None


def _number(value, dataclass_types, name: str):
    """A numeric field's string value as a number: YAML reads `1e-5` (no dot) as a string."""
    import typing

    if not isinstance(value, str):
        return value
    for dtype in dataclass_types:
        hint = typing.get_type_hints(dtype).get(name)
        kinds = typing.get_args(hint) or (hint,)
        for kind in (int, float):
            if kind in kinds:
                try:
                    return kind(value)
                except ValueError:
                    pass
    return value


def _given(flag: str, argv: list[str]) -> bool:
    """Whether `flag` has a value on the command line (`--flag value` or `--flag=value`)."""
    return any(a == flag and i + 1 < len(argv) or a.startswith(flag + "=") for i, a in enumerate(argv))


def _parser(dataclass_types, description: str | None = None):
    """`--help` reads: a short usage line, what the entry point does (`description`), then our flags by
    concern, then the stock TrainingArguments flags (argparse's ungrouped section, moved last)."""
    import argparse

    from transformers import HfArgumentParser

    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        """The description keeps its line breaks (command examples); each flag shows its default."""

    class OneLineParser(HfArgumentParser):
        """Reports a bad flag value in one line, not the usage text of hundreds of flags plus the error."""

        def error(self, message):
            raise UserError(f"{message}; --help lists every flag")

    # No abbreviations: `--learning_rat` must fail, not silently mean `--learning_rate`.
    parser = OneLineParser(dataclass_types, allow_abbrev=False, description=description, formatter_class=Formatter,
                           usage="%(prog)s [--flag value ...]  |  %(prog)s args.json|args.yaml",
                           epilog="Flags can also come from one JSON or YAML file of flag: value pairs (a run's "
                                  "run_args.json works too).")
    if any(t.__name__ == "TrainingArguments" for t in dataclass_types):
        parser._optionals.title = "training (the stock Hugging Face TrainingArguments)"
        parser._action_groups.remove(parser._optionals)  # argparse lists it first; ours come first instead
        parser._action_groups.append(parser._optionals)
    return parser
