"""Build the real-encoder check's parallel task from Unicode CLDR: emoji short names -> 7 emoji categories.

    sudo apt-get install unicode-cldr-core       # Debian/Ubuntu: CLDR in /usr/share/unicode/cldr
    python src/build_emoji_task.py --output_dir data
    TASK=data/emoji.json HEAD=classification MODEL_DIR=intfloat/multilingual-e5-small bash run_script/finetuning.sh

Reads <cldr_dir>/common/annotations/<lang>.xml (each emoji's short name, written by CLDR's translators) and
<cldr_dir>/common/properties/labels.txt (its category); see alsace.prepare.cldr_emoji. Writes the task file
<output_dir>/emoji.json and <output_dir>/emoji/<split>/<lang>.jsonl (train: the first language only), and
prints the counts. Any CLDR folder with that layout works (a cldr-common-<version>.zip release unpacked).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from alsace.arguments import parse, split_list
from alsace.errors import UserError
from alsace.run_dir import run_cli
from alsace.files import write_json, write_text
from alsace.prepare.cldr_emoji import CATEGORIES, DEFAULT_LANGUAGES, build_rows, task_spec


@dataclass
class EmojiTaskArguments:
    output_dir: str = field(default="data", metadata={
        "help": "Writes <output_dir>/emoji.json (the task file) and <output_dir>/emoji/<split>/<lang>.jsonl."})
    cldr_dir: str = field(default="/usr/share/unicode/cldr", metadata={
        "help": "A CLDR folder holding common/annotations/ and common/properties/labels.txt (Debian's "
                "unicode-cldr-core installs it here)."})
    languages: str = field(default=",".join(DEFAULT_LANGUAGES), metadata={
        "help": "Comma-separated CLDR locales, the training language first (default: the 28 of "
                "docs/real_encoder.md)."})

    def __post_init__(self):
        langs = split_list(self.languages) or []
        if len(langs) < 2 or len(set(langs)) != len(langs):
            raise UserError(f"--languages {self.languages!r}: give at least two different languages, each once, "
                            "the training language first")
        if not Path(self.cldr_dir).is_dir():
            raise UserError(f"--cldr_dir {self.cldr_dir}: not a folder; install Debian/Ubuntu's unicode-cldr-core "
                            "(apt-get install unicode-cldr-core) or pass an unpacked CLDR release")


def main(argv=None) -> dict:
    (args,) = parse((EmojiTaskArguments,), argv, __doc__)
    languages = split_list(args.languages)
    rows = build_rows(Path(args.cldr_dir), languages)  # every check before anything is written
    out = Path(args.output_dir)
    for split, by_lang in rows.items():
        for lang, lang_rows in by_lang.items():
            write_text(out / "emoji" / split / f"{lang}.jsonl",
                       "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in lang_rows))
    write_json(out / "emoji.json", task_spec(languages))
    counts = {split: len(next(iter(by_lang.values()))) for split, by_lang in rows.items()}
    per_category = Counter(CATEGORIES[row["label"]] for split in rows.values() for row in split[languages[0]])
    summary = {"task_file": str(out / "emoji.json"), "languages": len(languages), "items_per_split": counts,
               "items_per_category": {c: per_category[c] for c in CATEGORIES}}
    print(f"{summary['task_file']}: {sum(counts.values())} emoji x {len(languages)} languages, splits {counts}, "
          f"categories {summary['items_per_category']}")
    return summary


if __name__ == "__main__":
    run_cli(main)
