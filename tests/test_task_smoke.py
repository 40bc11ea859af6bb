"""finetune.py -> distill.py on every task and model family, with tiny models and two steps each.

The numbers mean nothing (random tiny models); the run record and its shapes do. About a second a run.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import distill
import finetune
from alsace.errors import UserError
from alsace.tasks import get_task
from taskdata import (GEOMLAMA_LANGS, one_cpu_thread, PAWSX_LANGS, TASKFILE_LANGS, XCOPA_LANGS, tiny_model, write_geomlama_like,
                      write_pawsx_like, write_task_file, write_xcopa_like)

SPLITS = {"train": 8, "validation": 6, "test": 6}
COMMON = ["--report_to", "none", "--use_cpu", "--max_seq_length", "96", "--per_device_train_batch_size", "4",
          "--per_device_eval_batch_size", "16", "--learning_rate", "1e-3", "--save_strategy", "no",
          "--disable_tqdm", "true", "--max_steps", "2"]
FAMILIES = ("xlm-roberta", "bert", "deberta-v2", "t5")  # XLM-R, mBERT, mDeBERTa-v3, mT5 shapes
# The new task shapes (XCOPA, GeoMLAMA) on every family; PAWS-X and a task file ("taskfile": a user's
# dataset, no code changes) on the families and heads the XNLI tests do not already reach.
RUNS = [(task, family, "prompt") for task in ("xcopa", "geomlama") for family in FAMILIES] + [
    ("xcopa", "bert", "classification"),        # AutoModelForMultipleChoice with token type ids
    ("xcopa", "deberta-v2", "classification"),  # multiple choice on mDeBERTa
    ("pawsx", "deberta-v2", "prompt"), ("pawsx", "t5", "prompt"), ("pawsx", "xlm-roberta", "classification"),
    ("taskfile", "bert", "prompt"), ("taskfile", "t5", "classification")]


@pytest.fixture(autouse=True, scope="module")
def _one_cpu_thread():
    with one_cpu_thread():
        yield


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("task_data")
    write_xcopa_like(root, SPLITS)
    write_pawsx_like(root, SPLITS)
    write_geomlama_like(root, n=9)
    write_task_file(root / "own", SPLITS, pool_size=6)
    return root


def task_args(task: str, root) -> tuple[list[str], tuple[str, ...]]:
    if task == "taskfile":
        return ["--task", str(root / "own" / "topics.json")], TASKFILE_LANGS
    langs = {"xcopa": XCOPA_LANGS, "pawsx": PAWSX_LANGS, "geomlama": GEOMLAMA_LANGS}[task]
    return ["--task", task, "--data_dir", str(root), "--languages", ",".join(langs)], langs


@pytest.mark.parametrize("task, family, head", RUNS)
def test_finetune_then_distill(task, family, head, data_root, tmp_path, tmp_path_factory):
    args, langs = task_args(task, data_root)
    model = str(tiny_model(family, tmp_path_factory))
    zero_shot = ["--skip_training"] if task == "geomlama" else []
    pool = ["--pool_size", "6"] if task in ("xcopa", "pawsx") else []
    ft_dir, out_dir = tmp_path / "ft", tmp_path / "distill"

    before = finetune.main(["--model_name_or_path", model, *args, "--head", head, "--output_dir", str(ft_dir),
                            *zero_shot, *COMMON])
    # A fixed ranking: a tiny model after two steps scores every language alike (XCOPA with BERT's multiple-choice
    # head: s = 0.5 ± 1e-6, normalised scores 1-4 float32 ulps apart), so a split by scores would be decided
    # by the last bit of the logits, and equal bits leave no teacher or no student (a UserError). The pool is
    # still scored (the selection records the scores).
    fixed = ["--lang_rank", ",".join(langs), "--num_students", "1"]
    after = distill.main(["--model_name_or_path", str(ft_dir), *args, "--head", head, "--output_dir", str(out_dir),
                          *pool, *fixed, *COMMON])

    num_classes = get_task(str(data_root / "own" / "topics.json") if task == "taskfile" else task).num_labels
    for results, folder in ((before, ft_dir), (after, out_dir)):
        assert list(results["per_language"]) == list(langs)
        logits = np.load(folder / "predictions" / f"{langs[1]}_test_logits.npy", allow_pickle=False)
        labels = np.load(folder / "predictions" / f"{langs[1]}_test_labels.npy", allow_pickle=False)
        assert logits.shape == (len(labels), num_classes) and np.isfinite(logits).all()
    selection = json.loads((out_dir / "teacher_selection.json").read_text())["selection"]
    assert selection["teachers"] == list(langs[:-1]) and selection["students"] == [langs[-1]]
    assert len(selection["scores"]) == len(langs) and all(0 <= s <= 1 for s in selection["scores"])
    assert (out_dir / "comparison.json").is_file() and (out_dir / "baseline" / "results.json").is_file()
    if task == "geomlama":
        assert "Zero-shot" in (ft_dir / "results.md").read_text()


def test_geomlama_needs_skip_training(data_root, tmp_path, tmp_path_factory):
    args, _ = task_args("geomlama", data_root)
    with pytest.raises(UserError, match="pass --skip_training"):
        finetune.main(["--model_name_or_path", str(tiny_model("xlm-roberta", tmp_path_factory)), *args,
                       "--output_dir", str(tmp_path / "ft"), *COMMON])


def test_paper_threshold_needs_a_paper_value(data_root, tmp_path, tmp_path_factory):
    args, _ = task_args("geomlama", data_root)
    with pytest.raises(UserError, match="quotes no θ for geomlama"):
        distill.main(["--model_name_or_path", str(tiny_model("xlm-roberta", tmp_path_factory)), *args,
                      "--output_dir", str(tmp_path / "d"), "--teacher_threshold", "paper", *COMMON])
