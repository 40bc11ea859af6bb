"""Local data loading, its errors, few-shot sampling and the parallel pool."""

import json

import pytest

from alsace.data import check_parallel, check_row, first_n, load_pool, load_split, misalignments, pool_labels
from alsace.errors import UserError
from alsace.tasks import get_task

XNLI = get_task("xnli")


def write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def row(label=0, premise="a b", hypothesis="c", **extra):
    return json.dumps({"premise": premise, "hypothesis": hypothesis, "label": label, **extra})


def test_loads_local_rows(data_dir):
    rows = load_split(XNLI, "test", "fr", str(data_dir))
    assert len(rows) == 30 and set(rows[0]) == {"premise", "hypothesis", "label", "id"}


@pytest.mark.parametrize("lines, message", [
    (["{not json"], r"xnli/test/en.jsonl:1: invalid JSON"),
    ([row(), row(label=3)], r"en.jsonl:2: label 3 is not an integer in 0..2"),
    ([row(label="entailment")], r"label 'entailment' is not an integer"),
    ([row(premise="  ")], r"en.jsonl:1: field 'premise' is missing or empty"),
    ([json.dumps({"premise": "x", "label": 0})], r"field 'hypothesis' is missing or empty"),
])
def test_bad_files_name_file_and_line(tmp_path, lines, message):
    write(tmp_path / "xnli" / "test" / "en.jsonl", lines)
    with pytest.raises(UserError, match=message):
        load_split(XNLI, "test", "en", str(tmp_path))


def test_missing_file_points_to_export(tmp_path):
    with pytest.raises(UserError, match=r"data file not found; export it with run_script/prepare_data.sh"):
        load_split(XNLI, "test", "sw", str(tmp_path))


def test_unknown_language():
    with pytest.raises(UserError, match="language 'xx' is not in task xnli"):
        load_split(XNLI, "test", "xx", "somewhere")


def test_first_n_and_stratified():
    rows = [{"label": i % 3, "i": i} for i in range(30)] + [{"label": 0, "i": 30 + i} for i in range(30)]
    assert [r["i"] for r in first_n(rows, 4)] == [0, 1, 2, 3]
    sample = first_n(rows, 9, seed=1, stratified=True)
    assert sorted(r["label"] for r in sample) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert sample == first_n(rows, 9, seed=1, stratified=True)  # seeded
    assert first_n(rows, None) is rows


def test_pool_drops_labels_and_checks_alignment(data_dir, tmp_path):
    pool = load_pool(XNLI, ["en", "fr"], str(data_dir), 10)
    assert len(pool["en"]) == len(pool["fr"]) == 10 and "label" not in pool["en"][0]
    with pytest.raises(UserError, match="--pool_size 25 is larger than the xnli en validation split"):
        load_pool(XNLI, ["en", "fr"], str(data_dir), 25)
    with pytest.raises(UserError, match="not row-aligned"):
        check_parallel({"en": [{}] * 3, "fr": [{}] * 2}, "pool")
    with pytest.raises(UserError, match="row 1 has id 'b' in en but 'c' in fr"):
        check_parallel({"en": [{"id": "a"}, {"id": "b"}], "fr": [{"id": "a"}, {"id": "c"}]}, "pool")


def test_pool_labels_are_the_pool_rows_labels_or_none(data_dir, tmp_path):
    """The labels read for the reference ρ are those of the very rows the pool holds, in the same order."""
    labels = pool_labels(XNLI, ["en", "fr"], str(data_dir), 7)
    for lang in ("en", "fr"):
        assert labels[lang] == [r["label"] for r in load_split(XNLI, "validation", lang, str(data_dir))[:7]]
    assert len(set(labels["en"])) > 1  # a fixture with one label would not tell rows apart
    assert pool_labels(XNLI, ["en"], str(data_dir), 7, pool_file=str(tmp_path / "pool.jsonl")) is None
    hidden = tmp_path / "hidden"
    for lang in ("en", "fr"):
        rows = load_split(XNLI, "validation", lang, str(data_dir))
        write(hidden / "xnli" / "validation" / f"{lang}.jsonl",
              [json.dumps({**r, "label": -1 if lang == "fr" and i == 3 else r["label"]}) for i, r in enumerate(rows)])
    assert pool_labels(XNLI, ["en", "fr"], str(hidden), 7) is None  # one hidden label: no reference at all
    assert pool_labels(XNLI, ["en"], str(hidden), 7) == {"en": labels["en"]}


def test_pool_file(tmp_path):
    path = tmp_path / "pool.jsonl"
    item = {lang: {"premise": f"p {lang}", "hypothesis": f"h {lang}"} for lang in ("en", "fr")}
    write(path, [json.dumps(item)] * 3)
    pool = load_pool(XNLI, ["en", "fr"], None, 2, str(path))
    assert pool["fr"][1] == {"premise": "p fr", "hypothesis": "h fr"} and len(pool["en"]) == 2
    with pytest.raises(UserError, match="lacks language 'de'"):
        load_pool(XNLI, ["en", "de"], None, 2, str(path))


