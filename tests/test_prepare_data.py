"""Data preparation: the exporter against an in-memory stand-in for the Hub, verification on corrupted files."""

from __future__ import annotations

import fnmatch
import hashlib
import json
from pathlib import Path

import datasets
import pytest

import prepare_data
from alsace.data import load_split
from alsace.errors import UserError
from alsace.prepare.export import export_task, snapshot_model, verify
from alsace.tasks import get_task


def xnli_rows(premises, labels, hypothesis="H"):
    return [{"premise": p, "hypothesis": hypothesis, "label": y} for p, y in zip(premises, labels)]


class FakeHub:
    """Stands in for the Hub: `tables[(repo, config, split)]` rows, served as in-memory `datasets.Dataset`s."""

    def __init__(self, tables, model_files=None, fail=None):
        self.tables, self.model_repo_files, self.fail = tables, model_files or {}, fail
        self.loaded = []

    def dataset_revision(self, repo_id, revision):
        if self.fail:
            raise self.fail
        return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()

    def load_split(self, repo_id, config, split, revision):
        self.loaded.append((repo_id, config, split, revision))
        return datasets.Dataset.from_list(self.tables[(repo_id, config, split)])

    def model_files(self, repo_id, revision):
        return "f" * 40, list(self.model_repo_files)

    def download_model(self, repo_id, revision, local_dir, allow_patterns):
        for name, content in self.model_repo_files.items():
            if any(fnmatch.fnmatch(name, p) for p in allow_patterns):
                (Path(local_dir) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(local_dir) / name).write_bytes(content)


def xnli_hub():
    tables = {("facebook/xnli", "en", "train"): xnli_rows(["a", "b", "c", "d"], [0, 1, -1, 2])}
    for lang in ("en", "fr", "de"):
        tables[("facebook/xnli", lang, "validation")] = xnli_rows([f"{lang}{i}" for i in range(4)], [2, 0, 1, 1])
        tables[("facebook/xnli", lang, "test")] = xnli_rows([f"{lang}t{i}" for i in range(3)], [1, 1, 0])
    # One French hypothesis is empty: that row must go in every language, or the files stop being parallel.
    tables[("facebook/xnli", "fr", "validation")][1]["hypothesis"] = "  "
    return FakeHub(tables)


def read(path):
    return [json.loads(line) for line in Path(path).read_text("utf-8").splitlines()]


def test_export_normalises_rows_keeps_alignment_and_records_a_manifest(tmp_path):
    hub = xnli_hub()
    entry = export_task("xnli", tmp_path, hub, languages=["en", "fr", "de"])
    root = tmp_path / "xnli"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*.jsonl")) == [
        "test/de.jsonl", "test/en.jsonl", "test/fr.jsonl", "train/en.jsonl",
        "validation/de.jsonl", "validation/en.jsonl", "validation/fr.jsonl"]
    # Train: the hidden label (-1) is dropped; only the task's fields and an int label are kept.
    assert read(root / "train" / "en.jsonl") == [{"premise": "a", "hypothesis": "H", "label": 0},
                                                 {"premise": "b", "hypothesis": "H", "label": 1},
                                                 {"premise": "d", "hypothesis": "H", "label": 2}]
    # Validation: row 1 is unusable in French, so it is dropped in all three languages.
    assert [r["premise"] for r in read(root / "validation" / "de.jsonl")] == ["de0", "de2", "de3"]
    assert [r["label"] for r in read(root / "validation" / "fr.jsonl")] == [2, 1, 1]
    assert entry["dropped"]["validation"] == [{"row": 1, "language": "fr", "reason": "empty hypothesis",
                                               "source": "xnli"}]
    # The manifest pins the resolved revision, and every file's count and hash.
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    xnli = manifest["tasks"]["xnli"]
    sha = hashlib.sha1(b"facebook/xnli@main").hexdigest()
    assert xnli["sources"]["xnli"]["revision"] == sha
    assert {call[3] for call in hub.loaded} == {sha}  # rows were loaded at exactly that revision
    file = xnli["files"]["validation/fr.jsonl"]
    assert file["rows"] == 3
    assert file["sha256"] == hashlib.sha256((root / "validation" / "fr.jsonl").read_bytes()).hexdigest()
    # The training code's own reader accepts the files.
    rows = load_split(get_task("xnli"), "validation", "fr", str(tmp_path))
    assert [r["label"] for r in rows] == [2, 1, 1]


