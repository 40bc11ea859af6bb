"""Messages that name the real problem and the variable to change (what a user meets after the demo)."""

from __future__ import annotations

import json
import logging

import pytest

import distill
import finetune
from alsace.errors import UserError
from alsace.checkpoint import CHECKPOINT_INFO, CheckpointInfo
from alsace.tasks import get_task


def test_data_dir_with_a_task_file_is_refused_not_ignored(tmp_path):
    with pytest.raises(UserError, match=r"^--data_dir elsewhere: a task file \(--task .*topics.json\) says where its "
                                        r"data are .*drop --data_dir \(DATA_DIR in run_script/\*.sh\)"):
        finetune.main(["--model_name_or_path", "m", "--task", str(tmp_path / "topics.json"), "--data_dir", "elsewhere",
                       "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", ["1", "4"])
def test_a_pool_too_small_to_rank_languages_is_refused(tmp_path, size):
    with pytest.raises(UserError, match=rf"^--pool_size {size} \(POOL_SIZE in run_script/distillation.sh\): use at "
                                        r"least 5 items"):
        distill.main(["--model_name_or_path", "m", "--pool_size", size, "--output_dir", str(tmp_path / "out")])


@pytest.mark.parametrize("extra, warned", [
    ([], True),                                   # lr 5e-5, the teacher side moving: neither recipe
    (["--frozen_teacher"], False),                # RECIPE=recommended
    (["--detach_teacher"], False),                # the demo's setting
    (["--learning_rate", "3e-8"], False),         # RECIPE=original
])
def test_distill_warns_when_called_with_neither_recipe(tmp_path, caplog, extra, warned):
    argv = ["--model_name_or_path", str(tmp_path / "not_a_checkpoint"), "--learning_rate", "5e-5",
            "--output_dir", str(tmp_path / "out"), *extra]
    with caplog.at_level(logging.WARNING, logger="alsace.distill"), pytest.raises(UserError):
        distill.main(argv)  # the warning comes first; the missing checkpoint then stops it
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "alsace.distill")
    assert ("neither recipe" in text) == warned
    if warned:
        assert "--learning_rate 5e-05 with a moving teacher" in text
        assert "RECIPE=recommended" in text and "--frozen_teacher" in text


def test_task_and_head_mismatch_name_the_script_variables(tmp_path):
    (tmp_path / CHECKPOINT_INFO).write_text(json.dumps(
        {"task": "pawsx", "label_names": ["not_paraphrase", "paraphrase"], "head": "prompt"}), encoding="utf-8")
    with pytest.raises(UserError, match=r"pass the task it was fine-tuned for \(--task, TASK= in run_script/\*.sh: "
                                        r"pawsx or its task file\) or a checkpoint fine-tuned for xnli"):
        CheckpointInfo.read(tmp_path).check(get_task("xnli"), "prompt")
    with pytest.raises(UserError, match=r"pass --head prompt \(HEAD=prompt in run_script/\*.sh\)"):
        CheckpointInfo.read(tmp_path).check(get_task("pawsx"), "classification")


def test_predict_on_a_task_file_checkpoint_asks_for_the_task_file(tmp_path):
    import predict

    (tmp_path / CHECKPOINT_INFO).write_text(json.dumps(
        {"task": "mytask", "label_names": ["negative", "positive"], "head": "prompt", "prompt_language": "en",
         "num_placeholder_tokens": 0}), encoding="utf-8")
    with pytest.raises(UserError, match=r"fine-tuned on task 'mytask' of a task file; pass that file with --task "
                                        r"path/to/mytask.json \(TASK= in run_script/\*.sh\)"):
        predict.main(["--model_name_or_path", str(tmp_path), "--input", str(tmp_path / "in.jsonl")])


def test_data_dir_with_a_task_file_checkpoint_is_refused_not_ignored(tmp_path):
    """The task comes from the checkpoint (no --task): a task file's checkpoint with --data_dir is refused too."""
    model = tmp_path / "ft"
    model.mkdir()
    (model / CHECKPOINT_INFO).write_text(json.dumps(
        {"task": "topics", "label_names": ["a", "b"], "head": "prompt", "task_file": "alsace_task_file.json"}),
        encoding="utf-8")
    (model / "alsace_task_file.json").write_text("{}", encoding="utf-8")
    with pytest.raises(UserError, match=r"^--data_dir elsewhere: a task file \(--task .*alsace_task_file.json\) says "
                                        r"where its data are .*drop --data_dir \(DATA_DIR in run_script/\*.sh\)"):
        distill.main(["--model_name_or_path", str(model), "--data_dir", "elsewhere",
                      "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
