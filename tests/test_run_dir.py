"""A run directory's life (alsace.run_dir), without a model: created, continued, refused, restored.

The end-to-end versions (a real run killed and resumed) are in test_run_identity.py and test_resume.py;
these pin every branch by hand, fast enough to run against every mutant.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import alsace.run_dir as run_dir
from alsace.errors import RunComplete, UserError
from alsace.run_config import CONFIG_FILE, config_digest
from alsace.run_dir import (RUN_OUTPUTS, RunStages, last_complete_checkpoint, prepare_output_dir, remove_checkpoints,
                            restore_output_dir, stored_config, where_results_are)

CONFIG = {"model_args": {"model_name_or_path": "m"}, "training_args": {"learning_rate": 2e-5, "seed": 1,
                                                                        "output_dir": "a"},
          "resolved": {"languages": ["en", "fr"]}}


@pytest.fixture(autouse=True)
def no_tracked_run():
    run_dir._run.update(output_dir=None, created=None, before=None)
    yield
    run_dir._run.update(output_dir=None, created=None, before=None)


def checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_a_new_directory_stores_the_configuration_and_starts_fresh(tmp_path):
    out = tmp_path / "a" / "b"
    assert prepare_output_dir(str(out), False, None, CONFIG) is None
    assert stored_config(out) == CONFIG and json.loads((out / CONFIG_FILE).read_text()) == CONFIG
    assert run_dir._run["output_dir"] == out and run_dir._run["created"] == tmp_path / "a"
    assert run_dir._run["before"] == frozenset()
    assert prepare_output_dir(str(tmp_path / "c"), False) is None and not (tmp_path / "c" / CONFIG_FILE).exists()


def test_an_empty_existing_directory_is_a_fresh_run_and_nothing_above_it_is_created(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert prepare_output_dir(str(out), False, None, CONFIG) is None
    assert run_dir._run["created"] is None and stored_config(out) == CONFIG


def test_a_file_or_an_unwritable_place_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"^--output_dir .*file: exists and is not a directory$"):
        prepare_output_dir(str(tmp_path / "file"), False, None, CONFIG)
    with pytest.raises(UserError, match=r"^--output_dir .*file/run: cannot write there \(.*\); choose a writable"):
        prepare_output_dir(str(tmp_path / "file" / "run"), False, None, CONFIG)


def test_a_foreign_or_broken_directory_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=rf"^--output_dir .*run is not empty and holds no {CONFIG_FILE} "):
        prepare_output_dir(str(out), False, None, CONFIG)
    (out / CONFIG_FILE).write_text("{not json")
    with pytest.raises(UserError, match=rf"^.*run/{CONFIG_FILE}: not valid JSON; choose another directory"):
        prepare_output_dir(str(out), False, None, CONFIG)


def test_another_configuration_is_refused_one_line_per_setting(tmp_path):
    out = tmp_path / "run"
    prepare_output_dir(str(out), False, None, CONFIG)
    (out / "baseline").mkdir()
    other = json.loads(json.dumps(CONFIG))
    other["training_args"]["learning_rate"] = 1e-4
    with pytest.raises(UserError) as one:
        prepare_output_dir(str(out), False, None, other)
    assert "(1 setting differ, stored → now):\n  --learning_rate: 2e-05 → 0.0001\nrun it into another" in str(one.value)
    other["training_args"]["seed"] = 2
    with pytest.raises(UserError) as two:
        prepare_output_dir(str(out), False, None, other)
    assert "(2 settings differ, stored → now):\n  --learning_rate: 2e-05 → 0.0001\n  --seed: 1 → 2\n" in str(two.value)
    neutral = json.loads(json.dumps(CONFIG))
    neutral["training_args"]["output_dir"] = "elsewhere"  # cannot change results: the same run
    assert prepare_output_dir(str(out), False, None, neutral) is None


def test_the_same_configuration_continues_from_the_last_complete_checkpoint(tmp_path, caplog):
    out = tmp_path / "run"
    prepare_output_dir(str(out), False, None, CONFIG)
    checkpoint(out, 9)
    checkpoint(out, 10)
    checkpoint(out, 12, complete=False)  # cut off while saving
    RunStages(out, CONFIG).mark("baseline")
    with caplog.at_level(logging.INFO, logger="alsace"):
        assert prepare_output_dir(str(out), False, None, CONFIG) == str(out / "checkpoint-10")  # 10 > 9, not "9" > "10"
    text = caplog.text
    assert "skipping " + str(out / "checkpoint-12") + ": incomplete" in text
    assert f"resuming the interrupted run from {out / 'checkpoint-10'}; reusing its completed baseline" in text


def test_the_same_configuration_without_a_checkpoint_trains_from_step_0(tmp_path, caplog):
    out = tmp_path / "run"
    prepare_output_dir(str(out), False, None, CONFIG)
    with caplog.at_level(logging.INFO, logger="alsace"):
        assert prepare_output_dir(str(out), False, None, CONFIG) is None
    assert f"continuing the interrupted run in {out}: training starts at step 0" in caplog.text
    assert "reusing" not in caplog.text


def test_a_finished_run_is_not_redone(tmp_path):
    out = tmp_path / "run"
    prepare_output_dir(str(out), False, None, CONFIG)
    (out / "results.md").write_text("x")
    RunStages(out, CONFIG).mark("run")
    with pytest.raises(RunComplete, match=rf"^{out} holds a finished run, nothing to do; results in {out}/: "
                                          r"results.md \(pass --overwrite_output_dir to run it again\)$"):
        prepare_output_dir(str(out), False, None, CONFIG)


def test_overwrite_removes_the_previous_runs_outputs_only(tmp_path, caplog):
    out = tmp_path / "run"
    prepare_output_dir(str(out), False, None, CONFIG)
    for name in ("results.json", "comparison.md", "teacher_selection.json"):
        (out / name).write_text("old")
    (out / "predictions").mkdir()
    (out / "predictions" / "en.npy").write_text("old")
    checkpoint(out, 900)
    (out / "notes.txt").write_text("mine")
    RunStages(out, CONFIG).mark("run")
    other = {**CONFIG, "resolved": {"languages": ["en"]}}
    with caplog.at_level(logging.WARNING, logger="alsace"):
        assert prepare_output_dir(str(out), True, None, other) is None
    assert sorted(p.name for p in out.iterdir()) == sorted([CONFIG_FILE, "notes.txt"])
    assert stored_config(out) == other
    assert ("--overwrite_output_dir: removed the previous run's checkpoint-900, comparison.md, predictions, "
            f"results.json, {CONFIG_FILE}, stages, teacher_selection.json") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alsace"):
        prepare_output_dir(str(out), True, None, other)
    assert f"removed the previous run's {CONFIG_FILE}\n" in caplog.text + "\n"  # only the configuration was left
    assert set(RUN_OUTPUTS) >= {"results.json", "stages", "baseline", CONFIG_FILE}


def test_a_requested_checkpoint_must_be_complete(tmp_path):
    out = tmp_path / "run"
    good, cut = checkpoint(tmp_path / "elsewhere", 4), checkpoint(tmp_path / "elsewhere", 6, complete=False)
    assert prepare_output_dir(str(out), False, str(good), CONFIG) == str(good)
    for bad in (cut, tmp_path / "elsewhere", tmp_path / "missing" / "checkpoint-3"):
        with pytest.raises(UserError, match=r"^--resume_from_checkpoint .*: not a complete checkpoint-N folder; "):
            prepare_output_dir(str(out), False, str(bad), CONFIG)
    renamed = tmp_path / "elsewhere" / "checkpoint-5"
    good.rename(renamed)  # its state says step 4: not checkpoint-5
    with pytest.raises(UserError, match="not a complete checkpoint-N folder"):
        prepare_output_dir(str(out), False, str(renamed), CONFIG)


def test_stage_markers_belong_to_the_configuration_that_wrote_them(tmp_path):
    stages = RunStages(tmp_path, CONFIG)
    assert not stages.done("baseline") and stages.completed() == [] and RunStages.marked(tmp_path) == []
    stages.mark("teacher_selection")
    stages.mark("baseline")
    assert (tmp_path / "stages" / "baseline.done").read_text() == config_digest(CONFIG) + "\n"
    assert stages.done("baseline") and stages.done("baseline", broadcast=False) and not stages.done("run")
    assert stages.completed() == ["baseline", "teacher_selection"]
    other = RunStages(tmp_path, {**CONFIG, "resolved": {"languages": ["en"]}})
    assert not other.done("baseline") and other.completed() == []
    assert RunStages.marked(tmp_path) == ["baseline", "teacher_selection"]


def test_last_complete_checkpoint_and_the_cleanup_after_a_finished_run(tmp_path, caplog):
    assert last_complete_checkpoint(tmp_path) is None
    checkpoint(tmp_path, 2)
    checkpoint(tmp_path, 3, complete=False)
    (tmp_path / "checkpoint-7").write_text("a file, not a checkpoint")
    (tmp_path / "checkpoint-x").mkdir()
    with caplog.at_level(logging.WARNING, logger="alsace"):
        assert last_complete_checkpoint(tmp_path, warn=False) == str(tmp_path / "checkpoint-2")
    assert caplog.text == ""
    with caplog.at_level(logging.WARNING, logger="alsace"):
        assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert "checkpoint-3: incomplete" in caplog.text
    remove_checkpoints(tmp_path, keep=True)
    assert (tmp_path / "checkpoint-2").is_dir()
    with caplog.at_level(logging.INFO, logger="alsace"):
        remove_checkpoints(tmp_path, keep=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-7", "checkpoint-x"]
    assert "removed the intermediate checkpoint-2, checkpoint-3 (pass --keep_checkpoints" in caplog.text


def test_restore_removes_what_this_invocation_created_and_nothing_else(tmp_path):
    out = tmp_path / "a" / "run"
    prepare_output_dir(str(out), False, None, CONFIG)
    (out / "baseline").mkdir()
    (out / "baseline" / "results.json").write_text("{}")
    assert restore_output_dir() == f" (removed {tmp_path / 'a'}, which this run had created)"
    assert not (tmp_path / "a").exists() and tmp_path.exists()

    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "old.txt").write_text("before")
    prepare_output_dir(str(kept), True, None, CONFIG)
    (kept / "new.txt").write_text("after")
    assert restore_output_dir() == f" (removed what this run had written to {kept})"
    assert sorted(p.name for p in kept.iterdir()) == ["old.txt"]
    assert restore_output_dir() == ""  # nothing new the second time


def test_restore_keeps_what_a_rerun_continues_from(tmp_path, caplog):
    out = tmp_path / "run"
    prepare_output_dir(str(out), False, None, CONFIG)
    RunStages(out, CONFIG).mark("baseline")
    RunStages(out, CONFIG).mark("teacher_selection")
    assert restore_output_dir(interrupted=True) == (f" ({out} is kept with its completed baseline, teacher_selection, "
                                                    "which the rerun reuses)")
    assert restore_output_dir(interrupted=False) == f" (removed {out}, which this run had created)"
    prepare_output_dir(str(out), False, None, CONFIG)
    checkpoint(out, 5, complete=False)
    checkpoint(out, 4)
    with caplog.at_level(logging.WARNING, logger="alsace"):  # the cut-off checkpoint-5 is skipped quietly here
        assert restore_output_dir() == f" ({out} is kept: rerun the same command to resume from checkpoint-4)"
    assert caplog.text == ""
    run_dir._run.update(output_dir=None, created=None, before=None)
    assert restore_output_dir() == ""  # no run tracked: nothing to undo


def test_where_results_are_lists_tables_then_plots(tmp_path):
    assert where_results_are(tmp_path) == f"results in {tmp_path}/: no results file"
    for name in ("comparison.json", "results.md", "b.png", "a.png", "notes.txt"):
        (tmp_path / name).write_text("x")
    assert where_results_are(tmp_path) == f"results in {tmp_path}/: results.md, comparison.json; plots: a.png, b.png"


# ------------------------------------------------------------------- run_config: what makes two runs the same run


def test_build_config_keeps_sections_in_order_and_drops_only_the_action_flags():
    from alsace.run_config import build_config

    sections = {"model_args": {"model_name_or_path": "m", "overwrite_output_dir": True},
                "training_args": {"seed": 3, "resume_from_checkpoint": "x", "output_dir": Path("o")},
                "notes": {"overwrite_output_dir": "kept: not an *_args section"}}
    config = build_config(sections, {"languages": ("en", "fr")})
    assert list(config) == ["model_args", "training_args", "notes", "resolved"]
    assert config["model_args"] == {"model_name_or_path": "m"}
    assert config["training_args"] == {"seed": 3, "output_dir": "o"}  # JSON values: a Path becomes its text
    assert config["notes"] == {"overwrite_output_dir": "kept: not an *_args section"}
    assert config["resolved"] == {"languages": ["en", "fr"]}
    assert sections["model_args"]["overwrite_output_dir"] is True  # the caller's sections are not touched


def test_config_differences_name_flags_resolved_values_and_missing_settings():
    from alsace.run_config import comparable, config_differences

    stored = {"training_args": {"seed": 1, "logging_steps": 5, "learning_rate": 1e-5},
              "resolved": {"world_size": 1}, "version": "1"}
    current = {"training_args": {"seed": 1, "logging_steps": 50, "warmup_steps": 10},
               "resolved": {"world_size": 2}, "version": "2"}
    assert comparable(stored) == {"--seed": "1", "--learning_rate": "1e-05", "resolved.world_size": "1",
                                  "version": '"1"'}
    assert config_differences(stored, current) == [
        "--learning_rate: 1e-05 → (not set)", "--warmup_steps: (not set) → 10", "resolved.world_size: 1 → 2",
        'version: "1" → "2"']
    assert config_differences(stored, stored) == []
    nested = {"resolved": {"languages": {"b": 1, "a": 2}}}
    assert comparable(nested) == {"resolved.languages": '{"a": 2, "b": 1}'}  # key order never matters


def test_config_digest_changes_with_results_only():
    a = json.loads(json.dumps(CONFIG))
    b = json.loads(json.dumps(CONFIG))
    b["training_args"]["output_dir"] = "b"  # result-neutral
    c = json.loads(json.dumps(CONFIG))
    c["training_args"]["seed"] = 2
    assert config_digest(a) == config_digest(b) != config_digest(c)
    assert len(config_digest(a)) == 16 and int(config_digest(a), 16) >= 0


def test_every_kind_of_section_is_compared_whatever_its_key_order():
    from alsace.run_config import comparable, config_differences

    first = {"version": {"b": [1, {"y": 2, "x": 1}], "a": 0}, "tags": [{"k": 1, "j": 2}],
             "training_args": {"seed": 1}}
    reordered = {"training_args": {"seed": 1}, "tags": [{"j": 2, "k": 1}],
                 "version": {"a": 0, "b": [1, {"x": 1, "y": 2}]}}
    assert comparable(first)["tags"] == '[{"j": 2, "k": 1}]'  # a non-dict section: canonical JSON
    assert comparable(first)["--seed"] == "1"  # a dict section after a non-dict one is still read
    assert config_differences(first, reordered) == [] and config_digest(first) == config_digest(reordered)
    changed = {**reordered, "tags": [{"j": 3, "k": 1}]}
    assert config_differences(first, changed) == ['tags: [{"j": 2, "k": 1}] → [{"j": 3, "k": 1}]']
    assert config_digest(first) != config_digest(changed)


def test_restore_stops_at_a_folder_that_others_use_and_at_one_already_gone(tmp_path):
    out = tmp_path / "a" / "run"
    prepare_output_dir(str(out), False, None, CONFIG)
    (tmp_path / "a" / "other.txt").write_text("written meanwhile by someone else")
    assert restore_output_dir() == f" (removed {out}, which this run had created)"
    assert (tmp_path / "a" / "other.txt").is_file() and not out.exists()
    prepare_output_dir(str(out), False, None, CONFIG)
    __import__("shutil").rmtree(out)  # removed by hand before the failure is handled
    assert restore_output_dir() == ""


def test_an_output_dir_that_cannot_be_written_is_refused(tmp_path, monkeypatch):
    import tempfile

    out = tmp_path / "readonly"
    real = tempfile.TemporaryFile

    def no_write_there(*args, dir=None, **kwargs):  # a read-only mount, seen by a process that is not root
        if dir is not None and Path(dir) == out:
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", no_write_there)
    with pytest.raises(UserError, match=r"^--output_dir .*readonly: cannot write there \(Permission denied\); choose"):
        prepare_output_dir(str(out), False, None, CONFIG)


def test_flatten_run_args_merges_the_sections_in_order_and_leaves_resolved_out():
    from alsace.run_config import flatten_run_args

    record = {"model_args": {"head": "prompt", "seed": 1}, "training_args": {"seed": 2, "learning_rate": 1e-5},
              "resolved": {"languages": ["en"]}, "note": "kept", "extra_args": "not a section"}
    assert flatten_run_args(record) == {"head": "prompt", "seed": 2, "learning_rate": 1e-5, "note": "kept",
                                        "extra_args": "not a section"}
    flat = {"task": "xnli", "resolved": {"x": 1}}
    assert flatten_run_args(flat) is flat  # no sections: unchanged


def test_restore_without_arguments_treats_the_failure_as_an_error(tmp_path):
    out = tmp_path / "run"
    prepare_output_dir(str(out), False, None, CONFIG)
    RunStages(out, CONFIG).mark("baseline")
    assert restore_output_dir() == f" (removed {out}, which this run had created)"  # a stage is kept only when stopped