def test_xcopa_takes_english_from_copa_and_skips_hidden_test_labels(tmp_path):
    def copa_like(lang, n, labels=None):
        return [{"premise": f"{lang}p{i}", "choice1": "c1", "choice2": "c2", "question": "cause",
                 "label": (labels or [i % 2] * n)[i], "idx": i, "changed": False} for i in range(n)]

    tables = {("aps/super_glue", "copa", "train"): copa_like("en", 4),
              ("aps/super_glue", "copa", "validation"): copa_like("en", 2, [0, 1]),
              ("aps/super_glue", "copa", "test"): copa_like("en", 3, [-1, -1, -1])}
    for lang in ("sw", "qu"):
        tables[("cambridgeltl/xcopa", lang, "validation")] = copa_like(lang, 2, [0, 1])
        tables[("cambridgeltl/xcopa", lang, "test")] = copa_like(lang, 3, [1, 0, 1])
    entry = export_task("xcopa", tmp_path, FakeHub(tables), languages=["en", "sw", "qu"])
    assert sorted(entry["files"]) == ["test/qu.jsonl", "test/sw.jsonl", "train/en.jsonl", "validation/en.jsonl",
                                      "validation/qu.jsonl", "validation/sw.jsonl"]
    assert any("test/en.jsonl not exported" in note for note in entry["notes"])
    assert read(tmp_path / "xcopa" / "test" / "sw.jsonl")[2] == {
        "premise": "swp2", "choice1": "c1", "choice2": "c2", "question": "cause", "label": 1, "id": "2"}
    assert verify(tmp_path) == ([], 6)


def test_rows_read_straight_from_the_hub_equal_the_exported_rows(tmp_path, monkeypatch):
    """One normalisation of Hub rows: training without --data_dir reads what prepare_data.py would write
    (ids from the source's id column, rows a model cannot use skipped), for a split that needs no
    cross-language dropping (XCOPA's Swahili test split, COPA's English train split)."""
    copa = [{"premise": f"p{i}", "choice1": "c1", "choice2": "c2", "question": "cause", "label": i % 2,
             "idx": 10 + i} for i in range(4)]
    copa[2]["choice2"] = ""  # unusable: dropped by both paths
    swahili = [{**row, "premise": f"sw{i}", "choice2": "c2", "label": 1 - i % 2} for i, row in enumerate(copa)]
    swahili.append({**swahili[0], "idx": 99, "label": -1})  # a hidden label: dropped by both paths
    tables = {("aps/super_glue", "copa", "train"): copa, ("cambridgeltl/xcopa", "sw", "test"): swahili,
              ("aps/super_glue", "copa", "test"): [{**copa[0], "label": -1}]}  # hidden: not exported
    export_task("xcopa", tmp_path, FakeHub(tables), splits=("train", "test"), languages=["en", "sw"])
    monkeypatch.setattr(datasets, "load_dataset", lambda hub_id, config, split, **kw: tables[(hub_id, config, split)])
    task = get_task("xcopa")
    for split, lang in (("train", "en"), ("test", "sw")):
        from_hub = load_split(task, split, lang, data_dir=None)
        assert from_hub == load_split(task, split, lang, str(tmp_path)), (split, lang)
        assert [r["id"] for r in from_hub] == (["10", "11", "13"] if lang == "en" else ["10", "11", "12", "13"])


def test_languages_of_different_lengths_are_refused(tmp_path):
    hub = xnli_hub()
    hub.tables[("facebook/xnli", "de", "test")].pop()
    with pytest.raises(UserError, match="different row counts"):
        export_task("xnli", tmp_path, hub, splits=["test"], languages=["en", "de"])