def test_unreachable_hub_says_so_and_points_to_local_files(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing to fall back on
    with pytest.raises(UserError, match=r"could not load facebook/xnli .* from the Hugging Face Hub.*--data_dir"):
        load_split(XNLI, "test", "en", None)


def _without_ids(data_dir, tmp_path, shuffle_lang=None):
    """A copy of the data whose validation rows have no id; `shuffle_lang`'s rows in reverse order."""
    import shutil

    copy = tmp_path / "no_ids"
    shutil.copytree(data_dir, copy)
    for path in (copy / "xnli" / "validation").glob("*.jsonl"):
        rows = [{k: v for k, v in json.loads(line).items() if k != "id"} for line in path.read_text().splitlines()]
        if path.stem == shuffle_lang:
            rows = rows[::-1]
        write(path, [json.dumps(r) for r in rows])
    return copy


def test_pool_without_ids_is_refused_unless_declared_parallel(data_dir, tmp_path):
    """A shuffled language file without ids used to pass the row-count check and train on non-parallel pairs."""
    shuffled = _without_ids(data_dir, tmp_path, shuffle_lang="fr")
    with pytest.raises(UserError, match=r"xnli validation pool: rows carry no id.*--pool_rows_parallel"):
        load_pool(XNLI, ["en", "fr"], str(shuffled), 10)
    pool = load_pool(XNLI, ["en", "fr"], str(shuffled), 10, rows_parallel=True)  # the user's word
    assert len(pool["fr"]) == 10


def test_shuffled_language_file_with_ids_is_refused(data_dir, tmp_path):
    import shutil

    copy = tmp_path / "shuffled"
    shutil.copytree(data_dir, copy)
    path = copy / "xnli" / "validation" / "fr.jsonl"
    lines = path.read_text().splitlines()
    write(path, lines[1:] + lines[:1])
    with pytest.raises(UserError, match="row 0 has id 'validation-0' in en but 'validation-1' in fr"):
        load_pool(XNLI, ["en", "fr"], str(copy), 10, rows_parallel=True)


def test_exported_files_without_ids_are_trusted_only_while_unchanged(data_dir, tmp_path):
    """prepare_data.py aligned the rows and recorded each file's sha256: unchanged files need no ids."""
    from alsace.data import MANIFEST
    from alsace.files import sha256_of

    copy = _without_ids(data_dir, tmp_path)
    files = {f"validation/{lang}.jsonl": {"sha256": sha256_of(copy / "xnli" / "validation" / f"{lang}.jsonl")}
             for lang in ("en", "fr")}
    (copy / MANIFEST).write_text(json.dumps({"tasks": {"xnli": {"files": files}}}))
    assert len(load_pool(XNLI, ["en", "fr"], str(copy), 10)["fr"]) == 10
    path = copy / "xnli" / "validation" / "fr.jsonl"
    write(path, path.read_text().splitlines()[::-1])  # shuffled after the export
    with pytest.raises(UserError, match="rows carry no id"):
        load_pool(XNLI, ["en", "fr"], str(copy), 10)


def test_xnli_hub_pool_comes_from_the_row_parallel_all_languages_configuration(monkeypatch):
    """In-memory stand-in for `datasets.load_dataset("facebook/xnli", "all_languages")`: one row per item
    holding every language (premise: {lang: text}; hypothesis: {language: [...], translation: [...]})."""
    import datasets

    rows = [{"premise": {"en": f"p{i}", "fr": f"p{i}-fr", "de": f"p{i}-de"},
             "hypothesis": {"language": ["de", "en", "fr"], "translation": [f"h{i}-de", f"h{i}", f"h{i}-fr"]},
             "label": i % 3} for i in range(5)]
    calls = []

    def load_dataset(path, name, split):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    pool = load_pool(XNLI, ["en", "fr"], None, 3)
    assert calls == [("facebook/xnli", "all_languages", "validation")]
    assert pool == {"en": [{"premise": f"p{i}", "hypothesis": f"h{i}"} for i in range(3)],
                    "fr": [{"premise": f"p{i}-fr", "hypothesis": f"h{i}-fr"} for i in range(3)]}


def test_one_row_validator_skips_with_a_reason_or_raises_at_file_and_line():
    """Skip mode (Hub rows): `(None, reason)`, the reason the manifest records; raise mode (local files): a
    `UserError` that starts with `file:line`. A good row is normalised the same way in both."""
    empty = {"premise": "p", "hypothesis": " ", "label": 0}
    assert check_row(empty, XNLI) == (None, "empty hypothesis")
    with pytest.raises(UserError, match=r"^f\.jsonl:3: field 'hypothesis' is missing or empty; every row needs "
                                        r"non-empty premise, hypothesis$"):
        check_row(empty, XNLI, "f.jsonl:3")
    hidden = {"premise": "p", "hypothesis": "h", "label": -1}
    assert check_row(hidden, XNLI) == (None, "label -1 (hidden or out of range)")
    with pytest.raises(UserError, match=r"^f\.jsonl:4: label -1 is not an integer in 0\.\.2 "):
        check_row(hidden, XNLI, "f.jsonl:4")
    assert check_row(hidden, XNLI, need_labels=False) == ({"premise": "p", "hypothesis": "h"}, None)
    good = {"premise": "p", "hypothesis": "h", "label": 1, "idx": 7, "extra": "x"}
    assert check_row(good, XNLI, None, id_column="idx") == ({"premise": "p", "hypothesis": "h", "label": 1, "id": "7"},
                                                            None)
    assert check_row(good, XNLI, "f.jsonl:1") == ({"premise": "p", "hypothesis": "h", "label": 1}, None)  # no `id`


def test_one_alignment_check_reports_a_count_or_the_first_differing_row_per_language():
    def same(a, b):
        return a["id"] == b["id"]

    rows = {"en": [{"id": 1}, {"id": 2}], "fr": [{"id": 1}], "de": [{"id": 1}, {"id": 3}], "es": [{"id": 1}, {"id": 2}]}
    assert misalignments(rows, same) == [("fr", None), ("de", 1)]
    assert misalignments(rows) == [("fr", None)]  # counts only
    assert misalignments({}) == [] and misalignments({"en": [{"id": 1}]}, same) == []
