"""Rows -> model inputs: the featuriser, the collator that pads them into batches, and the feature cache.

- `Featurizer.encode_row` turns one task row into token ids for one head: the rendered prompt with
  its mask position and the verbalizer's token ids (prompt head), the tokenised fields
  (classification), one input per choice (multiple choice) or per candidate (probing).
- `Collator` pads a list of features into a batch; distillation pairs become one stacked batch.
- `encode_cached` / `split_features`: every split of every language is tokenised once through
  `datasets.map` and cached on disk (see below); later runs load it.

The feature cache. Every split of every language is tokenised once and stored as an Arrow file; later
runs (another learning rate, a resumed job, the distillation stage after fine-tuning) load it instead
of tokenising again, and nothing is re-tokenised per epoch or per evaluation within a run.

The cache file is named by a `datasets` fingerprint (`datasets.fingerprint.Hasher`) of everything the
features depend on:
- the rows themselves (file contents, after validation; also covers Hub data and pool files),
- the tokenizer (its vocabulary, added tokens such as the `歌` placeholder, normalisation),
- the featurizer's settings (task with its templates and label words, head, max length, number of
  placeholders, prompt language, seq2seq or not) and the language,
- the source code of this module and of `alsace.prompts`, so that changing how rows are encoded
  never serves stale features.
Change any of them and the name changes; a stale file is never read. Files are written to a
temporary name and renamed (by `datasets`), so a crash or two processes racing leave no torn file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
import re
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch

from alsace.data import load_split
from alsace.distributed import show_progress
from alsace.errors import UserError
from alsace.prompts import encode_prompt, label_word_ids, render, word_pieces
from alsace.tasks import Task

logger = logging.getLogger(__name__)


@dataclass
class Featurizer:
    """Turns task rows into model inputs for one head; label words are checked at construction."""

    tokenizer: object
    task: Task
    head: str
    max_length: int
    num_placeholder_tokens: int
    prompt_language: str = "en"  # "en": the source language's prompt for all (original); "native": per language
    is_seq2seq: bool = False
    languages: tuple[str, ...] | None = None  # languages the run uses (default: all of the task's)

    def __post_init__(self):
        self._label_ids = {}
        if self.task.candidate_field and self.head != "prompt":
            raise UserError(  # pragma: no mutate
                f"--head {self.head}: task {self.task.name} scores candidate answers with the LM "  # pragma: no mutate
                "itself; use --head prompt"  # pragma: no mutate
            )
        if self.head == "prompt":
            if not self.is_seq2seq and self.tokenizer.mask_token is None:
                raise UserError(  # pragma: no mutate
                    "--head prompt needs a tokenizer with a mask token; use --head classification"  # pragma: no mutate
                )
            if self.task.candidate_field:
                # T5-style sentinel marking the answer slot, when the tokenizer has one (mT5 does).
                sentinel = "<extra_id_0>"
                self._sentinel = sentinel if self.is_seq2seq and sentinel in self.tokenizer.get_vocab() else None
                return  # candidates are the answers: no label words
            if self.task.source_language not in self.task.templates:
                raise UserError(  # pragma: no mutate
                    f"--head prompt: task {self.task.name} has no prompt (template and label words); "  # pragma: no mutate
                    "add one to the task file or use --head classification"  # pragma: no mutate
                )
            for lang in self.languages or self.task.languages:
                words = self.task.label_words[self.prompt_key(lang)]
                context = f"task {self.task.name} label words ({self.prompt_key(lang)})"  # pragma: no mutate
                self._label_ids[lang] = label_word_ids(self.tokenizer, words, context)

    def prompt_key(self, lang: str) -> str:
        """Which language's template and label words an input in `lang` uses."""
        if self.prompt_language == "native":
            if lang not in self.task.templates or lang not in self.task.label_words:
                raise UserError(
                    f"--prompt_language native: task {self.task.name} has no {lang} prompt; use --prompt_language en"
                )
            return lang
        return self.task.source_language

    def encode_row(self, row: dict, lang: str) -> dict:
        if self.task.candidate_field:
            feats = self._encode_candidates(row)
        elif self.head == "classification" and self.task.choice_fields:
            feats = self._encode_choices(row)
        elif self.head == "classification":
            fields = [row[f] for f in self.task.text_fields]
            enc = self.tokenizer(*fields, truncation=True, max_length=self.max_length)
            feats = {k: enc[k] for k in ("input_ids", "token_type_ids") if k in enc}
        else:
            enc = encode_prompt(
                self.tokenizer,
                self.task.templates[self.prompt_key(lang)],
                {f: row[f] for f in self.task.text_fields},
                self.max_length,
                0 if self.is_seq2seq else self.num_placeholder_tokens,
                use_mask=not self.is_seq2seq,
            )
            feats = {"input_ids": enc.input_ids, "mask_pos": enc.mask_pos,
                     "label_token_ids": self._label_ids[lang]}
        if "label" in row:
            feats["labels"] = row["label"]
        return feats

    def _encode_choices(self, row: dict) -> dict:
        """Multiple-choice head: one (shared context, choice) pair per class, `(C, L_c)`."""
        context, _ = render(self.task.choice_context, row, mask="", placeholders="")
        choices = [row[f] for f in self.task.choice_fields]
        enc = self.tokenizer([context] * len(choices), choices, truncation=True, max_length=self.max_length)
        return {k: enc[k] for k in ("input_ids", "token_type_ids") if k in enc}

    def _encode_candidates(self, row: dict) -> dict:
        """Probing: the prompt with its mask slot, and each candidate's pieces (padded to the task's K).

        Masked LM: one input per candidate, the slot expanded to as many masks as that candidate has
        pieces. Seq2seq: one input with T5's sentinel in the slot (nothing if the tokenizer has none).
        """
        candidates = row[self.task.candidate_field]
        pieces = [word_pieces(self.tokenizer, c) for c in candidates]
        if not all(pieces):
            raise UserError(  # pragma: no mutate
                f"task {self.task.name}: a candidate of {candidates} has no sub-token in this tokenizer"  # pragma: no mutate
            )
        left, right = row[self.task.text_fields[0]].split(self.task.mask_slot)
        absent = [[] for _ in range(self.task.num_labels - len(pieces))]  # fixed K for every batch
        if self.is_seq2seq:
            enc = encode_prompt(self.tokenizer, "{left}{mask}{right}", {"left": left, "right": right},
                                self.max_length, 0, use_mask=self._sentinel is not None, mask_token=self._sentinel)
            prefix = [self.tokenizer.convert_tokens_to_ids(self._sentinel)] if self._sentinel else []
            return {"input_ids": enc.input_ids, "candidate_token_ids": pieces + absent, "decoder_prefix_ids": prefix}
        longest = max(len(p) for p in pieces)  # room for the extra masks of the longest candidate
        enc = encode_prompt(self.tokenizer, "{left}{mask}{right}", {"left": left, "right": right},
                            self.max_length - (longest - 1), 0)
        ids, at = enc.input_ids, enc.mask_pos
        mask_id = self.tokenizer.mask_token_id
        inputs = [ids[:at] + [mask_id] * len(p) + ids[at + 1:] for p in pieces]
        return {"input_ids": inputs + absent, "mask_pos": at, "candidate_token_ids": pieces + absent}


