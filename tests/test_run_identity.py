"""A run is its configuration: stored before any work, compared on every rerun, recoverable after any kill.

The reference is one uninterrupted tiny distillation run. Real runs of distill.py are killed (SIGKILL) in
each stage — teacher selection, baseline evaluation, training before the first checkpoint, training after
one, while a checkpoint is written — and stopped with SIGTERM; the same command then has to end with the
reference's weights, predictions and results, bit for bit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import distill
import finetune
from alsace.errors import RunComplete, UserError
from alsace.run_dir import run_cli
from conftest import cli

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def distill_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return cli(*extra, model_name_or_path=model, task="xnli", data_dir=data, languages="en,fr,de", output_dir=out,
               max_steps=6, save_steps=2, per_device_train_batch_size=4, learning_rate="1e-3", report_to="none",
               max_seq_length=64, use_cpu=True, seed=7, pool_size=8, allow_untuned_checkpoint=True)


@pytest.fixture(scope="module")
def reference(one_thread, tmp_path_factory, tiny_mlm, data_dir) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    distill.main(distill_args(tiny_mlm, data_dir, out))
    return out


def tree(path: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under `path`, by relative name."""
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None) for p in sorted(path.rglob("*"))}


def assert_same_results(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    for name in ("teacher_selection.json", "comparison.json"):
        assert json.loads((a / name).read_text()) == json.loads((b / name).read_text()), name
    for stage in (a, a / "baseline"):
        rel = stage.relative_to(a)
        ra, rb = json.loads((stage / "results.json").read_text()), json.loads((b / rel / "results.json").read_text())
        assert {k: v for k, v in ra.items() if k != "model"} == {k: v for k, v in rb.items() if k != "model"}
        logits = sorted((stage / "predictions").glob("*_logits.npy"))
        assert len(logits) == 3
        for path in logits:
            assert np.array_equal(np.load(path), np.load(b / rel / "predictions" / path.name))


# Test-only wrapper: the real entry point, parked at one point of one stage so that the kill lands there.
PARKED_RUN = """
import signal
# A parent that ignores SIGINT (a shell's background job) would make this child ignore it too: Ctrl-C is the test.
signal.signal(signal.SIGINT, signal.default_int_handler)
import os, sys, time
from transformers import TrainerCallback
import alsace.trainer, distill
from alsace.run_dir import run_cli

where = os.environ["PARK_AT"]

def park():
    open(os.environ["PARKED_MARKER"], "w").close()
    time.sleep(600)

def parked_before(function):
    def wrapper(*args, **kwargs):
        park()
        return function(*args, **kwargs)
    return wrapper

if where == "selection":
    distill.score_languages = parked_before(distill.score_languages)
elif where == "baseline":
    distill.evaluate = parked_before(distill.evaluate)
elif where.startswith("step"):
    class Park(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == int(where[4:]):
                park()
    init = alsace.trainer.AlsaceTrainer.__init__
    def with_park(self, *a, **k):
        init(self, *a, **k)
        self.add_callback(Park())
    alsace.trainer.AlsaceTrainer.__init__ = with_park
elif where == "saving":  # checkpoint-4's weights are written, its trainer_state.json (written last) is not
    save = alsace.trainer.AlsaceTrainer._save
    def parked_save(self, output_dir=None, state_dict=None):
        save(self, output_dir, state_dict)
        if str(output_dir).endswith("checkpoint-4"):
            park()
    alsace.trainer.AlsaceTrainer._save = parked_save
run_cli(distill.main, sys.argv[1:])
"""


def stop_at(where: str, sig: int, argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    marker = tmp_path / f"parked-{where}"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PARKED_MARKER": str(marker), "PARK_AT": where,
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", PARKED_RUN, *argv], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=300)
    assert marker.exists(), stderr[-3000:]
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)


@pytest.mark.parametrize("where", ["selection", "baseline", "step1", "step3", "saving"])
def test_sigkill_in_any_stage_then_the_same_command_gives_the_uninterrupted_result(where, reference, tmp_path,
                                                                                   tiny_mlm, data_dir):
    out = tmp_path / "killed"
    argv = distill_args(tiny_mlm, data_dir, out)
    stopped = stop_at(where, signal.SIGKILL, argv, tmp_path)
    assert stopped.returncode == -signal.SIGKILL
    assert (out / "run_config.json").is_file()  # stored before any work
    done = sorted(p.name for p in (out / "stages").glob("*.done")) if (out / "stages").is_dir() else []
    assert done == {"selection": [], "baseline": ["teacher_selection.done"]}.get(
        where, ["baseline.done", "teacher_selection.done"])
    if where == "saving":
        assert (out / "checkpoint-4" / "model.safetensors").is_file()
        assert not (out / "checkpoint-4" / "trainer_state.json").exists()

    distill.main(argv)  # the same command again
    assert_same_results(reference, out)
    assert not list(out.glob("checkpoint-*"))  # a finished run keeps no intermediate checkpoint
    with pytest.raises(RunComplete, match="holds a finished run, nothing to do"):
        distill.main(argv)


@pytest.mark.parametrize("where, sig, status, line", [
    ("baseline", signal.SIGTERM, 143, "terminated (SIGTERM); rerun the same command to continue ({out} is kept with "
                                      "its completed teacher_selection, which the rerun reuses)"),
    ("step3", signal.SIGTERM, 143, "terminated (SIGTERM) at step 3; rerun the same command to resume from "
                                   "checkpoint-2"),
    ("step1", signal.SIGINT, 130, "interrupted at step 1; no checkpoint had been saved yet: rerun the same command "
                                  "to train again from step 0 ({out} is kept with its completed baseline, "
                                  "teacher_selection, which the rerun reuses)"),
])
def test_sigterm_and_sigint_end_with_one_line_and_their_own_status_then_resume(where, sig, status, line, reference,
                                                                               tmp_path, tiny_mlm, data_dir):
    out = tmp_path / "stopped"
    argv = distill_args(tiny_mlm, data_dir, out)
    stopped = stop_at(where, sig, argv, tmp_path)
    assert stopped.returncode == status, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1] == line.format(out=out)
    distill.main(argv)
    assert_same_results(reference, out)


