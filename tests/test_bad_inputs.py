"""The bad-input matrix: one table of user mistakes across both entry points and the run scripts.

Every row must end with a `UserError` (exit status 2 from the command line) whose message is one
line naming the input and the fix, and must leave no results behind. Most rows call `main([...])`
in-process (fast); `SUBPROCESS_ROWS` run the real command to prove the exit status, the single
`error:` line and the absent traceback; `SCRIPT_ROWS` do the same through run_script/*.sh.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

import distill
import finetune
from alsace.errors import UserError
from alsace.prepare.tiny import build_tiny_model
from conftest import cli

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")
RESULT_FILES = ("results.json", "results.md", "comparison.json", "teacher_selection.json", "run_args.json")


@dataclass
class Ctx:
    """What a row needs: good data, a tiny model, a fresh output dir, and ways to break them."""

    data: Path
    model: Path
    out: Path
    tmp: Path

    def argv(self, entry: str, *extra: str, **override: str) -> list[str]:
        args = {"model_name_or_path": str(self.model), "task": "xnli", "data_dir": str(self.data),
                "languages": "en,fr,de", "output_dir": str(self.out), "max_steps": "1",
                "per_device_train_batch_size": "8", "report_to": "none", "max_seq_length": "64",
                "save_strategy": "no"}
        if entry == "distill":
            args["pool_size"] = "8"
            args["allow_untuned_checkpoint"] = "true"  # the tiny model has no alsace_task.json
        args.update(override)
        return cli(*extra, **args, use_cpu=True)

    def data_with(self, split: str, lang: str, content: bytes | None = None, rows=None) -> Path:
        """A copy of the good data with one file replaced by `content` (or by JSON `rows`)."""
        copy = self.tmp / "bad_data"
        shutil.copytree(self.data, copy)
        if rows is not None:
            content = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
        (copy / "xnli" / split / f"{lang}.jsonl").write_bytes(content)
        return copy

    def rows(self, split: str, lang: str) -> list[dict]:
        lines = (self.data / "xnli" / split / f"{lang}.jsonl").read_text("utf-8").splitlines()
        return [json.loads(line) for line in lines]

    def checkpoint_with_info(self, **info) -> Path:
        """The tiny model plus an alsace_task.json as a fine-tuned checkpoint of this project records it."""
        copy = self.tmp / "checkpoint"
        shutil.copytree(self.model, copy)
        base = {"task": "xnli", "label_names": ["entailment", "neutral", "contradiction"], "head": "prompt",
                "prompt_language": "en", "num_placeholder_tokens": 6}
        (copy / "alsace_task.json").write_text(json.dumps({**base, **info}), "utf-8")
        return copy


def _with_row(rows, i, **change):
    rows[i] = {**rows[i], **change}
    return rows


def _read_only_output(c: Ctx) -> str:
    if os.geteuid() == 0:  # root writes through permission bits; /sys refuses even root
        return "/sys/alsace_output_test"
    parent = c.tmp / "read_only"
    parent.mkdir()
    parent.chmod(0o555)
    return str(parent / "run")


def _deepspeed_row(c: Ctx) -> list[str]:
    return c.argv("finetune", "--deepspeed", str(REPO / "run_script" / "ds_zero2_bf16.json"))


def _unknown_label_words_model(c: Ctx) -> Path:
    # A tokenizer that has never seen a letter maps yes / maybe / no all to <unk> (they would collide).
    return build_tiny_model(c.tmp / "digits_model", ["1 2 3 4 5 6 7 8 9 0 12 34 56"] * 30, vocab_size=30)


def _file_instead_of_dir(c: Ctx) -> str:
    (c.tmp / "a_file").write_text("x")
    return str(c.tmp / "a_file")


def _not_resumable(c: Ctx) -> str:
    c.out.mkdir()
    (c.out / "notes.txt").write_text("somebody else's file")
    return str(c.out)


def _empty_model_dir(c: Ctx) -> str:
    (c.tmp / "empty_model").mkdir()
    return str(c.tmp / "empty_model")


def _missing_pool_language(c: Ctx) -> str:
    path = c.tmp / "pool.jsonl"
    path.write_text(json.dumps({"en": {"premise": "a", "hypothesis": "b"}, "fr": {"premise": "c", "hypothesis": "d"}})
                    + "\n", "utf-8")
    return str(path)


@dataclass(frozen=True)
class Row:
    name: str
    entry: str  # finetune | distill
    argv: Callable[[Ctx], list[str]]
    message: str  # regex the one-line message must match (it names the input)


ROWS = [
    # --- command line -------------------------------------------------------------------------------------------
    Row("unknown task", "finetune", lambda c: c.argv("finetune", task="xnlii"), r"--task 'xnlii'.*choose one of"),
    Row("unknown language", "finetune", lambda c: c.argv("finetune", languages="en,xx"),
        r"--languages: language\(s\) xx not in task xnli"),
    Row("unknown selection language", "finetune", lambda c: c.argv("finetune", selection_language="xx"),
        r"--selection_language.*xx"),
    Row("unknown head", "finetune", lambda c: c.argv("finetune", head="regression"),
        r"--head 'regression': choose prompt or classification"),
    Row("misspelt flag", "finetune", lambda c: c.argv("finetune", "--learning_rat", "1e-3"),
        r"unknown flag\(s\) --learning_rat: check the spelling"),
    Row("non-numeric value", "finetune", lambda c: c.argv("finetune", learning_rate="fast"),
        r"argument --learning_rate.*: invalid float value: 'fast'"),
    Row("missing required flag", "finetune", lambda c: c.argv("finetune", model_name_or_path=None),
        r"required: --model_name_or_path"),
    Row("unknown sampling", "finetune", lambda c: c.argv("finetune", train_sampling="random"),
        r"--train_sampling 'random': choose first or stratified"),
    Row("zero training rows", "finetune", lambda c: c.argv("finetune", max_train_samples="0"),
        r"--max_train_samples must be >= 1"),
    Row("train split as eval split", "finetune", lambda c: c.argv("finetune", eval_split="train"),
        r"--eval_split 'train': choose validation or test"),
    Row("unknown prompt language", "finetune", lambda c: c.argv("finetune", prompt_language="fr"),
        r"--prompt_language 'fr': choose en or native"),
    Row("unknown KL direction", "distill", lambda c: c.argv("distill", kl_direction="sideways"),
        r"--kl_direction 'sideways'"),
    Row("--lang_rank without --num_students", "distill", lambda c: c.argv("distill", lang_rank="en,fr,de"),
        r"--lang_rank needs --num_students"),
    Row("--deepspeed without the package", "finetune", _deepspeed_row,
        r"--deepspeed needs the optional DeepSpeed package: pip install deepspeed"),
    # --- data files ---------------------------------------------------------------------------------------------
    Row("missing data files", "finetune", lambda c: c.argv("finetune", data_dir=str(c.tmp / "nowhere")),
        r"nowhere/xnli/train/en.jsonl: data file not found"),
    Row("file not UTF-8", "finetune",
        lambda c: c.argv("finetune", data_dir=str(c.data_with("train", "en", b'{"premise": "\xff\xfe"}\n'))),
        r"train/en.jsonl: not UTF-8 text; re-export"),
    Row("JSONL syntax error", "finetune",
        lambda c: c.argv("finetune", data_dir=str(c.data_with("train", "en", b'{"premise": "a", \n'))),
        r"train/en.jsonl:1: invalid JSON"),
    Row("empty data file", "finetune", lambda c: c.argv("finetune", data_dir=str(c.data_with("train", "en", b""))),
        r"train/en.jsonl: the file has no rows"),
    Row("label out of range", "finetune",
        lambda c: c.argv("finetune", data_dir=str(c.data_with("train", "en", rows=_with_row(
            c.rows("train", "en"), 4, label=3)))),
        r"train/en.jsonl:5: label 3 is not an integer in 0..2"),
    Row("empty text", "finetune",
        lambda c: c.argv("finetune", data_dir=str(c.data_with("train", "en", rows=_with_row(
            c.rows("train", "en"), 2, premise="  ")))),
        r"train/en.jsonl:3: field 'premise' is missing or empty"),
    Row("empty text in an eval language", "finetune",
        lambda c: c.argv("finetune", data_dir=str(c.data_with("test", "de", rows=_with_row(
            c.rows("test", "de"), 0, hypothesis="")))),
        r"test/de.jsonl:1: field 'hypothesis' is missing or empty"),
    Row("misaligned parallel pool", "distill",
        lambda c: c.argv("distill", data_dir=str(c.data_with("validation", "fr",
                                                             rows=c.rows("validation", "fr")[::-1]))),
        r"validation pool: row 0 has id 'validation-0' in en but 'validation-23' in fr"),
    Row("pool larger than the split", "distill", lambda c: c.argv("distill", pool_size="1000"),
        r"--pool_size 1000 is larger than the xnli en validation split \(24 rows\)"),
    Row("missing pool file", "distill", lambda c: c.argv("distill", pool_file=str(c.tmp / "pool.jsonl")),
        r"--pool_file .*pool.jsonl: file not found"),
    Row("pool file lacks a language", "distill", lambda c: c.argv("distill", pool_file=_missing_pool_language(c)),
        r"pool.jsonl:1: item lacks language 'de'"),
    # --- models and checkpoints ---------------------------------------------------------------------------------
    Row("nonexistent model dir", "finetune", lambda c: c.argv("finetune", model_name_or_path=str(c.tmp / "no_model")),
        r"--model_name_or_path .*no_model: directory not found"),
    Row("model dir without a model", "finetune", lambda c: c.argv("finetune", model_name_or_path=_empty_model_dir(c)),
        r"--model_name_or_path .*empty_model: could not load it"),
    Row("checkpoint never fine-tuned for the task", "distill",
        lambda c: c.argv("distill", allow_untuned_checkpoint=None),
        r"--model_name_or_path .*: no alsace_task.json, so not a checkpoint fine-tuned .* "
        r"or pass --allow_untuned_checkpoint"),
    Row("checkpoint trained with another head", "distill",
        lambda c: c.argv("distill", model_name_or_path=str(c.checkpoint_with_info(head="classification")),
                         head="prompt"),
        r"^--head prompt: .* was trained with --head classification \(its alsace_task.json\); omit --head"),
    Row("checkpoint of another task", "distill",
        lambda c: c.argv("distill", model_name_or_path=str(c.checkpoint_with_info(
            task="pawsx", label_names=["not_paraphrase", "paraphrase"]))),
        r"^--task xnli: .* was fine-tuned for task pawsx \(labels not_paraphrase, paraphrase; its alsace_task.json\); "
        r"omit --task"),
    Row("label words unknown to the tokenizer", "finetune",
        lambda c: c.argv("finetune", model_name_or_path=str(_unknown_label_words_model(c))),
        r"label word 'yes' is unknown to this tokenizer; choose another word"),
    # --- teacher selection --------------------------------------------------------------------------------------
    Row("θ that leaves no teacher", "distill", lambda c: c.argv("distill", teacher_threshold="0.9"),
        r"^--teacher_threshold 0.9: no scores can split 3 languages at it"),  # before the model loads
    Row("--lang_rank with an unknown language", "distill",
        lambda c: c.argv("distill", lang_rank="en,fr,xx", num_students="1"),
        r"--lang_rank must list each language of the run once: unknown xx; missing de"),
    Row("--num_students out of range", "distill", lambda c: c.argv("distill", lang_rank="en,fr,de", num_students="3"),
        r"--num_students 3: must be between 1 and 2"),
    # --- output directory ---------------------------------------------------------------------------------------
    Row("read-only output directory", "finetune", lambda c: c.argv("finetune", output_dir=_read_only_output(c)),
        r"--output_dir .*: cannot write there \(.*\); choose a writable directory"),
    Row("output dir is a file", "finetune", lambda c: c.argv("finetune", output_dir=_file_instead_of_dir(c)),
        r"--output_dir .*a_file: exists and is not a directory"),
    Row("resume from a folder that is no checkpoint", "finetune",
        lambda c: c.argv("finetune", resume_from_checkpoint=str(c.model)),
        r"--resume_from_checkpoint .*: not a complete checkpoint-N folder; omit the flag"),
    Row("no --output_dir (finetune)", "finetune", lambda c: c.argv("finetune", output_dir=None),
        r"--output_dir is required: say where"),
    Row("no --output_dir (distill)", "distill", lambda c: c.argv("distill", output_dir=None),
        r"--output_dir is required: say where"),
    Row("non-empty output dir that is no interrupted run", "distill",
        lambda c: c.argv("distill", output_dir=_not_resumable(c)),
        r"is not empty and holds no run_config.json .*; choose another directory \(OUTPUT_DIR\) or pass "
        r"--overwrite_output_dir"),
]


@pytest.fixture
def ctx(tmp_path, data_dir, tiny_mlm) -> Ctx:
    return Ctx(data=data_dir, model=tiny_mlm, out=tmp_path / "out", tmp=tmp_path)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_bad_input_is_one_clear_line_and_leaves_nothing(row, ctx, tmp_path):
    if row.name.startswith("--deepspeed") and importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here: the missing-package message cannot occur")
    argv = row.argv(ctx)
    before = _files(tmp_path)
    with pytest.raises(UserError) as caught:
        (finetune if row.entry == "finetune" else distill).main(argv)
    message = str(caught.value)
    assert "\n" not in message, message
    assert re.search(row.message, message), message
    assert _files(tmp_path) == before, "a failed run left files behind"


def test_matrix_covers_both_entry_points():
    assert len(ROWS) >= 15
    assert {row.entry for row in ROWS} == {"finetune", "distill"}


# Rows run as real commands: exit status 2, one `error:` line, no traceback, nothing written.
SUBPROCESS_ROWS = [
    ("finetune", "unknown head", lambda c: c.argv("finetune", head="regression"), "--head 'regression'"),
    ("finetune", "non-numeric value", lambda c: c.argv("finetune", learning_rate="fast"),
     "invalid float value: 'fast'"),
    ("distill", "JSONL syntax error",
     lambda c: c.argv("distill", data_dir=str(c.data_with("validation", "de", b'{"premise": \n'))),
     "validation/de.jsonl:1: invalid JSON"),
    ("distill", "no output directory", lambda c: c.argv("distill", output_dir=None), "--output_dir is required"),
]


def _assert_clean_failure(proc: subprocess.CompletedProcess, expected: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
    assert "usage:" not in proc.stderr  # argparse's multi-hundred-flag usage text is not printed


@pytest.mark.parametrize("entry,name,build,expected", SUBPROCESS_ROWS, ids=[r[1] for r in SUBPROCESS_ROWS])
def test_bad_input_command_exits_2_without_traceback(entry, name, build, expected, ctx, tmp_path):
    argv = build(ctx)
    proc = subprocess.run([sys.executable, str(REPO / "src" / f"{entry}.py"), *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _assert_clean_failure(proc, expected)
    assert not [p for p in tmp_path.rglob("*") if p.name in RESULT_FILES]


SCRIPT_ROWS = [
    ("finetuning.sh", "misspelt flag through the script", {}, ["--learning_rat", "1"],
     "unknown flag(s) --learning_rat"),
    ("distillation.sh", "DEEPSPEED_CONFIG without the package",
     {"DEEPSPEED_CONFIG": str(REPO / "run_script" / "ds_zero2_bf16.json")}, [], "--deepspeed needs"),
]


@pytest.mark.parametrize("script,name,env,extra,expected", SCRIPT_ROWS, ids=[r[1] for r in SCRIPT_ROWS])
def test_bad_input_through_run_script(script, name, env, extra, expected, tmp_path):
    path = REPO / "run_script" / script
    if env.get("DEEPSPEED_CONFIG") and importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here: the missing-package message cannot occur")
    (tmp_path / "model").mkdir()  # distillation.sh refuses a MODEL_DIR that does not exist before anything else
    proc = subprocess.run(["bash", str(path), *extra], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NUM_GPUS": "1", "MODEL_DIR": str(tmp_path / "model"),
                               "OUTPUT_DIR": str(tmp_path / "out"), **env})
    _assert_clean_failure(proc, expected)
    assert not (tmp_path / "out").exists()  # nothing written


def _run_entry(entry, argv, cwd, **env):
    return subprocess.run([sys.executable, str(REPO / "src" / f"{entry}.py"), *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", **env})


def test_missing_model_path_fails_at_once_without_hub_retries(ctx, tmp_path):
    """`models/xlm-roberta-large` (relative, missing) is a directory, never a Hub id: no retries."""
    proc = _run_entry("finetune", ctx.argv("finetune", model_name_or_path="models/xlm-roberta-large"), tmp_path)
    _assert_clean_failure(proc, "--model_name_or_path models/xlm-roberta-large: directory not found")
    assert "retr" not in proc.stderr.lower()
    assert not ctx.out.exists()  # the output directory it had created is removed again


def test_unknown_hub_id_offline_names_hf_hub_offline(ctx, tmp_path):
    proc = _run_entry("finetune", ctx.argv("finetune", model_name_or_path="nobody-here/no-such-model"), tmp_path,
                      HF_HUB_OFFLINE="1")
    _assert_clean_failure(proc, "not in the Hugging Face cache, and HF_HUB_OFFLINE=1 is set")
    assert not ctx.out.exists()
