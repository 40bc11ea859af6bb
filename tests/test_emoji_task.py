"""src/build_emoji_task.py on a small synthetic CLDR folder laid out as Debian's unicode-cldr-core."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import build_emoji_task
from alsace.errors import UserError
from alsace.prepare.cldr_emoji import split_of, unicode_set_members
from alsace.tasks import get_task

SMILEYS = [chr(c) for c in range(0x1F600, 0x1F610)]  # 😀..😏, written as a range in labels.txt
ANIMALS = ["🐶", "🐱", "🐭", "🐹", "🐰", "🦊"]
FAMILY = "👨\u200d👩\u200d👧"  # a {multi-character sequence}
LABELS = f"""# labels.txt (synthetic)
[😀-😏]     ;	Smileys & People	;	face
[{''.join(ANIMALS)}]  ;	Animals & Nature	;	animal-mammal
[{{{FAMILY}}}☺\ufe0f]   ;	Smileys & People	;	family
[🇫🇷]        ;	Flags	;	country-flag
[😀]        ;	Symbols	;	a later line never overrides the first
"""


def annotations(names: dict[str, str], extra: str = "") -> str:
    rows = "".join(f'\t\t<annotation cp="{cp}">a | b</annotation>\n\t\t<annotation cp="{cp}" type="tts">{name}</annotation>\n'
                   for cp, name in names.items())
    return (f'<?xml version="1.0" encoding="UTF-8" ?>\n<!DOCTYPE ldml SYSTEM "../../common/dtd/ldml.dtd">\n'
            f"<ldml>\n\t<annotations>\n{rows}{extra}\t</annotations>\n</ldml>\n")


@pytest.fixture
def cldr(tmp_path) -> Path:
    root = tmp_path / "cldr"
    (root / "common" / "properties").mkdir(parents=True)
    (root / "common" / "annotations").mkdir()
    (root / "common" / "properties" / "labels.txt").write_text(LABELS, encoding="utf-8")
    every = SMILEYS + ANIMALS + [FAMILY, "☺", "🇫🇷"]
    en = {e: f"en name {i}" for i, e in enumerate(every)}
    fr = {e: f"nom  fr\n {i}" for i, e in enumerate(every) if e != "🐭"}  # fr lacks one emoji
    fr["🐹"] = "↑↑↑"  # CLDR's "inherited" marker is no name
    (root / "common" / "annotations" / "en.xml").write_text(annotations(en), encoding="utf-8")
    (root / "common" / "annotations" / "fr.xml").write_text(annotations(fr), encoding="utf-8")
    return root


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_unicode_sets_read_ranges_sequences_and_single_characters():
    assert unicode_set_members("[a-c{xy}z ]") == ["a", "b", "c", "xy", "z"]
    with pytest.raises(ValueError):
        unicode_set_members("a-c")


def test_builds_a_row_parallel_task_file_from_cldr(cldr, tmp_path):
    out = tmp_path / "data"
    summary = build_emoji_task.main(["--output_dir", str(out), "--cldr_dir", str(cldr), "--languages", "en,fr"])

    kept = sorted(SMILEYS + ["🐶", "🐱", "🐰", "🦊", FAMILY, "☺"])  # no flag, nothing fr lacks, no "↑↑↑"
    expected = {split: [e for e in kept if split_of(e) == split] for split in ("train", "validation", "test")}
    assert all(expected.values())  # the fixture covers every split
    assert summary["items_per_split"] == {split: len(v) for split, v in expected.items()}
    assert sorted((out / "emoji" / "train").iterdir()) == [out / "emoji" / "train" / "en.jsonl"]  # source only
    for split, emojis in expected.items():
        for lang in (["en"] if split == "train" else ["en", "fr"]):
            rows = read_jsonl(out / "emoji" / split / f"{lang}.jsonl")
            assert [r["id"] for r in rows] == ["U+" + "-".join(f"{ord(c):04X}" for c in e) for e in emojis]
    index = (SMILEYS + ANIMALS + [FAMILY, "☺", "🇫🇷"]).index
    for emoji, label in (("😀", 0), ("🦊", 1), ("☺", 0)):  # 😀: the first line's category wins
        split = split_of(emoji)
        lang = "en" if split == "train" else "fr"
        row = next(r for r in read_jsonl(out / "emoji" / split / f"{lang}.jsonl")
                   if r["id"] == "U+" + "-".join(f"{ord(c):04X}" for c in emoji))
        name = f"en name {index(emoji)}" if lang == "en" else f"nom fr {index(emoji)}"  # whitespace collapsed
        assert (row["text"], row["label"]) == (name, label)

    task = get_task(str(out / "emoji.json"))  # the project's own task-file reader accepts it
    assert task.languages == ("en", "fr") and task.label_names[1] == "Animals & Nature"
    assert len(task.label_words["en"]) == 7


def test_missing_cldr_files_are_one_line_errors_naming_the_flag(cldr, tmp_path):
    with pytest.raises(UserError, match=r"^--languages de: no CLDR annotations .*de.xml; drop de"):
        build_emoji_task.main(["--output_dir", str(tmp_path / "o"), "--cldr_dir", str(cldr), "--languages", "fr,de"])
    (cldr / "common" / "properties" / "labels.txt").unlink()
    with pytest.raises(UserError, match=r"labels.txt not found; install Debian/Ubuntu's unicode-cldr-core"):
        build_emoji_task.main(["--output_dir", str(tmp_path / "o"), "--cldr_dir", str(cldr), "--languages", "en,fr"])
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_real_encoder_reproduce_block_runs_from_the_repository(tmp_path):
    """docs/real_encoder.md's commands, as a dry run from the repository root: the builder is this project's,
    the model a Hub id, and every variable is one the scripts accept (no stage variable in the environment)."""
    import os
    import re
    import shlex
    import subprocess

    root = Path(__file__).resolve().parents[1]
    block = re.search(r"## Reproduce.*?```bash\n(.*?)```", (root / "docs" / "real_encoder.md").read_text("utf-8"),
                      flags=re.S).group(1)
    assert "python src/build_emoji_task.py --output_dir data" in block  # built by the test above, not here
    assert "MODEL_DIR=intfloat/multilingual-e5-small" in block
    runnable = "\n".join(line for line in block.splitlines()
                         if not line.startswith(("sudo ", "python src/build_emoji_task.py")))
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_DIR", "TASK", "OUTPUT_ROOT", "SEEDS")}
    proc = subprocess.run(["bash", "-c", "set -euo pipefail\nexport DRY_RUN=1\n" + runnable], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    commands = [shlex.split(line) for line in proc.stdout.splitlines()]
    entries = [c[1].rsplit("/", 1)[-1] for c in commands]
    assert entries == (["finetune.py", "distill.py"] * 3 + ["aggregate.py"]) * 2
    finetune = commands[0]
    assert finetune[finetune.index("--model_name_or_path") + 1] == "intfloat/multilingual-e5-small"
    assert finetune[finetune.index("--learning_rate") + 1] == "1e-4"
    distills = [c for c in commands if c[1].endswith("distill.py")]
    assert [c[c.index("--frozen_teacher") + 1] for c in distills] == ["true"] * 3 + ["false"] * 3
    assert not (root / "outputs" / "emoji-e5").exists()
