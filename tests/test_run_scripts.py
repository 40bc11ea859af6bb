"""Every run_script/*.sh command line parses with the entry point's own argument parser."""

import os
import shlex
import subprocess
from pathlib import Path

import pytest
from transformers import TrainingArguments

from alsace.arguments import DataArguments, DistillArguments, FinetuneArguments, ModelArguments, PromptArguments, parse
from benchmark import BenchmarkArguments

ROOT = Path(__file__).resolve().parents[1]
PARSERS = {
    "src/finetune.py": (ModelArguments, DataArguments, PromptArguments, FinetuneArguments, TrainingArguments),
    "src/distill.py": (ModelArguments, DataArguments, PromptArguments, DistillArguments, TrainingArguments),
    "src/benchmark.py": (BenchmarkArguments,),
}
CASES = [
    ("finetuning.sh", {}),
    ("finetuning.sh", {"PRESET": "xtreme", "DATA_DIR": "data", "HEAD": "classification"}),
    ("finetuning.sh", {"NUM_GPUS": "4", "DEEPSPEED_CONFIG": "run_script/ds_zero2_bf16.json"}),
    ("distillation.sh", {"MODEL_DIR": "outputs/ft"}),
    ("distillation.sh", {"MODEL_DIR": "outputs/ft", "LANG_RANK": "original", "NUM_STUDENTS": "8",
                         "KL_DIRECTION": "student_target", "DETACH_TEACHER": "true", "POOL_SIZE": "100"}),
    ("distillation.sh", {"MODEL_DIR": "outputs/ft", "RECIPE": "recommended", "TEACHER_TEMPERATURE": "0.5"}),
    ("benchmark.sh", {}),
    ("benchmark.sh", {"NUM_LAYERS": "4", "REPEATS": "5", "NUM_GPUS": "4"}),  # always one process
]


def dry_run(script, env, *extra):
    out = subprocess.run(["bash", str(ROOT / "run_script" / script), *extra], env={**os.environ, **env, "DRY_RUN": "1"},
                         capture_output=True, text=True, check=True, timeout=60)
    return shlex.split(out.stdout)


@pytest.mark.parametrize("script, env", CASES)
def test_script_command_line_parses(script, env, tmp_path):
    words = dry_run(script, env)
    entry = next(w for w in words if w.startswith("src/"))
    argv = words[words.index(entry) + 1:]
    if "--deepspeed" in argv:  # DeepSpeed is an optional install: check the flag exists, parse without it
        i = argv.index("--deepspeed")
        argv = argv[:i] + argv[i + 2:]
        assert words[0] == "torchrun"
    parsed = parse(PARSERS[entry], argv)
    training_args = parsed[-1]
    assert training_args.output_dir.startswith("outputs/")


def test_environment_overrides_and_extra_flags_come_last():
    words = dry_run("finetuning.sh", {"LR": "5e-6"}, "--seed", "7")
    assert words[words.index("--learning_rate") + 1] == "5e-6"
    assert words[-2:] == ["--seed", "7"]  # argparse keeps the last value, so "$@" wins
    words = dry_run("distillation.sh", {"MODEL_DIR": "m"})
    assert words[words.index("--learning_rate") + 1] == "3e-8"


