"""The offline demo: its synthetic data, its script's command lines, and a shortened end-to-end run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import demo
import distill
import finetune
from alsace.data import load_pool, load_split
from alsace.errors import UserError
from alsace.prepare.demo_data import (LABEL_NAMES, LANGUAGES, NEUTRAL_WORDS, TOPIC_WORDS, generate_split, lexicon,
                                      realize, write_demo_data)
from alsace.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"train": 40, "validation": 20, "test": 30}


def test_lexicon_keeps_the_stated_share_of_every_group_and_respells_the_rest_in_its_own_script():
    groups = [g for pair in TOPIC_WORDS.values() for g in pair] + list(NEUTRAL_WORDS.values())
    for lang in LANGUAGES[1:]:
        words = lexicon(lang, seed=0)
        script = {chr(lang.script_start + i) for i in range(26)}
        for group in groups:
            kept = [w for w in group if words[w] == w]
            assert len(kept) == round(lang.shared * len(group)), (lang.code, group)
            for w in group:
                if words[w] != w:  # re-spelled: same length, only letters of this language's script
                    assert len(words[w]) == len(w) and set(words[w]) <= script
    assert lexicon(LANGUAGES[2], seed=0) == lexicon(LANGUAGES[2], seed=0)
    assert lexicon(LANGUAGES[2], seed=0) != lexicon(LANGUAGES[2], seed=1)


def test_every_sentence_has_more_words_of_its_topic_than_of_any_other():
    topic_of = {w: t for t, (nouns, verbs) in enumerate(TOPIC_WORDS.values()) for w in nouns + verbs}
    english = lexicon(LANGUAGES[0], seed=0)
    distracted = 0
    for item in generate_split(400, seed=0, split="test"):
        counts = [0] * len(LABEL_NAMES)
        for word in realize(item, LANGUAGES[0], english).split():
            if word in topic_of:
                counts[topic_of[word]] += 1
        others = [c for t, c in enumerate(counts) if t != item.label]
        assert counts[item.label] > max(others)
        distracted += max(others) > 0
    assert distracted > 0  # the distractors exist, so a partial reader can be misled


def test_written_data_is_row_parallel_and_read_by_the_real_loader(tmp_path):
    root = write_demo_data(tmp_path, SIZES, seed=3)
    task = get_task(str(root / "task.json"))  # the task file a --task path/to/task.json run reads
    assert task.languages == tuple(lang.code for lang in LANGUAGES)
    assert sorted(p.name for p in (root / "train").iterdir()) == ["en.jsonl"]  # English labels only
    test = {lang: load_split(task, "test", lang, None) for lang in task.languages}
    for lang, rows in test.items():
        assert [r["id"] for r in rows] == [r["id"] for r in test["en"]]
        assert [r["label"] for r in rows] == [r["label"] for r in test["en"]]
    assert test["x00"][0]["text"] != test["en"][0]["text"]
    pool = load_pool(task, list(task.languages), None, size=20)
    assert all(len(rows) == 20 and "label" not in rows[0] for rows in pool.values())
    # The task file is what a --task path/to/task.json run would read (docs/tasks.md's keys).
    spec = json.loads((root / "task.json").read_text("utf-8"))
    assert set(spec) == {"name", "languages", "text_fields", "label_names", "data_dir", "prompt"}
    assert (root / spec["data_dir"] / "test" / "en.jsonl").is_file()
    # Same seed, same bytes; another seed, other data.
    again = write_demo_data(tmp_path / "again", SIZES, seed=3)
    other = write_demo_data(tmp_path / "other", SIZES, seed=4)
    assert (again / "test" / "x50.jsonl").read_bytes() == (root / "test" / "x50.jsonl").read_bytes()
    assert (other / "test" / "x50.jsonl").read_bytes() != (root / "test" / "x50.jsonl").read_bytes()


def test_bad_demo_commands_are_user_errors():
    with pytest.raises(UserError, match="prepare or report"):
        demo.main(["train"])
    with pytest.raises(UserError, match="test_size"):
        demo.main(["prepare", "--test_size", "0"])


def record_demo_commands(tmp_path: Path, env: dict) -> list[list[str]]:
    """Run run_script/demo.sh with a stand-in `python` that only records its command lines."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "python"
    stub.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    "open(os.environ['RECORD'], 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    stub.chmod(0o755)
    record = tmp_path / "commands.jsonl"
    script = ROOT / "run_script" / "demo.sh"
    knobs = set(re.findall(r"^([A-Z_]+)=\$\{\1:-", script.read_text(), flags=re.M))
    inherited = {k: v for k, v in os.environ.items() if k not in knobs}  # the caller's knobs must not leak in
    full_env = {**inherited, **env, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RECORD": str(record)}
    subprocess.run(["bash", str(script)], env=full_env, check=True, capture_output=True, timeout=60)
    return [json.loads(line) for line in record.read_text().splitlines()]


@pytest.fixture
def one_thread():
    # The demo script runs each process on one thread; a model this small is slower on two busy cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_shortened_demo_narrows_the_transfer_gap_without_collapse(tmp_path, one_thread):
    """The demo script's own command lines, shortened, run in-process: the phenomenon must show."""
    env = {"DATA_DIR": str(tmp_path / "data"), "OUTPUT_DIR": str(tmp_path / "out"), "TRAIN_SIZE": "1000",
           "VALIDATION_SIZE": "200", "TEST_SIZE": "300", "CORPUS_SIZE": "1000", "POOL_SIZE": "200",
           "FT_STEPS": "150", "DISTILL_STEPS": "100"}
    commands = record_demo_commands(tmp_path, env)
    entry_points = {"demo.py": demo.main, "finetune.py": finetune.main, "distill.py": distill.main}
    assert [Path(c[0]).name for c in commands] == ["demo.py", "finetune.py", "distill.py", "demo.py"]
    for command in commands:
        entry_points[Path(command[0]).name](command[1:])

    out = tmp_path / "out"
    finetuned = json.loads((out / "finetune" / "results.json").read_text())
    accuracy = {lang: r["accuracy"] for lang, r in finetuned["per_language"].items()}
    # After English fine-tuning, less overlap with English means lower accuracy.
    assert accuracy["en"] > accuracy["x75"] > accuracy["x50"] > accuracy["x25"] > accuracy["x00"]
    comparison = json.loads((out / "distill" / "comparison.json").read_text())
    gap = comparison["summary"]["transfer_gap"]
    assert gap["after"] < gap["before"] - 0.05  # at least 5 points narrower
    assert comparison["collapsed_languages"] == []
    for lang, r in comparison["per_language"].items():
        assert r["majority_share_after"] < 0.6, lang  # four balanced classes: no single-class shortcut
        if r["role"] == "student":
            assert r["after"] > r["before"], lang
    summary = (out / "summary.md").read_text()
    assert "## 1." in summary and "## 2." in summary and "## 3." in summary and "Wall time" in summary
    # The README's predict command, on the demo's distilled checkpoint: no --task (the checkpoint keeps its
    # task file), rows scored as evaluation scored them.
    import predict

    test_rows = (tmp_path / "data" / "demo" / "test" / "x50.jsonl").read_text().splitlines()[:8]
    rows = [json.loads(line) for line in test_rows]
    source = tmp_path / "new.jsonl"
    source.write_text("".join(json.dumps({"text": r["text"], "lang": "x50"}) + "\n" for r in rows))
    predicted = predict.main(["--model_name_or_path", str(out / "distill"), "--input", str(source),
                              "--output", str(tmp_path / "predictions.jsonl")])
    logits = np.load(out / "distill" / "predictions" / "x50_test_logits.npy")[:8]
    assert [p["predicted_label_id"] for p in predicted] == logits.argmax(1).tolist()