# Padding value per batch key; `input_ids` use the tokenizer's pad id. -100 marks absent pieces.
PAD_VALUES = {"token_type_ids": 0, "candidate_token_ids": -100, "decoder_prefix_ids": 0}
BATCH_KEYS = ("input_ids", "token_type_ids", "mask_pos", "label_token_ids", "candidate_token_ids",
              "decoder_prefix_ids", "labels")


class BatchKind(Enum):
    """What a collated batch holds; its collator says so, and the loss reads it (`batch_kind`), never its keys."""

    PLAIN = "plain"  # model inputs (+ gold `labels`): fine-tuning, dev evaluation, scoring (`Collator`)
    PAIRS = "pairs"  # B language pairs, both sides stacked `(2B, ...)` (`alsace.pairs.PairCollator`)
    FROZEN_PAIRS = "frozen_pairs"  # B pairs: the student sides `(B, ...)` + the frozen teacher's logits


class Batch(dict):
    """A collated batch: a dict of tensors (as the Trainer expects) whose class names its `kind`.

    The Trainer and accelerate rebuild a mapping with `type(batch)(...)` when they move it to the
    device, so the class, and with it the kind, survives the trip to the loss.
    """

    kind = BatchKind.PLAIN


def batch_kind(batch) -> BatchKind:
    """The kind of a collated batch; a mapping built by hand (no `Batch`) holds plain model inputs."""
    return getattr(batch, "kind", BatchKind.PLAIN)


