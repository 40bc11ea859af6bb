"""Convert the released GeoMLAMA TSV files into this project's row-parallel JSONL (`alsace.prepare.geomlama`).

    git clone https://github.com/WadeYin9712/GeoMLAMA        # the released data (no Hub copy)
    python src/convert_geomlama.py --released_dir GeoMLAMA --data_dir data

Writes <data_dir>/geomlama/test/<lang>.jsonl and <data_dir>/geomlama/conversion.json (what was kept and
dropped, and why), and prints that summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from alsace.arguments import parse, split_list
from alsace.errors import UserError
from alsace.run_dir import run_cli
from alsace.files import write_json, write_text
from alsace.prepare.geomlama import GEOMLAMA, LANGUAGES, convert, read_released


@dataclass
class ConvertArguments:
    released_dir: str = field(default="", metadata={"help": "Folder of the released GeoMLAMA TSV files."})
    data_dir: str = field(default="", metadata={"help": "Output root: writes <data_dir>/geomlama/test/<lang>.jsonl."})
    languages: str = field(default=",".join(LANGUAGES), metadata={"help": "Comma-separated languages (default: all)."})
    no_paraphrases: bool = field(default=False, metadata={"help": "Convert the 125 original prompts only."})

    def __post_init__(self):
        for flag in ("released_dir", "data_dir"):
            if not getattr(self, flag):
                raise UserError(f"--{flag} is required (see --help)")
        unknown = [lang for lang in split_list(self.languages) or [] if lang not in LANGUAGES]
        if unknown:
            raise UserError(f"--languages: {', '.join(unknown)} not in GeoMLAMA ({', '.join(LANGUAGES)})")


def main(argv=None) -> dict:
    (args,) = parse((ConvertArguments,), argv, __doc__)
    langs = split_list(args.languages) or list(LANGUAGES)
    per_language = {lang: read_released(Path(args.released_dir), lang, not args.no_paraphrases) for lang in langs}
    kept, summary = convert(per_language)
    out = Path(args.data_dir) / GEOMLAMA.name
    for lang, rows in kept.items():
        write_text(out / "test" / f"{lang}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    write_json(out / "conversion.json", summary)
    print(json.dumps(summary, ensure_ascii=False))
    return summary


if __name__ == "__main__":
    run_cli(main)
