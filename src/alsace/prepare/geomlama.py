"""GeoMLAMA: convert the released TSV files into our normalised, row-parallel JSONL.

    git clone https://github.com/WadeYin9712/GeoMLAMA        # the released data (no Hub copy)
    python src/convert_geomlama.py --released_dir GeoMLAMA --data_dir data

Released format, per language `lang` in en zh hi fa sw:
- `gd_prompt_<lang>.tsv`: a header row, then 25 concepts of 5 rows (one per country: United States,
  China, India, Iran, Kenya), concepts separated by an empty (tabs-only) row. Columns used: 0 `Prompt`
  (with a literal `<mask>`), 2 `Ans` (gold answers, ", "-separated) and 3 `Candidate Ans` (", "-separated).
- `gd_prompt_<lang>_aug.tsv`: one paraphrased prompt per line, 4 paraphrases x 5 countries per concept
  (20 lines per concept, in concept order); each paraphrase keeps the answers of its original row.

Our format, `<data_dir>/geomlama/test/<lang>.jsonl`, one object a line:
`{"id": "c03-2-p0", "prompt": "... <mask> ...", "candidates": [...], "label": <gold index>}`,
`id` = concept, country, paraphrase (p0 = the original prompt), equal across languages row by row.

What is kept: our scoring needs one gold answer and class k meaning the same candidate in every
language. So a row is dropped, in every language, when any language has several gold answers (GeoMLAMA
scores those by its own top-|gold| rule, which we do not reproduce) or a gold answer missing from its
candidates; a whole concept is dropped when its candidate lists differ in length or in order across
languages (detected as gold answers at different positions). The counts are printed and written to
`geomlama/conversion.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alsace.errors import UserError
from alsace.tasks import TASKS

GEOMLAMA = TASKS["geomlama"]  # the languages, the row's fields and the mask slot come from the registry
LANGUAGES = GEOMLAMA.languages
COUNTRIES = 5  # rows per concept in the released files
PARAPHRASES = 4  # paraphrased prompts per country in the *_aug files
MASK_SLOT = GEOMLAMA.mask_slot
(PROMPT_FIELD,) = GEOMLAMA.text_fields


@dataclass(frozen=True)
class Prompt:
    concept: int
    country: int
    paraphrase: int  # 0: the original prompt
    prompt: str
    golds: tuple[str, ...]
    candidates: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"c{self.concept:02d}-{self.country}-p{self.paraphrase}"


def _split_answers(cell: str) -> tuple[str, ...]:
    return tuple(a.strip() for a in cell.split(",") if a.strip())


def read_released(folder: Path, lang: str, paraphrases: bool = True) -> list[Prompt]:
    """All prompts of one language in the released format, original prompts first."""
    path = folder / f"gd_prompt_{lang}.tsv"
    if not path.is_file():
        raise UserError(f"--released_dir {folder}: {path.name} not found (clone github.com/WadeYin9712/GeoMLAMA)")
    concepts, block = [], []
    for line_no, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        cells = line.split("\t")
        if cells[0].strip() == "Prompt":  # header
            continue
        if not line.strip():  # concept separator
            if block:
                concepts.append(block)
            block = []
            continue
        if len(cells) < 4:
            raise UserError(f"{path}:{line_no}: expected at least 4 tab-separated columns")
        block.append((cells[0].strip(), _split_answers(cells[2]), _split_answers(cells[3])))
    if block:
        concepts.append(block)
    if any(len(b) != COUNTRIES for b in concepts):
        raise UserError(f"{path}: every concept must have {COUNTRIES} rows (one per country)")
    prompts = [Prompt(c, k, 0, text, golds, cands)
               for c, rows in enumerate(concepts) for k, (text, golds, cands) in enumerate(rows)]
    if paraphrases:
        prompts += _read_paraphrases(folder / f"gd_prompt_{lang}_aug.tsv", concepts)
    return prompts


def _read_paraphrases(path: Path, concepts: list) -> list[Prompt]:
    if not path.is_file():
        raise UserError(f"{path}: not found; pass --no_paraphrases to convert the original prompts only")
    lines = [line.split("\t")[0].strip() for line in path.read_text("utf-8").splitlines() if line.strip()]
    per_concept = PARAPHRASES * COUNTRIES
    if len(lines) != per_concept * len(concepts):
        raise UserError(f"{path}: expected {per_concept} lines per concept ({per_concept * len(concepts)}), "
                        f"found {len(lines)}")
    out = []
    for i, text in enumerate(lines):
        concept, country, paraphrase = i // per_concept, i % COUNTRIES, 1 + (i % per_concept) // COUNTRIES
        _, golds, cands = concepts[concept][country]  # a paraphrase keeps its original row's answers
        out.append(Prompt(concept, country, paraphrase, text, golds, cands))
    return out


def gold_index(prompt: Prompt) -> int | None:
    """Index of the single gold answer among the candidates; None if not exactly one gold is found."""
    folded = [c.casefold() for c in prompt.candidates]
    if len(prompt.golds) != 1 or prompt.golds[0].casefold() not in folded:
        return None
    return folded.index(prompt.golds[0].casefold())


def convert(per_language: dict[str, list[Prompt]]) -> tuple[dict[str, list[dict]], dict]:
    """Keep the rows usable in every language; return `{lang: rows}` and the drop counts."""
    langs = list(per_language)
    counts = {len(p) for p in per_language.values()}
    if len(counts) != 1:
        raise UserError(f"GeoMLAMA languages have different prompt counts ({counts}): the files are not parallel")
    rows = list(zip(*per_language.values()))  # one tuple of parallel prompts per row
    misaligned = {items[0].concept for items in rows if _misaligned(items)}
    kept, dropped = {lang: [] for lang in langs}, {"multi_or_missing_gold": 0, "misaligned_concept": 0,
                                                     "mask_slot": 0}
    for items in rows:
        if items[0].concept in misaligned:
            dropped["misaligned_concept"] += 1
        elif any(p.prompt.count(MASK_SLOT) != 1 for p in items):
            dropped["mask_slot"] += 1
        elif any(gold_index(p) is None for p in items):
            dropped["multi_or_missing_gold"] += 1
        else:
            for lang, p in zip(langs, items):
                kept[lang].append({"id": p.id, PROMPT_FIELD: p.prompt, GEOMLAMA.candidate_field: list(p.candidates),
                                   "label": gold_index(p)})
    summary = {"languages": langs, "prompts_per_language": counts.pop(), "kept_per_language": len(kept[langs[0]]),
               "dropped": dropped, "misaligned_concepts": sorted(misaligned)}
    return kept, summary


def _misaligned(items: tuple[Prompt, ...]) -> bool:
    """Candidate lists of different length, or the same single gold at different positions."""
    if len({len(p.candidates) for p in items}) != 1:
        return True
    golds = {gold_index(p) for p in items}
    return None not in golds and len(golds) > 1