def test_a_rerun_with_other_settings_is_refused_before_any_work_one_line_each(reference, tmp_path, tiny_mlm,
                                                                              data_dir, monkeypatch):
    out = tmp_path / "interrupted"
    distill.main(distill_args(tiny_mlm, data_dir, out, "--max_steps", "2"))
    (out / "stages" / "run.done").unlink()  # as if killed after its last checkpoint
    before = tree(out)
    monkeypatch.setattr(distill, "load_tokenizer_and_model", lambda *a, **k: pytest.fail("loaded the model"))
    changed = distill_args(tiny_mlm, data_dir, out, "--max_steps", "2", "--learning_rate", "2e-3", "--frozen_teacher",
                           "--teacher_threshold", "0.34", "--pool_size", "6")
    with pytest.raises(UserError) as caught:
        distill.main(changed)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"--output_dir {out} holds a run of another configuration (4 settings differ, stored → now):"
    assert lines[1:5] == ["  --frozen_teacher: false → true", "  --learning_rate: 0.001 → 0.002",
                          "  --pool_size: 8 → 6", '  --teacher_threshold: "mean" → "0.34"']
    assert "another directory" in lines[5] and "--overwrite_output_dir" in lines[5]
    assert tree(out) == before


def test_settings_that_cannot_change_results_do_not_make_another_run(reference, tmp_path, tiny_mlm, data_dir):
    out = tmp_path / "same"
    argv = distill_args(tiny_mlm, data_dir, out, "--max_steps", "2")
    distill.main(argv)
    with pytest.raises(RunComplete):
        distill.main([*argv, "--report_to", "none", "--logging_steps", "7", "--per_device_eval_batch_size", "3",
                      "--dataloader_num_workers", "0", "--keep_checkpoints"])
    with pytest.raises(UserError, match="--seed: 7 → 8"):
        distill.main([*argv, "--seed", "8"])
    (out / "stages" / "run.done").unlink()  # as if killed at the very end
    distill.main([*argv, "--logging_steps", "7"])  # the same configuration: it continues
    stored = json.loads((out / "run_config.json").read_text())
    assert json.loads((out / "run_args.json").read_text()) == stored  # the record is what was stored first
    assert stored["training_args"]["logging_steps"] != 7


def test_what_ran_is_what_was_stored_at_the_start(reference):
    stored = json.loads((reference / "run_config.json").read_text())
    assert json.loads((reference / "run_args.json").read_text()) == stored
    assert stored["distill_args"]["pool_size"] == 8 and stored["training_args"]["learning_rate"] == 1e-3
    assert stored["resolved"]["languages"] == ["en", "fr", "de"] and stored["resolved"]["world_size"] == 1
    assert "overwrite_output_dir" not in stored["distill_args"]  # a replay must never overwrite this run


