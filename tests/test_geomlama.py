"""GeoMLAMA: the released TSV format -> our normalised, row-parallel JSONL."""

from __future__ import annotations

import json

import pytest

from alsace.data import load_pool, load_split
from alsace.errors import UserError
from alsace.tasks import get_task
from convert_geomlama import main as convert_main

HEADER = "Prompt\tCorresponding Questions\tAns\tCandidate Ans\tContext\tGPT-3 Pred\tGPT-3 Pred (T/F/I)\tcomments"
COUNTRIES = ("Atlantis", "Lemuria", "Mu", "Thule", "Avalon")
# Per language: (prompt pattern, candidates, golds per country) for 3 concepts. Concept 1 has a row
# with two gold answers; concept 2 lists its candidates in another order in zh (misaligned).
CONCEPTS = {
    "en": [("In {c}, people drive on the <mask>. ", "left, right", ["left", "right", "left", "left", "right"]),
           ("The {c} flag is <mask>.", "red, blue, green", ["red", "blue", "red, blue", "green", "red"]),
           ("In {c} it is <mask> to tip.", "common, rare", ["common", "rare", "rare", "rare", "common"])],
    "zh": [("在{c}，人们靠<mask>行驶。", "左, 右", ["左", "右", "左", "左", "右"]),
           ("{c}的国旗是<mask>的。", "红, 蓝, 绿", ["红", "蓝", "红, 蓝", "绿", "红"]),
           ("在{c}，<mask>付小费。", "偶尔, 经常", ["经常", "偶尔", "偶尔", "偶尔", "经常"])],
    "sw": [("Nchini {c}, watu huendesha <mask>.", "kushoto, kulia", ["kushoto", "kulia", "kushoto", "kushoto", "kulia"]),
           ("Bendera ya {c} ni <mask>.", "nyekundu, bluu, kijani",
            ["nyekundu", "bluu", "nyekundu, bluu", "kijani", "nyekundu"]),
           ("Nchini {c} ni <mask> kutoa bakshishi.", "kawaida, nadra",
            ["kawaida", "nadra", "nadra", "nadra", "kawaida"])],
}


def write_released(folder, langs=("en", "zh", "sw")):
    for lang in langs:
        lines, aug = [HEADER], []
        for pattern, candidates, golds in CONCEPTS[lang]:
            for country, gold in zip(COUNTRIES, golds):
                lines.append(f"{pattern.format(c=country)}\tquestion?\t{gold}\t{candidates}\tctx\t\t\t")
            lines.append("\t" * 7)  # the released files separate concepts by tabs-only rows
            for paraphrase in range(4):
                aug += [f"({paraphrase}) " + pattern.format(c=country).strip() for country in COUNTRIES]
        (folder / f"gd_prompt_{lang}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (folder / f"gd_prompt_{lang}_aug.tsv").write_text("\n".join(aug) + "\n", encoding="utf-8")


def test_conversion_keeps_single_gold_aligned_rows(tmp_path):
    write_released(tmp_path)
    summary = convert_main(["--released_dir", str(tmp_path), "--data_dir", str(tmp_path / "data"),
                            "--languages", "en,zh,sw"])
    # 3 concepts x 5 countries x (1 original + 4 paraphrases) = 75 prompts per language.
    assert summary["prompts_per_language"] == 75
    assert summary["dropped"] == {"multi_or_missing_gold": 5, "misaligned_concept": 25, "mask_slot": 0}
    assert summary["kept_per_language"] == 45 and summary["misaligned_concepts"] == [2]
    task = get_task("geomlama")
    en, zh = (load_split(task, "test", lang, str(tmp_path / "data")) for lang in ("en", "zh"))
    assert [r["id"] for r in en] == [r["id"] for r in zh] and en[0]["id"] == "c00-0-p0"
    assert [r["label"] for r in en] == [r["label"] for r in zh]  # class k = the same candidate everywhere
    assert en[0] == {"id": "c00-0-p0", "prompt": "In Atlantis, people drive on the <mask>.",
                     "candidates": ["left", "right"], "label": 0}
    paraphrased = next(r for r in en if r["id"] == "c00-1-p2")  # keeps its original row's answers
    assert paraphrased["prompt"].startswith("(1) ") and paraphrased["label"] == 1
    assert json.loads((tmp_path / "data" / "geomlama" / "conversion.json").read_text())["kept_per_language"] == 45
    pool = load_pool(task, ["en", "zh", "sw"], str(tmp_path / "data"), task.pool_size)
    assert {len(rows) for rows in pool.values()} == {45}


def test_original_prompts_only(tmp_path):
    write_released(tmp_path)
    summary = convert_main(["--released_dir", str(tmp_path), "--data_dir", str(tmp_path / "out"),
                            "--languages", "en,zh", "--no_paraphrases"])
    assert summary["prompts_per_language"] == 15 and summary["kept_per_language"] == 9


def test_missing_and_malformed_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="gd_prompt_en.tsv not found"):
        convert_main(["--released_dir", str(tmp_path), "--data_dir", str(tmp_path), "--languages", "en"])
    write_released(tmp_path, langs=("en",))
    (tmp_path / "gd_prompt_en_aug.tsv").write_text("only one line\n", encoding="utf-8")
    with pytest.raises(UserError, match="expected 20 lines per concept"):
        convert_main(["--released_dir", str(tmp_path), "--data_dir", str(tmp_path), "--languages", "en"])
    with pytest.raises(UserError, match="not in GeoMLAMA"):
        convert_main(["--released_dir", str(tmp_path), "--data_dir", str(tmp_path), "--languages", "de"])
