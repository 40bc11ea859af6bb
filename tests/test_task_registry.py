"""The task registry (XCOPA, GeoMLAMA presets and sources), task files and probing-data validation."""

from __future__ import annotations

import json

import pytest

from alsace import data
from alsace.data import check_parallel, load_pool, load_split, read_jsonl
from alsace.errors import UserError
from alsace.tasks import get_task
from taskdata import write_geomlama_like, write_task_file, write_xcopa_like


def test_presets_live_in_the_registry():
    xnli, pawsx, xcopa, geo = (get_task(n) for n in ("xnli", "pawsx", "xcopa", "geomlama"))
    assert (xnli.paper_threshold, pawsx.paper_threshold, xcopa.paper_threshold) == (0.06, 0.2, 0.2)
    assert xcopa.pool_size == 100 and xcopa.languages[0] == "en" and len(xcopa.languages) == 12
    assert xcopa.label_words["en"] == ("1", "2") and "{mask}" in xcopa.templates["en"]
    assert geo.languages == ("en", "zh", "hi", "fa", "sw") and not geo.has_train
    assert (geo.pool_split, geo.pool_size, geo.candidate_field) == ("test", None, "candidates")


def test_xcopa_hub_sources_map_english_to_superglue_copa():
    xcopa = get_task("xcopa")
    assert xcopa.hub_source("en", "train") == ("aps/super_glue", "copa", "train")
    assert xcopa.hub_source("en", "test") == ("aps/super_glue", "copa", "validation")  # COPA test labels hidden
    assert xcopa.hub_source("sw", "test") == ("cambridgeltl/xcopa", "sw", "test")
    with pytest.raises(UserError, match="no train split for sw"):
        xcopa.hub_source("sw", "train")
    with pytest.raises(UserError, match="no Hub source"):
        get_task("geomlama").hub_source("en", "test")


def test_load_hub_reads_the_mapped_source(monkeypatch):
    calls = []

    def fake_load_dataset(hub_id, config, split):
        calls.append((hub_id, config, split))
        return [{"premise": "p", "choice1": "a", "choice2": "b", "question": "cause", "label": 1, "idx": 0},
                {"premise": "q", "choice1": "c", "choice2": "d", "question": "effect", "label": -1, "idx": 1}]

    import datasets

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows = load_split(get_task("xcopa"), "test", "en", data_dir=None)
    assert calls == [("aps/super_glue", "copa", "validation")]
    # The hidden label is skipped and `idx` becomes the id, exactly as prepare_data.py exports the split.
    assert rows == [{"premise": "p", "question": "cause", "choice1": "a", "choice2": "b", "label": 1, "id": "0"}]


def test_xcopa_local_files_and_default_pool(tmp_path):
    write_xcopa_like(tmp_path, {"train": 4, "validation": 6, "test": 5})
    task = get_task("xcopa")
    assert load_split(task, "train", "en", str(tmp_path))[0].keys() >= {"premise", "question", "choice1", "label"}
    pool = load_pool(task, ["en", "it", "tr"], str(tmp_path), 6)
    assert {len(rows) for rows in pool.values()} == {6} and "label" not in pool["it"][0]
    with pytest.raises(UserError, match="larger than the xcopa en validation split"):
        load_pool(task, ["en", "it"], str(tmp_path), task.pool_size)  # 100 > 6: the README says so


def test_geomlama_rows_and_pool(tmp_path):
    write_geomlama_like(tmp_path, n=6)
    task = get_task("geomlama")
    rows = read_jsonl(tmp_path / "geomlama" / "test" / "zh.jsonl", task)
    assert rows[0]["candidates"] and rows[0]["prompt"].count("<mask>") == 1
    pool = load_pool(task, ["en", "zh", "sw"], str(tmp_path), task.pool_size)  # None: every prompt
    assert {len(r) for r in pool.values()} == {6} and "candidates" in pool["sw"][0]


