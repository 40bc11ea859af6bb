"""Small synthetic, row-parallel datasets for XCOPA, GeoMLAMA and a task file, plus a tokenizer corpus.

The words come from conftest's three-language vocabulary; XCOPA and GeoMLAMA languages borrow it
(it <- fr, tr <- de; zh <- fr, sw <- de): what matters here is the format and the parallelism, not
the language.
"""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path

from conftest import WORDS
from alsace.tasks import get_task

BORROW = {"en": "en", "it": "fr", "tr": "de", "zh": "fr", "sw": "de", "fr": "fr", "de": "de"}
XCOPA_LANGS = ("en", "it", "tr")
GEOMLAMA_LANGS = ("en", "zh", "sw")
TASKFILE_LANGS = ("en", "fr", "de")
TOPICS = ("science", "travel", "politics")


def _text(rng: random.Random, lang: str, n: int) -> str:
    words = WORDS[BORROW[lang]]
    return " ".join(words[rng.randrange(len(words))] for _ in range(n))


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def write_xcopa_like(data_dir: Path, rows_per_split: dict[str, int], seed: int = 0) -> Path:
    """`<data_dir>/xcopa/<split>/<lang>.jsonl`; train for en only, as with COPA."""
    for split, n in rows_per_split.items():
        for lang in XCOPA_LANGS if split != "train" else ("en",):
            rng = random.Random(f"{seed}-{split}")  # same draws in every language: row-parallel
            rows = [{"premise": _text(rng, lang, rng.randint(3, 8)), "question": rng.choice(["cause", "effect"]),
                     "choice1": _text(rng, lang, rng.randint(2, 5)), "choice2": _text(rng, lang, rng.randint(2, 5)),
                     "label": rng.randrange(2), "id": f"{split}-{i}"} for i in range(n)]
            _write(data_dir / "xcopa" / split / f"{lang}.jsonl", rows)
    return data_dir


PAWSX_LANGS = ("en", "de", "fr")


def write_pawsx_like(data_dir: Path, rows_per_split: dict[str, int], seed: int = 0) -> Path:
    """`<data_dir>/pawsx/<split>/<lang>.jsonl`, row-parallel; label 1 when the sentences share words."""
    for split, n in rows_per_split.items():
        for lang in PAWSX_LANGS:
            rng = random.Random(f"{seed}-{split}")
            rows = []
            for i in range(n):
                s1 = _text(rng, lang, rng.randint(3, 8))
                same = rng.random() < 0.5
                s2 = " ".join(reversed(s1.split())) if same else _text(rng, lang, rng.randint(3, 8))
                rows.append({"sentence1": s1, "sentence2": s2, "label": int(same), "id": f"{split}-{i}"})
            _write(data_dir / "pawsx" / split / f"{lang}.jsonl", rows)
    return data_dir


GEO_CANDIDATES = {  # per "concept": the candidates in each language (parallel, same order)
    "en": [["cat", "dog"], ["red", "big", "mat"], ["park", "the", "sat", "ran"]],
    "fr": [["chat", "chien"], ["rouge", "grand", "tapis"], ["parc", "le", "assis", "couru"]],
    "de": [["Katze", "Hund"], ["rot", "groß", "Matte"], ["Park", "die", "saß", "lief"]],
}


def write_geomlama_like(data_dir: Path, n: int = 12, seed: int = 0) -> Path:
    """`<data_dir>/geomlama/test/<lang>.jsonl` in our normalised format (prompt with `<mask>`)."""
    for lang in GEOMLAMA_LANGS:
        rng = random.Random(seed)
        rows = []
        for i in range(n):
            concept = i % 3
            candidates = GEO_CANDIDATES[BORROW[lang]][concept]
            prompt = f"{_text(rng, lang, rng.randint(2, 5))} <mask> {_text(rng, lang, rng.randint(1, 4))}."
            rows.append({"id": f"geo-{i}", "prompt": prompt, "candidates": candidates,
                         "label": rng.randrange(len(candidates))})
        _write(data_dir / "geomlama" / "test" / f"{lang}.jsonl", rows)
    return data_dir


def write_task_file(folder: Path, rows_per_split: dict[str, int], seed: int = 0, **overrides) -> Path:
    """A SIB-200-like topic task: task file `folder/topics.json`, data in `folder/topics_data/`."""
    for split, n in rows_per_split.items():
        for lang in TASKFILE_LANGS:
            rng = random.Random(f"{seed}-{split}")
            rows = [{"text": _text(rng, lang, rng.randint(3, 9)), "label": rng.randrange(3), "id": f"{split}-{i}"}
                    for i in range(n)]
            _write(folder / "topics_data" / split / f"{lang}.jsonl", rows)
    spec = {"name": "topics", "languages": list(TASKFILE_LANGS), "text_fields": ["text"],
            "label_names": list(TOPICS), "data_dir": "topics_data",
            "prompt": {"template": "{text} Topic: {mask}.", "label_words": list(TOPICS)}, "pool_size": 8}
    spec.update(overrides)
    path = folder / "topics.json"
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return path


def corpus() -> list[str]:
    """Tokenizer training text covering every task's templates, label words and candidates."""
    lines = [" ".join(words) for words in WORDS.values()] * 20
    for name in ("xnli", "pawsx", "xcopa"):
        task = get_task(name)
        lines += [task.templates["en"].replace("{", " ").replace("}", " ")] * 10
        lines += [" ".join(task.label_words["en"])] * 10
    lines += ["Topic: " + " ".join(TOPICS)] * 10 + ["cause effect Option 1 2 option"] * 10
    lines += [" ".join(c for concept in GEO_CANDIDATES[lang] for c in concept) for lang in GEO_CANDIDATES] * 10
    return lines


_TINY: dict[str, Path] = {}


def tiny_model(family: str, tmp_path_factory) -> Path:
    """A tiny model of `family` trained on `corpus()`, built once per test session."""
    from alsace.prepare.tiny import build_tiny_model

    if family not in _TINY:
        _TINY[family] = build_tiny_model(tmp_path_factory.mktemp(f"tiny_{family}"), corpus(), family,
                                         vocab_size=200)
    return _TINY[family]


@contextlib.contextmanager
def one_cpu_thread():
    """Tiny models on shared CPU cores: one torch thread avoids oversubscription stalls (30x here)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
