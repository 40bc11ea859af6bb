"""Shared fixtures: a small XNLI-shaped parallel dataset and a tiny XLM-R-shaped model, built offline."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from alsace.prepare.tiny import build_tiny_model
from alsace.tasks import get_task

LANGS = ("en", "fr", "de")
WORDS = {
    "en": ["cat", "dog", "sat", "ran", "the", "mat", "park", "a", "red", "big"],
    "fr": ["chat", "chien", "assis", "couru", "le", "tapis", "parc", "un", "rouge", "grand"],
    "de": ["Katze", "Hund", "saß", "lief", "die", "Matte", "Park", "ein", "rot", "groß"],
}


def cli(*flags: str, **options) -> list[str]:
    """A command line for an entry point: each `name=value` as `--name value`, in the order given (`True`: the
    bare flag `--name`; `None`: left out; any other value as `str(value)`), then `flags` as they are."""
    argv = []
    for name, value in options.items():
        if value is True:
            argv.append(f"--{name}")
        elif value is not None:
            argv += [f"--{name}", str(value)]
    return argv + list(flags)


def run_argv(model, data, out, *extra: str, **options) -> list[str]:
    """finetune.py / distill.py arguments: `--model_name_or_path model --data_dir data --output_dir out`, then
    `options` and `extra` as in `cli` (`extra` last, so a flag in it wins over the same flag before)."""
    return cli(*extra, model_name_or_path=model, data_dir=data, output_dir=out, **options)


def encode_rows(featurizer, rows: list[dict], lang: str) -> list[dict]:
    """Features of `rows` without the cache (what `encode_cached` must equal)."""
    return [featurizer.encode_row(row, lang) for row in rows]


def sentence(rng: random.Random, lang: str, n: int) -> tuple[str, list[int]]:
    idx = [rng.randrange(len(WORDS["en"])) for _ in range(n)]
    return " ".join(WORDS[lang][i] for i in idx), idx


def write_xnli_like(data_dir: Path, rows_per_split: dict[str, int], seed: int = 0) -> Path:
    """XNLI-layout JSONL files for LANGS, row-parallel; label = a simple function of the word ids."""
    rng = random.Random(seed)
    for split, n in rows_per_split.items():
        items = []
        for i in range(n):
            p_len, h_len = rng.randint(3, 12), rng.randint(2, 6)
            p_idx = [rng.randrange(10) for _ in range(p_len)]
            h_idx = [rng.randrange(10) for _ in range(h_len)]
            label = (sum(h_idx) + len(p_idx)) % 3
            items.append((p_idx, h_idx, label, f"{split}-{i}"))
        for lang in LANGS:
            path = data_dir / "xnli" / split / f"{lang}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                for p_idx, h_idx, label, ident in items:
                    row = {"premise": " ".join(WORDS[lang][i] for i in p_idx),
                           "hypothesis": " ".join(WORDS[lang][i] for i in h_idx),
                           "label": label, "id": ident}
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return data_dir


def corpus_for_tokenizer() -> list[str]:
    task = get_task("xnli")
    lines = [" ".join(words) for words in WORDS.values()] * 20
    lines += [task.templates["en"]] * 20 + [" ".join(task.label_words["en"])] * 20
    for lang in ("fr", "de"):
        lines += [task.templates[lang]] * 5 + [" ".join(task.label_words[lang])] * 5
    return lines


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return write_xnli_like(tmp_path_factory.mktemp("data"), {"train": 48, "validation": 24, "test": 30})


@pytest.fixture(scope="session")
def tiny_mlm(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny_xlmr"), corpus_for_tokenizer(), "xlm-roberta",
                            vocab_size=300)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models on 2 shared cores: one torch thread avoids oversubscription stalls."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_thread():
    """Run torch on one thread. Tiny models gain nothing from threads, and OpenMP threads on a busy
    2-core machine spin-wait for each other (a 12-step run measured 0.35 s on one thread, 8.6 s on two
    under load); one thread also matches torchrun, which starts every rank with OMP_NUM_THREADS=1."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def features_cache(tmp_path_factory):
    """Cached tokenised features (alsace.features) go to a temporary folder, not the user's HF cache."""
    import datasets

    saved = datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = tmp_path_factory.mktemp("hf_datasets_cache")
    yield datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = saved


@pytest.fixture(scope="session")
def tiny_finetuned(tiny_mlm, data_dir, tmp_path_factory):
    """A tiny XNLI checkpoint fine-tuned by finetune.py for 4 steps (a starting point for distill.py)."""
    import finetune

    out = tmp_path_factory.mktemp("ft") / "run"
    finetune.main(run_argv(tiny_mlm, data_dir, out, task="xnli", languages="en,fr,de", max_seq_length=96,
                           use_cpu=True, report_to="none", max_steps=4, per_device_train_batch_size=8,
                           learning_rate="1e-3", max_train_samples=32, max_eval_samples=8))
    return out