def test_distillation_needs_model_dir():
    env = {k: v for k, v in os.environ.items() if k != "MODEL_DIR"}
    out = subprocess.run(["bash", str(ROOT / "run_script" / "distillation.sh")], env={**env, "DRY_RUN": "1"},
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [out.stderr.strip()] and out.stderr.startswith("error: MODEL_DIR is not set")


def test_runs_are_named_after_the_task_not_its_file_path(tmp_path):
    task_file = tmp_path / "some" / "where" / "task.json"
    task_file.parent.mkdir(parents=True)
    task_file.write_text('{"name": "topics"}', encoding="utf-8")
    for script, env in (("finetuning.sh", {}), ("distillation.sh", {"MODEL_DIR": "outputs/ft"})):
        words = dry_run(script, {**env, "TASK": str(task_file)})
        output_dir = words[words.index("--output_dir") + 1]
        assert output_dir.startswith(("outputs/ft_topics_", "outputs/distill_topics_")), output_dir
        assert output_dir.count("/") == 1
    seeds = subprocess.run(["bash", "-c", f'source {ROOT}/run_script/launch.sh; task_name "$1"; task_name xnli',
                            "_", str(task_file)], capture_output=True, text=True, check=True)
    assert seeds.stdout.split() == ["topics", "xnli"]  # multiseed.sh names OUTPUT_ROOT with the same function


def flag(words, name):
    return words[words.index(name) + 1]


def test_recipes_set_the_extension_flags():
    original = dry_run("distillation.sh", {"MODEL_DIR": "m"})
    assert (flag(original, "--frozen_teacher"), flag(original, "--anchor_weight"),
            flag(original, "--min_teacher_confidence")) == ("false", "0", "0")
    assert "--teacher_temperature" not in original and flag(original, "--max_steps") == "-1"
    assert flag(original, "--pool_passes") == "0"  # the paper: epochs decide
    assert flag(original, "--skip_unreadable") == "false"  # the paper trains every language
    recommended = dry_run("distillation.sh", {"MODEL_DIR": "m", "RECIPE": "recommended"})
    assert flag(recommended, "--frozen_teacher") == "true"
    assert flag(recommended, "--skip_unreadable") == "true"
    assert flag(dry_run("distillation.sh", {"MODEL_DIR": "m", "RECIPE": "recommended", "SKIP_UNREADABLE": "false"}),
                "--skip_unreadable") == "false"
    assert (flag(recommended, "--anchor_target"), flag(recommended, "--anchor_weight")) == ("self", "1.0")
    assert flag(original, "--anchor_target") == "labels"
    assert (flag(original, "--anchor_features_weight"), flag(recommended, "--anchor_features_weight")) == ("0", "30")
    assert float(flag(recommended, "--learning_rate")) > 3e-8
    # Steps scale with the languages: POOL_PASSES decides, no fixed MAX_STEPS; the script's default is the one
    # distill.py's exposure warning names.
    from alsace.pairs import RECOMMENDED_PASSES
    assert flag(recommended, "--max_steps") == "-1" and float(flag(recommended, "--pool_passes")) == RECOMMENDED_PASSES
    fixed = dry_run("distillation.sh", {"MODEL_DIR": "m", "RECIPE": "recommended", "MAX_STEPS": "600",
                                        "POOL_PASSES": "2.5"})
    assert (flag(fixed, "--max_steps"), flag(fixed, "--pool_passes")) == ("600", "2.5")
    assert "_recommended_" in flag(recommended, "--output_dir")
    # A variable set by the user wins over the recipe's value.
    assert flag(dry_run("distillation.sh", {"MODEL_DIR": "m", "RECIPE": "recommended", "LR": "1e-6"}),
                "--learning_rate") == "1e-6"


def test_unknown_recipe_is_a_one_line_error():
    out = subprocess.run(["bash", str(ROOT / "run_script" / "distillation.sh")],
                         env={**os.environ, "MODEL_DIR": "m", "RECIPE": "best", "DRY_RUN": "1"},
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("error: RECIPE=best")


def test_train_only_embeddings_turns_the_default_weight_decay_off_and_an_explicit_one_through():
    """TRAIN_ONLY_EMBEDDINGS=true needs --weight_decay 0 (decay would shrink the frozen rows): the script's default
    follows it; a WEIGHT_DECAY the user sets is passed as given (distill.py then refuses it with one line)."""
    for recipe in ("original", "recommended"):
        plain = dry_run("distillation.sh", {"MODEL_DIR": "m", "RECIPE": recipe})
        assert (flag(plain, "--train_only_embeddings"), flag(plain, "--weight_decay")) == ("false", "5e-4")
        only = dry_run("distillation.sh", {"MODEL_DIR": "m", "RECIPE": recipe, "TRAIN_ONLY_EMBEDDINGS": "true"})
        assert (flag(only, "--train_only_embeddings"), flag(only, "--weight_decay")) == ("true", "0")
        given = dry_run("distillation.sh", {"MODEL_DIR": "m", "RECIPE": recipe, "TRAIN_ONLY_EMBEDDINGS": "true",
                                            "WEIGHT_DECAY": "0.01"})
        assert flag(given, "--weight_decay") == "0.01"
