"""The real-encoder check's task (docs/real_encoder.md): emoji short names -> emoji category, from Unicode CLDR.

CLDR's translators write a short name for every emoji in every language (`common/annotations/<lang>.xml`,
`<annotation cp="🐶" type="tts">chien</annotation>`), and CLDR groups emoji into categories
(`common/properties/labels.txt`, lines `[UnicodeSet] ; Category ; subcategory`). One item is one emoji:
its text in language L is its short name in L, its label its category. Flags are left out (their names
are templated "flag: <country>"), and so is every emoji that one of the chosen languages does not name,
so every split is row-parallel: the same emoji, in the same order, with the same `id` in each language.

The split of an emoji is a hash of its code points (sha256, first 8 hex digits, mod 10: 0-5 train,
6-7 validation, 8-9 test), the same on every machine and for every language set.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from alsace.errors import UserError

DEFAULT_LANGUAGES = ("en", "ar", "bg", "de", "el", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh", "ja",
                     "ko", "am", "bn", "fa", "he", "hy", "ka", "km", "my", "si", "ta", "te")
CATEGORIES = ("Smileys & People", "Animals & Nature", "Food & Drink", "Travel & Places", "Activities", "Objects",
              "Symbols")
LABEL_WORDS = ("people", "nature", "food", "travel", "activity", "object", "symbol")  # one English word each
SPLITS = ("train", "validation", "test")
VARIATION_SELECTOR_16 = "\ufe0f"  # CLDR's annotation files drop it; labels.txt may carry it
INSTALL_HINT = ("install Debian/Ubuntu's unicode-cldr-core (apt-get install unicode-cldr-core: "
                "/usr/share/unicode/cldr) or unpack cldr-common-<version>.zip from https://cldr.unicode.org")


def unicode_set_members(text: str) -> list[str]:
    """The members of a CLDR UnicodeSet: single characters, ranges a-b and {multi-character sequences}."""
    body = text.strip()
    if len(body) < 2 or body[0] != "[" or body[-1] != "]":
        raise ValueError(f"not a UnicodeSet: {text!r}")
    body, members, i = body[1:-1], [], 0
    while i < len(body):
        char = body[i]
        if char == "{":
            end = body.index("}", i)
            members.append(body[i + 1:end])
            i = end + 1
        elif char.isspace():
            i += 1
        elif i + 2 < len(body) and body[i + 1] == "-":
            members += [chr(code) for code in range(ord(char), ord(body[i + 2]) + 1)]
            i += 3
        else:
            members.append(char)
            i += 1
    return members


def read_categories(cldr_dir: Path) -> dict[str, str]:
    """emoji -> category, from labels.txt; the first line naming an emoji wins."""
    path = Path(cldr_dir) / "common" / "properties" / "labels.txt"
    if not path.is_file():
        raise UserError(f"--cldr_dir {cldr_dir}: {path} not found; {INSTALL_HINT}")
    categories: dict[str, str] = {}
    for line in path.read_text("utf-8").splitlines():
        fields = [f.strip() for f in line.split(";")]
        if line.startswith("#") or len(fields) < 2 or fields[1] not in CATEGORIES or not fields[0].startswith("["):
            continue
        for member in unicode_set_members(fields[0]):
            categories.setdefault(member.replace(VARIATION_SELECTOR_16, ""), fields[1])
    return categories


def read_short_names(cldr_dir: Path, lang: str) -> dict[str, str]:
    """emoji -> its short name (type="tts") in `lang`; CLDR's "↑↑↑" (inherited) entries are skipped."""
    path = Path(cldr_dir) / "common" / "annotations" / f"{lang}.xml"
    if not path.is_file():
        raise UserError(f"--languages {lang}: no CLDR annotations {path}; drop {lang} or use a CLDR folder that has it")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise UserError(f"{path}: not valid XML ({err})") from None
    names = {}
    for node in root.iter("annotation"):
        text = (node.text or "").strip()
        if node.get("type") == "tts" and node.get("cp") and text and text != "↑↑↑":
            names[node.get("cp").replace(VARIATION_SELECTOR_16, "")] = re.sub(r"\s+", " ", text)
    return names


def split_of(emoji: str) -> str:
    bucket = int(hashlib.sha256(emoji.encode("utf-8")).hexdigest()[:8], 16) % 10
    return "train" if bucket < 6 else "validation" if bucket < 8 else "test"


def emoji_id(emoji: str) -> str:
    return "U+" + "-".join(f"{ord(char):04X}" for char in emoji)


def build_rows(cldr_dir: Path, languages: list[str]) -> dict[str, dict[str, list[dict]]]:
    """split -> language -> rows {id, text, label}; train holds the first (source) language only."""
    categories = read_categories(cldr_dir)
    names = {lang: read_short_names(cldr_dir, lang) for lang in languages}
    items = sorted(e for e in categories if all(e in names[lang] for lang in languages))
    rows: dict[str, dict[str, list[dict]]] = {}
    for split in SPLITS:
        emojis = [e for e in items if split_of(e) == split]
        if not emojis:
            raise UserError(f"--cldr_dir {cldr_dir}: no emoji named in every one of {', '.join(languages)} falls in "
                            f"the {split} split; use fewer languages or a complete CLDR folder")
        rows[split] = {lang: [{"id": emoji_id(e), "text": names[lang][e], "label": CATEGORIES.index(categories[e])}
                              for e in emojis]
                       for lang in (languages[:1] if split == "train" else languages)}
    return rows


def task_spec(languages: list[str], name: str = "emoji", data_dir: str = "emoji") -> dict:
    """The task file (docs/tasks.md) of the emoji task."""
    return {"name": name, "languages": list(languages), "text_fields": ["text"], "label_names": list(CATEGORIES),
            "data_dir": data_dir,
            "prompt": {"template": "{text}. Category: {mask}.", "label_words": list(LABEL_WORDS)}}
