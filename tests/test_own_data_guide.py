"""docs/own_data.md runs as written: every `bash` block, in order, in a user's own folder, on a tiny model.

Only the values of the guide's first block (its settings) are replaced, by a tiny model and a few steps;
the blocks themselves run unchanged, so a renamed variable, a wrong path or a missing step fails here.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
from pathlib import Path

from conftest import WORDS

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "own_data.md"


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def settings_for_the_test(tiny_model: Path) -> dict[str, str]:
    return {"ALSACE": str(ROOT), "MODEL_DIR": str(tiny_model), "SEEDS": "13 21", "MAX_SEQ_LENGTH": "48",
            "FINETUNE_VARS": "PRESET=xtreme LR=1e-3 MAX_STEPS=3 BS=8 EVAL_STEPS=3 EVAL_BS=32",
            # A tiny model predicts alike in every language: Dawid–Skene (on hard labels) ties them all, the
            # paper's soft score does not.
            "DISTILL_VARS": "RECIPE=recommended SELECTION_METHOD=paper MAX_STEPS=2 BS=4 POOL_SIZE=8 EVAL_BS=32"}


def write_user_data(folder: Path, spec: dict) -> None:
    """Row-parallel files with ids, as the guide's section 1 describes, for the guide's task file."""
    langs, n_labels = spec["languages"], len(spec["label_names"])
    for split, n in (("train", 24), ("validation", 12), ("test", 10)):
        rng = random.Random(split)
        items = [([rng.randrange(10) for _ in range(rng.randint(3, 8))], rng.randrange(n_labels)) for _ in range(n)]
        for lang in langs if split != "train" else langs[:1]:
            path = folder / spec["data_dir"] / split / f"{lang}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps({"id": f"{split}-{i}", "text": " ".join(WORDS[lang][w] for w in words),
                                                "label": label}, ensure_ascii=False) + "\n"
                                    for i, (words, label) in enumerate(items)), encoding="utf-8")


def test_the_own_data_guide_runs_as_written(tmp_path):
    from alsace.prepare.tiny import build_tiny_model

    blocks = bash_blocks(GUIDE.read_text("utf-8"))
    settings = dict(re.findall(r"^export (\w+)=(\S+)", blocks[0], flags=re.M))
    ours = settings_for_the_test(tmp_path / "tiny")
    assert set(settings) == set(ours)  # the test replaces exactly the guide's settings
    spec = json.loads(re.search(r"<<'EOF'\n(.*?)\nEOF", "".join(blocks), flags=re.S).group(1))
    user = tmp_path / "project"
    user.mkdir()
    write_user_data(user, spec)
    corpus = [" ".join(words) for lang, words in WORDS.items() if lang in spec["languages"]] * 20
    corpus += [spec["prompt"]["template"].format(text="", mask=" ".join(spec["prompt"]["label_words"]))] * 20
    build_tiny_model(tmp_path / "tiny", corpus, "xlm-roberta", vocab_size=300)

    first = "".join(f"export {name}={json.dumps(value)}\n" for name, value in ours.items())
    script = "set -euo pipefail\n" + first + "".join(blocks[1:])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_CACHE": str(tmp_path / "hf_cache")}
    for name in ("TASK", "DATA_DIR", "OUTPUT_DIR", "DRY_RUN", "LR", "BS", "EPOCHS", "MAX_STEPS"):
        env.pop(name, None)
    proc = subprocess.run(["bash", "-c", script], cwd=user, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    runs = user / "outputs" / "mytask"
    aggregate = json.loads((runs / "aggregate.json").read_text("utf-8"))
    assert aggregate["num_runs"] == 2 and sorted(aggregate["seeds"]) == [13, 21]
    seed = runs / "seed-13"
    # `model` in results.json is the model a run started from, in both stages; the card shows the recipe.
    assert json.loads((seed / "finetune" / "results.json").read_text("utf-8"))["model"] == str(tmp_path / "tiny")
    assert json.loads((seed / "distill" / "results.json").read_text("utf-8"))["model"] == str(seed / "finetune")
    card = (seed / "distill" / "README.md").read_text("utf-8")
    assert "| frozen_teacher | True |" in card and "| max_steps | 2 |" in card and "num_train_epochs" not in card
    predictions = [json.loads(line) for line in (user / "predictions.jsonl").read_text("utf-8").splitlines()]
    assert [p["lang"] for p in predictions] == ["fr", "de"]
    assert all(p["predicted_label"] in spec["label_names"] for p in predictions)
    assert not (ROOT / "outputs" / "mytask").exists()  # everything landed in the user's folder
