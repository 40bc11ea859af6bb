"""The run scripts as a user meets them outside the repository root: paths read from where they stand,
dry runs that print and touch nothing, `--help` on every entry point, and per-stage settings that do not
leak from one stage of multiseed.sh into the other."""

from __future__ import annotations

import importlib
import os
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = sorted(p.stem for p in (ROOT / "src").glob("*.py") if "__main__" in p.read_text("utf-8"))


def script(name: str, cwd: Path, env: dict, *extra: str, dry_run: bool = True) -> subprocess.CompletedProcess:
    """Run run_script/<name> from `cwd` (not the repository root), as `bash /abs/path/run_script/<name>`."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("MODEL_DIR", "TASK", "DATA_DIR", "OUTPUT_DIR")}
    full_env.update(env)
    if dry_run:
        full_env["DRY_RUN"] = "1"
    return subprocess.run(["bash", str(ROOT / "run_script" / name), *extra], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120)


def flag(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def files_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


@pytest.fixture
def elsewhere(tmp_path):
    """A user's own folder: a model folder, data, a task file, a DeepSpeed config, all relative to it."""
    (tmp_path / "models" / "mine").mkdir(parents=True)
    (tmp_path / "mydata").mkdir()
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "topics.json").write_text('{"name": "topics"}', encoding="utf-8")
    (tmp_path / "ds.json").write_text("{}", encoding="utf-8")
    return tmp_path


def test_finetuning_reads_relative_paths_from_where_the_user_stands(elsewhere):
    before = files_under(elsewhere)
    out = script("finetuning.sh", elsewhere, {"MODEL_DIR": "models/mine", "TASK": "./tasks/topics.json",
                                              "OUTPUT_DIR": "runs/ft", "NUM_GPUS": "2", "DEEPSPEED_CONFIG": "ds.json"})
    assert out.returncode == 0, out.stderr
    words = shlex.split(out.stdout)
    assert flag(words, "--model_name_or_path") == str(elsewhere / "models" / "mine")
    assert flag(words, "--task") == str(elsewhere / "tasks" / "topics.json")
    assert flag(words, "--output_dir") == str(elsewhere / "runs" / "ft")
    assert flag(words, "--deepspeed") == str(elsewhere / "ds.json")
    assert files_under(elsewhere) == before  # a dry run touches nothing

    # A Hub id is not a path and stays as it is; DATA_DIR is a path; the default OUTPUT_DIR stays in the repo.
    words = shlex.split(script("finetuning.sh", elsewhere, {"MODEL_DIR": "intfloat/multilingual-e5-small",
                                                            "DATA_DIR": "mydata"}).stdout)
    assert flag(words, "--model_name_or_path") == "intfloat/multilingual-e5-small"
    assert flag(words, "--data_dir") == str(elsewhere / "mydata")
    assert flag(words, "--output_dir").startswith("outputs/ft_xnli_multilingual-e5-small_")


def test_distillation_and_predict_read_relative_paths_from_where_the_user_stands(elsewhere):
    (elsewhere / "runs" / "ft").mkdir(parents=True)
    out = script("distillation.sh", elsewhere, {"MODEL_DIR": "runs/ft", "DATA_DIR": "mydata",
                                                "OUTPUT_DIR": "runs/distill"})
    assert out.returncode == 0 and out.stderr == "", out.stderr
    words = shlex.split(out.stdout)
    assert (flag(words, "--model_name_or_path"), flag(words, "--data_dir"), flag(words, "--output_dir")) == (
        str(elsewhere / "runs" / "ft"), str(elsewhere / "mydata"), str(elsewhere / "runs" / "distill"))

    words = shlex.split(script("predict.sh", elsewhere, {"MODEL_DIR": "runs/ft", "INPUT": "new.jsonl",
                                                         "OUTPUT": "out/pred.jsonl"}).stdout)
    assert (flag(words, "--model_name_or_path"), flag(words, "--input"), flag(words, "--output")) == (
        str(elsewhere / "runs" / "ft"), str(elsewhere / "new.jsonl"), str(elsewhere / "out" / "pred.jsonl"))
    words = shlex.split(script("predict.sh", elsewhere, {"MODEL_DIR": "runs/ft"}).stdout)
    assert (flag(words, "--input"), flag(words, "--output")) == ("-", "-")  # stdin / stdout stay so

    words = shlex.split(script("benchmark.sh", elsewhere, {"OUTPUT_DIR": "bench"}).stdout)
    assert flag(words, "--output_dir") == str(elsewhere / "bench")