def test_an_unreachable_hub_is_one_clear_line(tmp_path):
    with pytest.raises(UserError, match="facebook/xnli.*ConnectionError.*where the Hub is reachable"):
        export_task("xnli", tmp_path, FakeHub({}, fail=ConnectionError("no route")))


def corrupt(path, edit):
    lines = Path(path).read_text("utf-8").splitlines(keepends=True)
    Path(path).write_text("".join(edit(lines)), encoding="utf-8")


@pytest.fixture
def exported(tmp_path):
    export_task("xnli", tmp_path, xnli_hub(), languages=["en", "fr", "de"])
    assert verify(tmp_path) == ([], 7)
    return tmp_path


def test_verify_catches_a_changed_label(exported):
    fr = exported / "xnli" / "validation" / "fr.jsonl"
    corrupt(fr, lambda lines: [lines[0].replace('"label": 2', '"label": 0')] + lines[1:])
    problems, _ = verify(exported)
    assert any(str(fr) in p and "sha256 differs" in p for p in problems)
    assert any("row 1 differs between en and fr" in p for p in problems)


def test_verify_catches_a_lost_row_and_a_missing_file(exported):
    de = exported / "xnli" / "test" / "de.jsonl"
    corrupt(de, lambda lines: lines[:-1])
    (exported / "xnli" / "validation" / "en.jsonl").unlink()
    problems, _ = verify(exported)
    assert f"{de}: 2 rows, manifest says 3" in problems
    assert any("de has 2 rows, en 3: not parallel" in p for p in problems)
    assert any(p.endswith("validation/en.jsonl: missing") for p in problems)


def test_verify_catches_an_invalid_row(exported):
    en = exported / "xnli" / "train" / "en.jsonl"
    corrupt(en, lambda lines: lines[:1] + ['{"premise": "x", "hypothesis": "", "label": 1}\n'] + lines[2:])
    problems, _ = verify(exported)
    assert any(f"{en}:2: not a valid row" in p for p in problems)


def test_entry_point_exports_then_verifies_and_fails_on_corruption(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(prepare_data, "HubClient", xnli_hub)
    data = str(tmp_path / "data")
    done = prepare_data.main(["--data_dir", data, "--tasks", "xnli", "--languages", "en,fr,de"])
    assert done["xnli"]["files"]["test/en.jsonl"]["rows"] == 3
    assert prepare_data.main(["--data_dir", data, "--verify"]) == {"checked": 7}
    corrupt(tmp_path / "data" / "xnli" / "test" / "fr.jsonl", lambda lines: lines[::-1])
    with pytest.raises(UserError, match="problem"):
        prepare_data.main(["--data_dir", data, "--verify"])
    assert "not parallel" in capsys.readouterr().out


def test_bad_flags_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="--tasks: unknown geomlama"):
        prepare_data.main(["--tasks", "geomlama"])
    with pytest.raises(UserError, match="--hub_revisions"):
        prepare_data.main(["--data_dir", str(tmp_path), "--hub_revisions", "mnli=abc"])
    with pytest.raises(UserError, match="no manifest"):
        prepare_data.main(["--data_dir", str(tmp_path), "--verify"])


def test_model_snapshot_takes_safetensors_and_tokenizer_only_and_records_hashes(tmp_path):
    files = {"config.json": b"{}", "model.safetensors": b"weights", "tokenizer.json": b"{}",
             "sentencepiece.bpe.model": b"spm", "pytorch_model.bin": b"pickle", "tf_model.h5": b"tf",
             "onnx/model.onnx": b"onnx"}
    record = snapshot_model("xlm-roberta-base", tmp_path / "m", FakeHub({}, model_files=files))
    assert sorted(record["files"]) == ["config.json", "model.safetensors", "sentencepiece.bpe.model", "tokenizer.json"]
    assert record["files"]["model.safetensors"]["sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert json.loads((tmp_path / "m" / "snapshot.json").read_text())["revision"] == "f" * 40
    with pytest.raises(UserError, match="no safetensors"):
        snapshot_model("old/model", tmp_path / "old", FakeHub({}, model_files={"pytorch_model.bin": b"x"}))
