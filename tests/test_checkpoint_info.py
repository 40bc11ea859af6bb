"""The checkpoint record (`alsace_task.json`, alsace.checkpoint): what is written, read and decided from it.

Fast (no model): a featurizer stand-in carries the three settings the record keeps.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from alsace.arguments import DataArguments, ModelArguments, PromptArguments
from alsace.checkpoint import (CHECKPOINT_INFO, DEFAULT_MAX_SEQ_LENGTH, TASK_FILE_COPY, CheckpointInfo,
                               placeholder_count, settings_from_checkpoint)
from alsace.errors import UserError
from alsace.tasks import get_task
from taskdata import write_task_file


def settings(prompt_language="native", placeholders=3, max_length=64):
    return SimpleNamespace(prompt_language=prompt_language, num_placeholder_tokens=placeholders, max_length=max_length)


def test_checkpoint_record_round_trip_and_what_it_decides(tmp_path):
    xnli, pawsx = get_task("xnli"), get_task("pawsx")
    assert CheckpointInfo.read(tmp_path) is None
    CheckpointInfo.write(tmp_path, xnli, "prompt", settings())
    assert (tmp_path / CHECKPOINT_INFO).is_file() and CHECKPOINT_INFO == "alsace_task.json"
    stored = {"task": "xnli", "label_names": list(xnli.label_names), "head": "prompt", "prompt_language": "native",
              "num_placeholder_tokens": 3, "max_seq_length": 64}
    assert json.loads((tmp_path / CHECKPOINT_INFO).read_text("utf-8")) == stored
    info = CheckpointInfo.read(str(tmp_path))
    assert info.to_dict() == stored and not (tmp_path / TASK_FILE_COPY).exists()
    assert (info.path, info.task, info.label_names, info.head) == (str(tmp_path), "xnli", tuple(xnli.label_names),
                                                                   "prompt")
    assert (info.prompt_language, info.num_placeholder_tokens, info.max_seq_length, info.task_file) == \
        ("native", 3, 64, None)
    assert xnli.num_placeholder_tokens != 3
    assert placeholder_count(info, xnli, None) == 3  # what the checkpoint was fine-tuned with
    assert placeholder_count(info, xnli, 0) == 0  # the flag wins, even 0
    assert placeholder_count(info, xnli, 5) == 5
    assert placeholder_count(None, xnli, None) == xnli.num_placeholder_tokens  # a stock model: the task's
    info.check(xnli, "prompt")
    with pytest.raises(UserError, match=rf"^{re.escape(str(tmp_path))}: checkpoint was fine-tuned for labels "
                                        rf"\['entailment', 'neutral', 'contradiction'\] \(xnli\) but --task pawsx has "
                                        r"\['not_paraphrase', 'paraphrase'\]; pass the task it was fine-tuned for"):
        info.check(pawsx, "prompt")
    with pytest.raises(UserError, match=rf"^{re.escape(str(tmp_path))}: checkpoint was trained with --head prompt; "
                                        r"pass --head prompt \(HEAD=prompt in run_script/\*\.sh\)$"):
        info.check(xnli, "classification")
    (tmp_path / CHECKPOINT_INFO).write_text('{"task": "old", "head": "prompt"}')  # a record without label names
    old = CheckpointInfo.read(tmp_path)
    assert old.to_dict() == {"task": "old", "head": "prompt"}
    assert placeholder_count(old, xnli, None) == xnli.num_placeholder_tokens  # not recorded: the task's
    with pytest.raises(UserError, match=r"fine-tuned for labels None \(old\) but --task xnli has"):
        old.check(xnli, "prompt")


def test_read_expands_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "ck").mkdir()
    CheckpointInfo.write(tmp_path / "ck", get_task("pawsx"), "classification", settings("en", 0, 128))
    info = CheckpointInfo.read("~/ck")
    assert info.task == "pawsx" and info.head == "classification" and info.max_seq_length == 128
    assert info.path == "~/ck"


def test_a_task_file_is_copied_with_its_data_dir_made_absolute(tmp_path):
    task_file = write_task_file(tmp_path / "task", {"validation": 2})
    task = get_task(str(task_file), check_files=False)
    ck = tmp_path / "ck"
    ck.mkdir()
    CheckpointInfo.write(ck, task, "prompt", settings("en", 0, 48), str(task_file))
    copy = json.loads((ck / TASK_FILE_COPY).read_text("utf-8"))
    original = json.loads(task_file.read_text("utf-8"))
    assert original["data_dir"] == "topics_data" and copy["data_dir"] == task.data_dir
    assert Path(task.data_dir).is_absolute() and Path(task.data_dir) == tmp_path / "task" / "topics_data"
    assert {k: v for k, v in copy.items() if k != "data_dir"} == {k: v for k, v in original.items() if k != "data_dir"}
    info = CheckpointInfo.read(ck)
    assert info.task_file == TASK_FILE_COPY and info.to_dict()["task_file"] == TASK_FILE_COPY
    assert info.own_task == str(ck / TASK_FILE_COPY)
    other = tmp_path / "registry"
    other.mkdir()
    CheckpointInfo.write(other, get_task("xnli"), "prompt", settings(), "xnli")  # a registry name: nothing copied
    assert not (other / TASK_FILE_COPY).exists() and CheckpointInfo.read(other).own_task == "xnli"


def record(folder: Path, **fields) -> CheckpointInfo:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CHECKPOINT_INFO).write_text(json.dumps(fields), encoding="utf-8")
    return CheckpointInfo.read(folder)


def test_resolve_task_and_head_of_a_registry_checkpoint(tmp_path):
    info = record(tmp_path / "ck", task="pawsx", label_names=["not_paraphrase", "paraphrase"], head="classification")
    assert info.resolve_task(None) == "pawsx" and info.resolve_task("pawsx") == "pawsx"
    with pytest.raises(UserError, match=r"^--task xnli: .*ck was fine-tuned for task pawsx \(labels not_paraphrase, "
                                        r"paraphrase; its alsace_task.json\); omit --task to use the checkpoint's, "
                                        r"or start from a checkpoint of this task$"):
        info.resolve_task("xnli")
    relabelled = record(tmp_path / "relabelled", task="pawsx", label_names=["paraphrase", "not_paraphrase"],
                        head="prompt")
    assert relabelled.resolve_task("pawsx") == "pawsx"  # the recorded name: its labels are `check`'s to refuse
    with pytest.raises(UserError, match="checkpoint was fine-tuned for labels"):
        relabelled.check(get_task("pawsx"), "prompt")
    renamed = record(tmp_path / "renamed", task="paws", label_names=["not_paraphrase", "paraphrase"], head="prompt")
    with pytest.raises(UserError, match="was fine-tuned for task paws "):  # the same labels, another name
        renamed.resolve_task("pawsx")
    paws_file = write_task_file(tmp_path / "pawsfile", {"validation": 2}, name="pawsx",
                                label_names=["not_paraphrase", "paraphrase"],
                                prompt={"template": "{text} {mask}", "label_words": ["no", "yes"]})
    assert info.resolve_task(str(paws_file)) == str(paws_file)  # the same name and labels: the file given
    other_labels = write_task_file(tmp_path / "otherfile", {"validation": 2}, name="pawsx",
                                   label_names=["paraphrase", "not_paraphrase"],
                                   prompt={"template": "{text} {mask}", "label_words": ["yes", "no"]})
    with pytest.raises(UserError, match="was fine-tuned for task pawsx"):
        info.resolve_task(str(other_labels))
    assert info.resolve_head(None) == "classification" and info.resolve_head("classification") == "classification"
    with pytest.raises(UserError, match=r"^--head prompt: .*ck was trained with --head classification \(its "
                                        r"alsace_task.json\); omit --head to use the checkpoint's$"):
        info.resolve_head("prompt")


def test_resolve_task_of_a_task_file_checkpoint(tmp_path):
    task_file = write_task_file(tmp_path / "task", {"validation": 2})
    ck = tmp_path / "ck"
    ck.mkdir()
    CheckpointInfo.write(ck, get_task(str(task_file), check_files=False), "prompt", settings("en", 0, 48),
                         str(task_file))
    info = CheckpointInfo.read(ck)
    own = str(ck / TASK_FILE_COPY)
    assert info.resolve_task(None) == own and info.resolve_task(own) == own
    moved = task_file.rename(task_file.with_name("moved.json"))
    assert info.resolve_task(str(moved)) == own  # restated, the same task: the copy, one value however restated
    changed = write_task_file(tmp_path / "other", {"validation": 2}, pool_size=9)
    with pytest.raises(UserError, match=r"^--task .*topics.json: .*ck was fine-tuned for task topics \(labels "
                                        r"[a-z, ]+; its alsace_task.json and alsace_task_file.json\); omit --task"):
        info.resolve_task(str(changed))
    with pytest.raises(UserError, match="was fine-tuned for task topics"):
        info.resolve_task("xnli")


def test_an_older_task_file_checkpoint_without_its_copy_asks_for_the_file(tmp_path):
    info = record(tmp_path / "ck", task="mytask", label_names=["a", "b"], head="prompt")
    with pytest.raises(UserError, match=r"^--model_name_or_path .*ck: fine-tuned on task 'mytask' of a task file; "
                                        r"pass that file with --task path/to/mytask.json \(TASK= in run_script/\*.sh\)$"):
        info.resolve_task(None)
    registry = record(tmp_path / "xnli", task="xnli", label_names=list(get_task("xnli").label_names), head="prompt")
    assert registry.resolve_task(None) == "xnli"  # a registry name needs no copy


def test_prompt_language_must_match_for_the_prompt_head_only(tmp_path):
    info = record(tmp_path / "ck", task="xnli", label_names=list(get_task("xnli").label_names), head="prompt",
                  prompt_language="native")
    info.check_prompt_language("prompt", "native")
    info.check_prompt_language("classification", "en")  # a classification head reads no label words
    with pytest.raises(UserError, match=r"^--prompt_language en: .*ck was trained with --prompt_language native "
                                        r"\(its alsace_task.json\); pass --prompt_language native"):
        info.check_prompt_language("prompt", "en")
    unrecorded = record(tmp_path / "old", task="xnli", label_names=["a"], head="prompt")
    unrecorded.check_prompt_language("prompt", "en")  # nothing recorded: nothing to check


def arguments(model, task=None, head=None, data_dir=None, prompt_language="en"):
    return (ModelArguments(model_name_or_path=str(model), head=head), DataArguments(task=task, data_dir=data_dir),
            PromptArguments(prompt_language=prompt_language))


def test_settings_from_checkpoint_fills_in_and_checks_every_setting(tmp_path):
    model_args, data_args, prompt_args = arguments(tmp_path / "stock")
    assert settings_from_checkpoint(model_args, data_args, prompt_args) is None  # a stock model: the defaults
    assert (data_args.task, model_args.head) == ("xnli", "prompt")
    model_args, data_args, prompt_args = arguments(tmp_path / "stock", task="pawsx", head="classification")
    settings_from_checkpoint(model_args, data_args, prompt_args)
    assert (data_args.task, model_args.head) == ("pawsx", "classification")  # given values kept

    ck = tmp_path / "ck"
    ck.mkdir()
    CheckpointInfo.write(ck, get_task("pawsx"), "classification", settings("native", 0, 32))
    model_args, data_args, prompt_args = arguments(ck)
    info = settings_from_checkpoint(model_args, data_args, prompt_args)
    assert info == CheckpointInfo.read(ck) and (data_args.task, model_args.head) == ("pawsx", "classification")
    with pytest.raises(UserError, match="^--head prompt: "):
        settings_from_checkpoint(*arguments(ck, head="prompt"))
    with pytest.raises(UserError, match="^--task xnli: "):
        settings_from_checkpoint(*arguments(ck, task="xnli"))

    prompt_ck = tmp_path / "prompt_ck"
    prompt_ck.mkdir()
    CheckpointInfo.write(prompt_ck, get_task("pawsx"), "prompt", settings("native", 0, 32))
    with pytest.raises(UserError, match="^--prompt_language en: "):
        settings_from_checkpoint(*arguments(prompt_ck))
    model_args, data_args, prompt_args = arguments(prompt_ck, prompt_language="native")
    settings_from_checkpoint(model_args, data_args, prompt_args)
    assert model_args.head == "prompt"

    task_file = write_task_file(tmp_path / "task", {"validation": 2})
    file_ck = tmp_path / "file_ck"
    file_ck.mkdir()
    CheckpointInfo.write(file_ck, get_task(str(task_file), check_files=False), "prompt", settings("en", 0, 48),
                         str(task_file))
    model_args, data_args, prompt_args = arguments(file_ck, task=str(task_file))
    settings_from_checkpoint(model_args, data_args, prompt_args)
    assert data_args.task == str(file_ck / TASK_FILE_COPY)  # restated equal: the checkpoint's copy
    with pytest.raises(UserError, match=r"^--data_dir elsewhere: a task file"):  # its data dir is the file's
        settings_from_checkpoint(*arguments(file_ck, data_dir="elsewhere"))


def test_default_max_seq_length_of_old_records():
    assert DEFAULT_MAX_SEQ_LENGTH == 512
