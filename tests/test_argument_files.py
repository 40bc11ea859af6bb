"""Arguments from a JSON or YAML file (`python src/finetune.py run.yaml`), and run_args.json reloads."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import TrainingArguments

from alsace.arguments import DataArguments, FinetuneArguments, ModelArguments, PromptArguments, parse
from alsace.run_config import flatten_run_args
from alsace.errors import UserError
from alsace.files import write_json

REPO = Path(__file__).resolve().parents[1]
FINETUNE = (ModelArguments, DataArguments, PromptArguments, FinetuneArguments, TrainingArguments)
ARGV = ["--model_name_or_path", "xlm-roberta-base", "--task", "pawsx", "--output_dir", "outputs/x",
        "--learning_rate", "1e-5", "--max_train_samples", "128", "--eval_strategy", "steps", "--use_cpu",
        "--report_to", "none"]
VALUES = {"model_name_or_path": "xlm-roberta-base", "task": "pawsx", "output_dir": "outputs/x",
          "learning_rate": 1e-5, "max_train_samples": 128, "eval_strategy": "steps", "use_cpu": True,
          "report_to": "none"}


def _same(a, b):
    *ours_a, train_a = a
    *ours_b, train_b = b
    assert ours_a == ours_b
    assert train_a.to_dict() == train_b.to_dict()


def test_yaml_and_json_files_parse_like_the_command_line(tmp_path):
    expected = parse(FINETUNE, ARGV)
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in VALUES.items()), encoding="utf-8")
    json_file = tmp_path / "run.json"
    json_file.write_text(json.dumps(VALUES), encoding="utf-8")
    _same(parse(FINETUNE, [str(yaml_file)]), expected)
    _same(parse(FINETUNE, [str(json_file)]), expected)


def test_saved_run_args_reload_to_the_same_arguments(tmp_path):
    model_args, data_args, prompt_args, ft_args, training_args = parse(FINETUNE, ARGV)
    saved = tmp_path / "run_args.json"  # the layout finetune.py writes (write_run_record)
    write_json(saved, {"model_args": model_args, "data_args": data_args, "prompt_args": prompt_args,
                       "finetune_args": ft_args, "training_args": training_args.to_dict(),
                       "resolved": {"num_placeholder_tokens": 0, "languages": ["en"]}})
    _same(parse(FINETUNE, [str(saved)]), (model_args, data_args, prompt_args, ft_args, training_args))


def test_flatten_leaves_a_flat_mapping_alone():
    assert flatten_run_args({"task": "xnli"}) == {"task": "xnli"}
    assert flatten_run_args({"a_args": {"x": 1}, "b_args": {"y": 2}, "resolved": {"z": 3}}) == {"x": 1, "y": 2}


@pytest.mark.parametrize("text, expected", [
    ('{"learning_rat": 1e-5, "output_dir": "o", "model_name_or_path": "m"}', "unknown key(s) ['learning_rat']"),
    ('{"model_name_or_path": "m"}', "output_dir is required"),
    ('{"model_name_or_path": "m", "output_dir": "o", "head": "cls"}', "--head 'cls'"),
    ("[1, 2]", "expected a mapping"),
    ("{not json", "not valid JSON"),
])
def test_bad_files_are_one_line_errors(tmp_path, text, expected):
    path = tmp_path / "run.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as err:
        parse(FINETUNE, [str(path)])
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("task: [xnli\n", encoding="utf-8")
    with pytest.raises(UserError, match="not valid YAML"):
        parse(FINETUNE, [str(path)])
    with pytest.raises(UserError, match="arguments file not found"):
        parse(FINETUNE, [str(tmp_path / "nope.yml")])


def test_entry_point_takes_a_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model_name_or_path: m\noutput_dir: o\nlearning_rat: 1.0e-5\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, str(REPO / "src" / "finetune.py"), str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"error: {path}: unknown key(s) ['learning_rat']: check the " \
                                                   "spelling; --help lists every flag"
    assert not (tmp_path / "o").exists()