def test_finetune_rerun_with_another_learning_rate_is_refused(tmp_path, tiny_mlm, data_dir):
    out = tmp_path / "ft"
    argv = cli(model_name_or_path=tiny_mlm, task="xnli", data_dir=data_dir, languages="en,fr", output_dir=out,
               max_steps=1, per_device_train_batch_size=4, max_seq_length=64, use_cpu=True, report_to="none",
               save_strategy="no")
    finetune.main(argv)
    before = tree(out)
    with pytest.raises(UserError, match=r"(?s)1 setting differ.*--learning_rate: 5e-05 → 0.0001"):
        finetune.main([*argv, "--learning_rate", "1e-4"])
    assert tree(out) == before
    finetune.main([*argv, "--learning_rate", "1e-4", "--overwrite_output_dir"])
    assert json.loads((out / "run_args.json").read_text())["training_args"]["learning_rate"] == 1e-4


# Failures that are not the project's own errors leave the output location as it was.
class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("entry", ["distill", "finetune"])
def test_any_failure_removes_what_this_invocation_created_parents_included(entry, tmp_path, tiny_mlm, data_dir,
                                                                            monkeypatch):
    root = tmp_path / "root"
    (root / "other_run").mkdir(parents=True)
    (root / "other_run" / "results.json").write_text("{}")
    before = tree(root)

    def boom(*args, **kwargs):
        raise Boom("not one of ours")

    argv = distill_args(tiny_mlm, data_dir, root / "new" / "deeper" / "run")
    if entry == "distill":
        monkeypatch.setattr(distill, "PairDataset", boom)  # after selection and baseline were written
    else:
        monkeypatch.setattr(finetune, "training_features", boom)  # after the folder and its config were written
        argv = argv[:argv.index("--pool_size")]
    with pytest.raises(Boom):
        run_cli({"distill": distill, "finetune": finetune}[entry].main, argv)
    assert tree(root) == before


def test_a_failure_while_continuing_a_run_leaves_the_previous_files_as_they_were(tmp_path, tiny_mlm, data_dir,
                                                                                 monkeypatch):
    out = tmp_path / "run"
    argv = distill_args(tiny_mlm, data_dir, out)
    stop_at("baseline", signal.SIGKILL, argv, tmp_path)  # selection complete, baseline not
    before = tree(out)
    monkeypatch.setattr(distill, "PairDataset", lambda *a, **k: (_ for _ in ()).throw(Boom("late")))
    with pytest.raises(Boom):
        run_cli(distill.main, argv)
    assert tree(out) == before  # the baseline this attempt wrote and its marker are gone again


@pytest.mark.parametrize("entry, extra, message", [
    ("distill", ["--learning_rate=-0.001"], "--learning_rate -0.001: must be > 0"),
    ("distill", ["--learning_rate", "-1e-3"], "--learning_rate -0.001: must be > 0"),  # not "expected one argument"
    ("distill", ["--per_device_train_batch_size", "0"], "--per_device_train_batch_size 0: must be >= 1"),
    ("finetune", ["--per_device_eval_batch_size", "0"], "--per_device_eval_batch_size 0: must be >= 1"),
    ("finetune", ["--num_train_epochs", "0", "--max_steps", "-1"], "--num_train_epochs 0.0: no training at all"),
    ("distill", ["--languages", "en"], "--languages en: self-distillation needs at least two languages"),
    ("distill", ["--teacher_threshold", "0.6"], "--teacher_threshold 0.6: no scores can split 3 languages"),
    ("distill", ["--languages", "fr,de", "--anchor_weight", "0.5", "--anchor_target", "self"],
     "--anchor_target self anchors the source language en on its pool items: add it to --languages"),
    ("distill", ["--teacher_threshold", "0.15"], "--teacher_threshold 0.15: no scores can split 3 languages"),
])
def test_invalid_numbers_are_refused_before_the_model_loads_and_leave_nothing(entry, extra, message, tmp_path,
                                                                              tiny_mlm, data_dir, monkeypatch):
    module = {"distill": distill, "finetune": finetune}[entry]
    monkeypatch.setattr(module, "load_tokenizer_and_model", lambda *a, **k: pytest.fail("loaded the model"))
    argv = distill_args(tiny_mlm, data_dir, tmp_path / "new" / "run")
    if entry == "finetune":
        argv = argv[:argv.index("--pool_size")]
    before = tree(tmp_path)
    with pytest.raises(SystemExit) as caught:
        run_cli(module.main, [*argv, *extra])
    assert caught.value.code == 2
    assert tree(tmp_path) == before
    with pytest.raises(UserError, match=f"^{message.replace('(', '.').replace(')', '.')}"):
        module.main([*argv, *extra])