def test_a_mistyped_model_dir_says_the_folder_does_not_exist(elsewhere):
    out = script("distillation.sh", elsewhere, {"MODEL_DIR": "runs/ft_typo"}, dry_run=False)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [out.stderr.strip()]
    assert out.stderr.startswith(f"error: MODEL_DIR=runs/ft_typo: no such folder (paths are read from {elsewhere})")
    assert "alsace_task.json" not in out.stderr
    # A dry run may name a checkpoint still to be written (multiseed.sh's second stage): a note, not an error.
    out = script("distillation.sh", elsewhere, {"MODEL_DIR": "runs/ft_typo"})
    assert out.returncode == 0 and out.stderr.startswith("note: MODEL_DIR=runs/ft_typo does not exist")


def test_demo_and_prepare_data_dry_runs_print_and_touch_nothing(tmp_path):
    out = script("demo.sh", tmp_path, {"OUTPUT_DIR": "demo_out"})
    assert out.returncode == 0, out.stderr
    commands = [shlex.split(line) for line in out.stdout.splitlines() if not line.startswith("==")]
    assert [c[1].rsplit("/", 1)[-1] for c in commands] == ["demo.py", "finetune.py", "distill.py", "demo.py"]
    assert flag(commands[1], "--output_dir") == "demo_out/finetune"
    out = script("prepare_data.sh", tmp_path, {"TASKS": "pawsx", "MODEL": "xlm-roberta-base"})
    assert out.returncode == 0, out.stderr
    words = shlex.split(out.stdout)
    assert words[1].endswith("src/prepare_data.py") and flag(words, "--tasks") == "pawsx"
    assert flag(words, "--model_dir") == "models/xlm-roberta-base" and len(out.stdout.splitlines()) == 1
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_entry_point_help_exits_zero(entry, capsys):
    module = importlib.import_module(entry)
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    assert module.__doc__.splitlines()[0] in capsys.readouterr().out


def test_multiseed_dry_run_prints_both_stages_and_the_aggregation(tmp_path):
    out = script("multiseed.sh", tmp_path, {"SEEDS": "5 7", "OUTPUT_ROOT": "ms", "RECIPE": "recommended",
                                            "FINETUNE_VARS": "LR=1e-5 EPOCHS=3", "DISTILL_VARS": "LR=4e-5"})
    assert out.returncode == 0, out.stderr
    commands = [shlex.split(line) for line in out.stdout.splitlines()]
    entries = [c[1].rsplit("/", 1)[-1] for c in commands]
    assert entries == ["finetune.py", "distill.py", "finetune.py", "distill.py", "aggregate.py"]
    ft, distill = commands[2], commands[3]
    assert flag(ft, "--output_dir") == str(tmp_path / "ms" / "seed-7" / "finetune")
    assert flag(distill, "--model_name_or_path") == flag(ft, "--output_dir")
    assert (flag(ft, "--learning_rate"), flag(ft, "--num_train_epochs")) == ("1e-5", "3")
    assert (flag(distill, "--learning_rate"), flag(distill, "--frozen_teacher")) == ("4e-5", "true")
    assert flag(commands[4], "--output_dir") == str(tmp_path / "ms")
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("env, message", [
    ({"SEEDS": ""}, "error: SEEDS is empty"),
    ({"SEEDS": "  "}, "error: SEEDS is empty"),
    ({"SEEDS": "13 x"}, 'error: SEEDS="13 x": x is not a whole number'),
    ({"LR": "1e-5"}, 'error: LR=1e-5 is set in the environment, and both finetuning.sh and distillation.sh read LR'),
    ({"EPOCHS": "2"}, 'FINETUNE_VARS="EPOCHS=2" and/or DISTILL_VARS="EPOCHS=2"'),
    ({"FINETUNE_VARS": "lr 1e-5"}, 'error: FINETUNE_VARS/DISTILL_VARS: "lr" is not VAR=VALUE'),
    ({"DISTILL_SEEDS": "1 x"}, 'error: DISTILL_SEEDS="1 x": x is not a whole number'),
])
def test_multiseed_refuses_blank_seeds_and_settings_that_would_reach_both_stages(tmp_path, env, message):
    out = script("multiseed.sh", tmp_path, env)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [out.stderr.strip()] and message in out.stderr
    assert files_under(tmp_path) == []


def test_multiseed_documents_the_recommended_recipe():
    text = (ROOT / "run_script" / "multiseed.sh").read_text("utf-8")
    example = next(line for line in text.splitlines() if "bash run_script/multiseed.sh" in line)
    assert "RECIPE=recommended" in example
    readme = (ROOT / "README.md").read_text("utf-8")
    assert all("RECIPE=recommended" in line for line in readme.splitlines() if "run_script/multiseed.sh" in line
               and line.lstrip().startswith(("SEEDS=", "bash")))