@pytest.mark.parametrize("row, message", [
    ({"prompt": "a <mask> b", "candidates": ["x"], "label": 0}, "list of 2..9"),
    ({"prompt": "a <mask> b", "candidates": ["x", ""], "label": 0}, "list of 2..9"),
    ({"prompt": "a b", "candidates": ["x", "y"], "label": 0}, "exactly once"),
    ({"prompt": "a <mask> b", "candidates": ["x", "y"], "label": 2}, r"0\.\.1"),
])
def test_bad_probing_rows_are_user_errors(tmp_path, row, message):
    path = tmp_path / "en.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=message):
        read_jsonl(path, get_task("geomlama"))


def test_candidate_counts_must_be_parallel():
    rows = {"en": [{"prompt": "a", "candidates": ["x", "y"]}], "zh": [{"prompt": "b", "candidates": ["x", "y", "z"]}]}
    with pytest.raises(UserError, match="2 candidates in en but 3 in zh"):
        check_parallel(rows, "pool")


# ---------------------------------------------------------------------------------------------------
# Task files
# ---------------------------------------------------------------------------------------------------


def test_task_file_becomes_a_task(tmp_path):
    path = write_task_file(tmp_path, {"train": 3, "validation": 3, "test": 3})
    task = get_task(str(path))
    assert task.name == "topics" and task.languages == ("en", "fr", "de") and task.num_labels == 3
    assert task.templates == {"en": "{text} Topic: {mask}."} and task.label_words["en"] == ("science", "travel",
                                                                                             "politics")
    assert task.pool_size == 8
    rows = load_split(task, "test", "de", data_dir=None)  # data_dir comes from the task file
    assert len(rows) == 3 and rows[0]["label"] in (0, 1, 2)


def test_task_file_reports_every_problem_at_once(tmp_path):
    path = write_task_file(tmp_path, {"train": 2, "validation": 2}, colour="blue",  # no test split; unknown key
                           prompt={"template": "{text} {topic}: {mask}.", "label_words": ["a", "b"], "verbalizer": 1})
    with pytest.raises(UserError) as err:
        get_task(str(path))
    message = str(err.value)
    assert "5 problem(s)" in message and "\n" not in message
    for expected in ("unknown key 'colour'", "unknown key 'prompt.verbalizer'", "{topic}",
                     "has 2 words for 3 labels", "missing file"):
        assert expected in message
    assert message.count("missing file") == 1 and "test/" in message  # one line lists the missing files


def test_task_file_structural_errors(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"name": "bad name", "languages": ["en"], "text_fields": ["a", "b", "c"],
                                "label_names": ["x", "x"]}), encoding="utf-8")
    with pytest.raises(UserError) as err:
        get_task(str(path))
    for expected in ("missing key 'data_dir'", "'name'", "'languages'", "'text_fields'", "'label_names'"):
        assert expected in str(err.value)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="not valid JSON"):
        get_task(str(path))
    with pytest.raises(UserError, match="task file not found"):
        get_task(str(tmp_path / "absent.json"))


def test_task_file_per_language_prompts(tmp_path):
    prompt = {"template": {"en": "{text} Topic: {mask}.", "fr": "{text} Sujet : {mask}."},
              "label_words": {"en": ["science", "travel", "politics"], "xx": ["a", "b", "c"]}}
    path = write_task_file(tmp_path, {"train": 2, "validation": 2, "test": 2}, prompt=prompt)
    with pytest.raises(UserError, match="names language 'xx'"):
        get_task(str(path))


def test_unknown_task_mentions_task_files():
    with pytest.raises(UserError, match=r"\*\.json"):
        get_task("sib200")


def test_no_hub_for_task_files(tmp_path, monkeypatch):
    path = write_task_file(tmp_path, {"train": 2, "validation": 2, "test": 2})
    monkeypatch.setattr(data, "load_hub", lambda *a, **k: pytest.fail("task files never touch the Hub"))
    assert load_split(get_task(str(path)), "validation", "fr", data_dir=None)
