"""Tokenisation once per dataset: `Featurizer.encode_row` through `datasets.map`, cached on disk.

Every split of every language is tokenised once and stored as an Arrow file; later runs (another
learning rate, a resumed job, the distillation stage after fine-tuning) load it instead of
tokenising again, and nothing is re-tokenised per epoch or per evaluation within a run.

The cache file is named by a `datasets` fingerprint (`datasets.fingerprint.Hasher`) of everything the
features depend on:
- the rows themselves (file contents, after validation; also covers Hub data and pool files),
- the tokenizer (its vocabulary, added tokens such as the `歌` placeholder, normalisation),
- the featurizer's settings (task with its templates and label words, head, max length, number of
  placeholders, prompt language, seq2seq or not) and the language,
- the source code of the featurizer's module and of `alsace.prompts`, so that changing how rows are
  encoded never serves stale features.
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
from pathlib import Path

logger = logging.getLogger(__name__)
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

    Equal, row by row and key by key, to `featurizer.encode(rows, lang)`. `cache_dir` defaults to
    `default_cache_dir()`; `overwrite_cache` re-tokenises and replaces the cached file.
    """
    import datasets

    folder = Path(cache_dir) / CACHE_SUBDIR if cache_dir else default_cache_dir()
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{featurizer.task.name}-{lang}-{featurizer.head}")  # task files
    name = f"{readable}-{features_fingerprint(featurizer, rows, lang)}.arrow"
    path = folder / name
    if path.is_file() and not overwrite_cache:
        logger.debug("tokenised %s features: loaded from the cache %s", lang, path)
        return datasets.Dataset.from_file(str(path))
    folder.mkdir(parents=True, exist_ok=True)
    raw = datasets.Dataset.from_list(rows)
    # `new_fingerprint` names the result after our key, so `datasets` never hashes the closure itself.
    return raw.map(featurizer.encode_row, fn_kwargs={"lang": lang}, remove_columns=raw.column_names,
                   cache_file_name=str(path), load_from_cache_file=False, new_fingerprint=path.stem,
                   desc=f"tokenising {featurizer.task.name} {lang}")


def _rows_digest(rows: list[dict]) -> str:
    # Rows are JSON-like (validated by alsace.data); sorting keys makes the digest order-free per row.
    text = json.dumps(rows, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _code_digest(featurizer_class) -> str:
    from alsace import prompts

    sources = [inspect.getsource(sys.modules[featurizer_class.__module__]), inspect.getsource(prompts)]
    return hashlib.sha256("\n".join(sources).encode("utf-8")).hexdigest()