@pytest.mark.parametrize("script, variables, line", [
    ("distillation.sh", {"LR": "-1e-3"},
     "error: --learning_rate -0.001: must be > 0 (set by LR= in run_script/distillation.sh)"),
    ("finetuning.sh", {"BS": "0"},
     "error: --per_device_train_batch_size 0: must be >= 1 (set by BS= in run_script/finetuning.sh)"),
])
def test_a_bad_number_through_a_script_names_the_shell_variable(script, variables, line, tmp_path, tiny_mlm,
                                                                 data_dir):
    out = tmp_path / "parent" / "run"
    env = {**os.environ, "MODEL_DIR": str(tiny_mlm), "DATA_DIR": str(data_dir), "OUTPUT_DIR": str(out),
           "BF16": "false", **variables}
    extra = ["--languages", "en,fr,de", "--use_cpu"]
    if script == "distillation.sh":
        extra.append("--allow_untuned_checkpoint")
    proc = subprocess.run(["bash", str(REPO / "run_script" / script), *extra], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [line]
    assert not (tmp_path / "parent").exists()


def test_replaying_a_saved_record_reruns_it_into_a_new_directory_and_never_overwrites_it(tmp_path, tiny_mlm,
                                                                                          data_dir):
    out = tmp_path / "ft"
    argv = cli(model_name_or_path=tiny_mlm, task="xnli", data_dir=data_dir, languages="en,fr", output_dir=out,
               max_steps=2, per_device_train_batch_size=4, max_seq_length=64, use_cpu=True, report_to="none",
               save_strategy="no", overwrite_output_dir=True)
    finetune.main(argv)
    record = json.loads((out / "run_args.json").read_text())
    assert "overwrite_output_dir" not in record["finetune_args"]
    old_style = tmp_path / "old_run_args.json"  # what earlier versions saved: the overwrite flag included
    record["finetune_args"]["overwrite_output_dir"] = True
    old_style.write_text(json.dumps(record))
    before = tree(out)
    run_cli(finetune.main, [str(old_style)])  # no SystemExit: a finished run returns
    assert tree(out) == before
    replay = tmp_path / "ft-replay"
    assert json.loads((replay / "results.json").read_text())["per_language"] == \
        json.loads((out / "results.json").read_text())["per_language"]
    elsewhere = tmp_path / "elsewhere"
    finetune.main([str(out / "run_args.json"), "--output_dir", str(elsewhere)])
    assert (elsewhere / "results.json").is_file() and tree(out) == before


def default_output_dir(script: str, env: dict) -> str:
    proc = subprocess.run(["bash", str(REPO / "run_script" / script)], capture_output=True, text=True, timeout=120,
                          env={**{k: v for k, v in os.environ.items() if k not in ("OUTPUT_DIR", "OUTPUT_ROOT")},
                               "DRY_RUN": "1", "BF16": "false", **env}, check=True)
    words = proc.stdout.split()
    if script == "multiseed.sh":
        return words[words.index("--run_dirs") + 1].split("/seed-")[0]
    return words[words.index("--output_dir") + 1]


SCRIPT_VARIABLES = {  # each result-changing variable with a value other than its default
    "finetuning.sh": {"MODEL_DIR": "models/other", "TASK": "pawsx", "DATA_DIR": "data2", "HEAD": "classification",
                      "PRESET": "xtreme", "SEED": "1", "NUM_GPUS": "2", "LOSS": "label_words",
                      "SELECTION_LANGUAGE": "fr", "LR": "2e-6", "BS": "16", "EPOCHS": "3", "TRAIN_SAMPLES": "64",
                      "MAX_SEQ_LENGTH": "128", "EVAL_STEPS": "25", "WARMUP": "0.1", "WEIGHT_DECAY": "0.01",
                      "MAX_STEPS": "10", "DEEPSPEED_CONFIG": "run_script/ds_zero2_bf16.json"},
    "distillation.sh": {"MODEL_DIR": "outputs/ft2", "TASK": "pawsx", "DATA_DIR": "data2", "HEAD": "classification",
                        "SEED": "1", "NUM_GPUS": "2", "RECIPE": "recommended", "LR": "1e-7", "EPOCHS": "2",
                        "MAX_STEPS": "50", "FROZEN_TEACHER": "true", "ANCHOR_WEIGHT": "0.5",
                        "MIN_TEACHER_CONFIDENCE": "0.5", "TEACHER_TEMPERATURE": "0.5", "BS": "20", "WARMUP": "0.1",
                        "SCHEDULER": "linear", "WEIGHT_DECAY": "0.01", "MAX_SEQ_LENGTH": "128", "BF16": "true",
                        "POOL_SIZE": "100", "TEACHER_THRESHOLD": "paper", "LANG_RANK": "original",
                        "KL_DIRECTION": "symmetric", "DETACH_TEACHER": "true", "TEMPERATURE": "2.0",
                        "SAVE_STEPS": "50", "DEEPSPEED_CONFIG": "run_script/ds_zero2_bf16.json",
                        "SELECTION_METHOD": "source_agreement", "SOURCE_GUARD": "true",
                        "TEACHER_TARGETS": "dawid_skene", "ANCHOR_TARGET": "self"},
    "multiseed.sh": {"TASK": "pawsx", "HEAD": "classification", "FINETUNE_VARS": "LOSS=label_words",
                     "DISTILL_VARS": "RECIPE=recommended", "DISTILL": "0", "MAX_SEQ_LENGTH": "128"},
}
NEUTRAL_VARIABLES = {"REPORT_TO": "tensorboard", "EVAL_BS": "8"}


@pytest.mark.parametrize("script", sorted(SCRIPT_VARIABLES))
def test_default_run_folders_change_with_every_result_changing_variable(script):
    base = {"MODEL_DIR": "outputs/ft", "SEEDS": "1", "NUM_STUDENTS": "8"}
    default = default_output_dir(script, base)
    names = {name: default_output_dir(script, {**base, name: value})
             for name, value in SCRIPT_VARIABLES[script].items()}
    same = [name for name, folder in names.items() if folder == default]
    assert not same, f"{script}: the default folder ignores {same}"
    assert len(set(names.values())) == len(names)  # and no two variables give the same folder
    for name, value in NEUTRAL_VARIABLES.items():
        assert default_output_dir(script, {**base, name: value}) == default, name


def test_the_checkpoint_knows_its_task_predict_and_distill_take_it_from_there(tmp_path, tmp_path_factory):
    from taskdata import tiny_model, write_task_file

    import predict

    task_file = write_task_file(tmp_path / "task", {"train": 24, "validation": 12, "test": 12})
    model = tiny_model("xlm-roberta", tmp_path_factory)
    ft = tmp_path / "ft"
    finetune.main(["--model_name_or_path", str(model), "--task", str(task_file), "--output_dir", str(ft),
                   "--max_steps", "2", "--per_device_train_batch_size", "4", "--max_seq_length", "48",
                   "--use_cpu", "--report_to", "none", "--save_strategy", "no"])
    info = json.loads((ft / "alsace_task.json").read_text())
    assert info["task"] == "topics" and info["task_file"] == "alsace_task_file.json" and info["max_seq_length"] == 48
    moved = task_file.rename(task_file.with_name("moved.json"))  # the checkpoint does not need the original

    test_file = tmp_path / "task" / "topics_data" / "test" / "fr.jsonl"
    rows = [json.loads(line) for line in test_file.read_text().splitlines()]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": r["text"], "lang": "fr"}) + "\n" for r in rows))
    predicted = predict.main(["--model_name_or_path", str(ft), "--input", str(source), "--output",
                              str(tmp_path / "pred.jsonl"), "--use_cpu"])
    logits = np.load(ft / "predictions" / "fr_test_logits.npy")  # what evaluation scored for the same rows
    assert [p["predicted_label_id"] for p in predicted] == logits.argmax(1).tolist()
    with pytest.raises(UserError, match="^--task xnli: .* was fine-tuned for task topics"):
        predict.main(["--model_name_or_path", str(ft), "--input", str(source), "--task", "xnli"])

    out = tmp_path / "distill"
    argv = ["--model_name_or_path", str(ft), "--output_dir", str(out), "--max_steps", "1", "--use_cpu",
            "--per_device_train_batch_size", "4", "--report_to", "none", "--save_strategy", "no"]
    distill.main(argv)  # no --task, no --head: the checkpoint's
    stored = json.loads((out / "run_config.json").read_text())
    assert stored["data_args"]["task"] == str(ft / "alsace_task_file.json") and stored["model_args"]["head"] == "prompt"
    assert json.loads((out / "alsace_task.json").read_text())["task_file"] == "alsace_task_file.json"
    with pytest.raises(RunComplete):  # restated and equal: the same run
        distill.main([*argv, "--task", str(moved), "--head", "prompt"])
    with pytest.raises(UserError, match="^--task xnli: .* was fine-tuned for task topics"):
        distill.main([*argv, "--task", "xnli"])
    with pytest.raises(UserError, match="^--head classification: .* was trained with --head prompt"):
        distill.main([*argv, "--head", "classification"])

    proc = subprocess.run(["bash", str(REPO / "run_script" / "distillation.sh"), "--use_cpu"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "MODEL_DIR": str(ft), "TASK": "xnli",
                                                       "BF16": "false", "OUTPUT_DIR": str(tmp_path / "x")})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith("(set by TASK= in run_script/distillation.sh)")


def test_frozen_teacher_with_detach_teacher_is_explained(tmp_path, tiny_mlm, data_dir, caplog):
    """Accepted (the demo's documented `DISTILL_EXTRA=--frozen_teacher` runs with its detached teacher) and
    explained in one line: detaching a frozen teacher changes nothing."""
    argv = distill_args(tiny_mlm, data_dir, tmp_path / "run", "--frozen_teacher", "--detach_teacher",
                        "--languages", "en")
    with pytest.raises(UserError, match="^--languages en"):  # stops before any work, after the notice
        distill.main(argv)
    notices = [r.getMessage() for r in caplog.records if "--detach_teacher has no effect" in r.getMessage()]
    assert notices == ["--detach_teacher has no effect with --frozen_teacher: the frozen teacher's targets are "
                       "computed once, before training, so no gradient flows through the teacher side anyway"]


def test_resuming_names_only_really_missing_weights_not_the_tied_head(tmp_path, tiny_mlm, monkeypatch):
    """XLM-R's lm_head.decoder.* are tied to the embeddings and lm_head.bias, so a checkpoint stores them
    once: resuming must not warn that they are missing; a truly missing weight is still named."""
    import transformers.trainer
    from torch.nn.modules.module import _IncompatibleKeys
    from transformers import AutoModelForMaskedLM, TrainingArguments

    from alsace.trainer import AlsaceTrainer

    trainer = AlsaceTrainer(model=AutoModelForMaskedLM.from_pretrained(tiny_mlm), finetune_loss="label_words",
                            args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"))
    warned = []
    monkeypatch.setattr(transformers.trainer.logger, "warning", warned.append)
    real = "roberta.encoder.layer.0.output.dense.weight"
    trainer._issue_warnings_after_load(_IncompatibleKeys(["lm_head.decoder.weight", "lm_head.decoder.bias"], []))
    assert warned == []
    trainer._issue_warnings_after_load(_IncompatibleKeys(["lm_head.decoder.weight", real], []))
    assert len(warned) == 1 and real in warned[0] and "lm_head.decoder" not in warned[0]


def test_sigterm_to_a_run_script_reaches_the_entry_point(tmp_path, tiny_mlm, data_dir):
    """`kill` / `timeout` / a scheduler signal the script's process: the entry point itself must get SIGTERM
    (launch.sh execs it), end with its one line and 143, and leave a run the same command continues."""
    out = tmp_path / "run"
    env = {**os.environ, "MODEL_DIR": str(tiny_mlm), "DATA_DIR": str(data_dir), "OUTPUT_DIR": str(out),
           "BF16": "false", "MAX_STEPS": "2000", "SAVE_STEPS": "2", "BS": "4", "POOL_SIZE": "8", "LR": "1e-4",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(["bash", str(REPO / "run_script" / "distillation.sh"), "--languages", "en,fr,de",
                             "--allow_untuned_checkpoint", "--use_cpu", "--max_seq_length", "64"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint-2" / "trainer_state.json").exists() and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("terminated (SIGTERM) at step ") and "rerun the same command to resume from checkpoint-" in last
    assert (out / "run_config.json").is_file() and not (out / "results.json").exists()