class Collator:
    """Pads a list of features into a plain batch (`BatchKind.PLAIN`); pairs: `alsace.pairs.PairCollator`.

    Features with one input per class (multiple choice, candidates) become `(B, C, L)` tensors.
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> Batch:
        batch = Batch()
        for key in BATCH_KEYS:
            if key in features[0]:
                pad = self.pad_token_id if key == "input_ids" else PAD_VALUES.get(key, 0)
                batch[key] = _pad([f[key] for f in features], pad)
        batch["attention_mask"] = _pad([_ones_like(f["input_ids"]) for f in features], 0)
        return batch


def _ones_like(ids: list) -> list:
    return [_ones_like(x) for x in ids] if ids and isinstance(ids[0], list) else [1] * len(ids)


def _pad(values: list, pad: int) -> torch.Tensor:
    """ints -> `(B,)`; lists of ints -> `(B, L)`; lists of lists -> `(B, K, L)`, padded with `pad`."""
    if isinstance(values[0], int):
        return torch.tensor(values, dtype=torch.long)
    if values[0] and isinstance(values[0][0], list):
        k = max(len(v) for v in values)
        length = max((len(x) for v in values for x in v), default=0)
        out = torch.full((len(values), k, length), pad, dtype=torch.long)
        for i, v in enumerate(values):
            for j, x in enumerate(v):
                out[i, j, : len(x)] = torch.tensor(x, dtype=torch.long)
        return out
    out = torch.full((len(values), max(len(v) for v in values)), pad, dtype=torch.long)
    for i, v in enumerate(values):
        out[i, : len(v)] = torch.tensor(v, dtype=torch.long)
    return out


CACHE_SUBDIR = "alsace_features"
CACHE_VERSION = "1"  # bump when the cache layout itself changes


def default_cache_dir() -> Path:
    """`<HF datasets cache>/alsace_features` (honours `HF_DATASETS_CACHE` / `HF_HOME`)."""
    import datasets

    return Path(datasets.config.HF_DATASETS_CACHE) / CACHE_SUBDIR


def features_fingerprint(featurizer, rows: list[dict], lang: str) -> str:
    """Hex fingerprint of the features `featurizer` would produce for `rows` in `lang`."""
    from datasets.fingerprint import Hasher

    settings = {f.name: getattr(featurizer, f.name) for f in dataclasses.fields(featurizer)}
    hasher = Hasher()
    hasher.update(CACHE_VERSION)
    hasher.update(_code_digest(type(featurizer)))
    hasher.update(settings)  # includes the tokenizer and the task
    hasher.update(lang)
    hasher.update(_rows_digest(rows))
    return hasher.hexdigest()


def encode_cached(featurizer, rows: list[dict], lang: str, cache_dir: str | Path | None = None,
                  overwrite_cache: bool = False):
    """Features of `rows` as a `datasets.Dataset` (memory-mapped Arrow), tokenised at most once.

    Equal, row by row and key by key, to `[featurizer.encode_row(row, lang) for row in rows]`.
    `cache_dir` defaults to `default_cache_dir()`; `overwrite_cache` re-tokenises and replaces the cached file.
    """
    import datasets

    folder = Path(cache_dir) / CACHE_SUBDIR if cache_dir else default_cache_dir()
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{featurizer.task.name}-{lang}-{featurizer.head}")  # task files
    name = f"{readable}-{features_fingerprint(featurizer, rows, lang)}.arrow"
    path = folder / name
    if path.is_file() and not overwrite_cache:
        logger.debug("tokenised %s features: loaded from the cache %s", lang, path)  # pragma: no mutate
        return datasets.Dataset.from_file(str(path))
    folder.mkdir(parents=True, exist_ok=True)
    raw = datasets.Dataset.from_list(rows)
    # `new_fingerprint` names the result after our key, so `datasets` never hashes the closure itself.
    return raw.map(featurizer.encode_row, fn_kwargs={"lang": lang}, remove_columns=raw.column_names,
                   cache_file_name=str(path), load_from_cache_file=False, new_fingerprint=path.stem,
                   desc=f"tokenising {featurizer.task.name} {lang}",  # pragma: no mutate
                   )


def _rows_digest(rows: list[dict]) -> str:
    # Rows are JSON-like (validated by alsace.data); sorting keys makes the digest order-free per row.
    text = json.dumps(rows, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _code_digest(featurizer_class) -> str:
    from alsace import prompts

    sources = [inspect.getsource(sys.modules[featurizer_class.__module__]), inspect.getsource(prompts)]
    return hashlib.sha256("\n".join(sources).encode("utf-8")).hexdigest()


def split_features(task: Task, featurizer: Featurizer, data_dir: str | None, split: str,
                   languages: list[str], max_rows: int | None = None, cache_dir: str | None = None,
                   overwrite_cache: bool = False) -> dict[str, list[dict]]:
    """Tokenised rows of one split for each language, tokenised once and cached (`encode_cached`).

    Returned as lists: evaluation sorts and indexes them many times, which plain lists do fastest.
    """
    import datasets
    from tqdm.auto import tqdm

    out = {}
    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # one bar for the split below, not one per language
    try:
        bar = {"desc": f"tokenising {split}", "unit": "lang", "leave": False}  # pragma: no mutate (display only)
        for lang in tqdm(languages, disable=not show_progress(), **bar):
            rows = load_split(task, split, lang, data_dir)
            rows = rows[:max_rows] if max_rows else rows
            out[lang] = encode_cached(featurizer, rows, lang, cache_dir, overwrite_cache).to_list()
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
    logger.info("%s split: %d language(s), %d rows, tokenised (or read from the feature cache)",  # pragma: no mutate
                split, len(out), sum(len(rows) for rows in out.values()),  # pragma: no mutate
                )
    return out
