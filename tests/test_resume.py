"""Long-run reliability on CPU: determinism, kill-and-resume, overwrite, NaN and out-of-memory stops.

The reference is one uninterrupted fine-tuning run (dropout on, a decaying learning rate, two epochs),
so a resume that lost the RNG state, the scheduler, the optimizer moments or the data position would
not reproduce it bit for bit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import distill
import finetune
from alsace.errors import RunComplete, UserError
from alsace.run_dir import last_complete_checkpoint, prepare_output_dir
from alsace.trainer import AlsaceTrainer
from conftest import cli

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")
MAX_STEPS, SAVE_STEPS, KILL_AFTER = 12, 3, 5  # killed after step 5: steps 4-5 are lost and redone


def finetune_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return cli(*extra, model_name_or_path=model, task="xnli", data_dir=data, languages="en,fr,de", output_dir=out,
               max_steps=MAX_STEPS, save_steps=SAVE_STEPS, warmup_steps=2, per_device_train_batch_size=8,
               learning_rate="1e-3", report_to="none", max_seq_length=128, use_cpu=True, seed=7)


@pytest.fixture(scope="module")
def reference(one_thread, tmp_path_factory, tiny_mlm, data_dir) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    finetune.main(finetune_args(tiny_mlm, data_dir, out, "--keep_checkpoints"))  # inspected below
    return out


def assert_same_run(a: Path, b: Path) -> None:
    assert (a / "results.json").read_bytes() == (b / "results.json").read_bytes()
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_same_seed_twice_gives_identical_results(reference, tmp_path, tiny_mlm, data_dir):
    again = tmp_path / "again"
    finetune.main(finetune_args(tiny_mlm, data_dir, again))
    assert_same_run(reference, again)


def test_outputs_hold_no_pickles(reference):
    """Weights are safetensors and the arguments JSON; the optimizer/scheduler/RNG states that exact
    resume needs stay inside checkpoint-*/ and the Trainer reads them with weights_only=True."""
    files = [p for p in reference.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".bin", ".pkl", ".pickle")]
    assert not [p for p in files if p.suffix in (".pt", ".pth") and not p.parent.name.startswith("checkpoint-")]
    assert (reference / "training_args.json").is_file()
    assert (reference / f"checkpoint-{MAX_STEPS}" / "training_args.json").is_file()


# Test-only wrapper: the real entry point, parked after step KILL_AFTER so the kill lands at a known point.
PARKED_RUN = f"""
import signal
# A parent that ignores SIGINT (a shell's background job) would make this child ignore it too: Ctrl-C is the test.
signal.signal(signal.SIGINT, signal.default_int_handler)
import os, sys, time
from transformers import TrainerCallback
import alsace.trainer, finetune
from alsace.run_dir import run_cli

class Park(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == {KILL_AFTER}:
            open(os.environ["PARKED_MARKER"], "w").close()
            time.sleep(600)

init = alsace.trainer.AlsaceTrainer.__init__
def with_park(self, *a, **k):
    init(self, *a, **k)
    self.add_callback(Park())
alsace.trainer.AlsaceTrainer.__init__ = with_park
run_cli(finetune.main, sys.argv[1:])
"""


def test_sigkill_then_rerun_resumes_to_the_same_result(reference, tmp_path, tiny_mlm, data_dir):
    out, marker = tmp_path / "killed", tmp_path / "parked"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PARKED_MARKER": str(marker), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", PARKED_RUN, *finetune_args(tiny_mlm, data_dir, out)], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)  # generous: a loaded machine tears torch down slowly
    assert marker.exists(), stderr[-3000:]
    assert proc.returncode == -signal.SIGKILL
    assert last_complete_checkpoint(out) == str(out / f"checkpoint-{SAVE_STEPS}")
    assert not (out / "results.json").exists()

    finetune.main(finetune_args(tiny_mlm, data_dir, out))  # the same command again
    assert_same_run(reference, out)
    assert not list(out.rglob("training_args.bin"))


def test_ctrl_c_is_one_line_exit_130_then_resume_then_complete(reference, tmp_path, tiny_mlm, data_dir):
    out, marker = tmp_path / "interrupted", tmp_path / "parked"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PARKED_MARKER": str(marker), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", PARKED_RUN, *finetune_args(tiny_mlm, data_dir, out)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)  # generous: a loaded machine tears torch down slowly
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if "interrupt" in line.lower()]
    assert lines == [f"interrupted at step {KILL_AFTER}; rerun the same command to resume from checkpoint-{SAVE_STEPS}"]

    finetune.main(finetune_args(tiny_mlm, data_dir, out))  # the same command again resumes
    assert_same_run(reference, out)
    again = subprocess.run([sys.executable, str(REPO / "src" / "finetune.py"), *finetune_args(tiny_mlm, data_dir, out)],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{out} holds a finished run, nothing to do; results in {out}/: results.md" in again.stdout


def test_last_complete_checkpoint_skips_folders_cut_off_while_saving(tmp_path):
    for step, state in ((2, {"global_step": 2}), (4, None), (6, '{"global_st')):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(state if isinstance(state, str) else json.dumps(state))
    (tmp_path / "checkpoint-notes").mkdir()
    (tmp_path / "run_config.json").write_text("{}")  # a run of this version: its configuration is stored
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert prepare_output_dir(str(tmp_path), overwrite=False) == str(tmp_path / "checkpoint-2")


def test_finished_run_is_refused_unless_overwrite(reference, tmp_path, tiny_mlm, data_dir):
    out = tmp_path / "finished"
    shutil.copytree(reference, out)
    stale = out / "checkpoint-999"  # a later-step checkpoint of the old run must not survive the overwrite
    stale.mkdir()
    (stale / "trainer_state.json").write_text(json.dumps({"global_step": 999}))
    with pytest.raises(RunComplete, match="holds a finished run, nothing to do; results in .*results.md.*"
                                          "--overwrite_output_dir"):
        finetune.main(finetune_args(tiny_mlm, data_dir, out))
    finetune.main(finetune_args(tiny_mlm, data_dir, out, "--overwrite_output_dir"))
    assert not stale.exists()
    assert_same_run(reference, out)


def test_non_finite_loss_stops_cleanly_and_keeps_the_last_checkpoint(tmp_path, tiny_mlm, data_dir):
    out = tmp_path / "exploded"
    args = finetune_args(tiny_mlm, data_dir, out, "--learning_rate", "1e30", "--save_steps", "1")
    with pytest.raises(UserError) as caught:
        finetune.main(args)
    message = str(caught.value)
    step = int(re.search(r"non-finite loss \((?:nan|inf|-inf)\) at optimizer step (\d+);", message).group(1))
    assert step >= 2 and "lower --learning_rate" in message and "\n" not in message
    last = out / f"checkpoint-{step - 1}"  # saved every step: the one just before the failing step
    assert f"{last}, is kept" in message
    assert last_complete_checkpoint(out) == str(last)
    assert not (out / "results.json").exists()


def _out_of_memory(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_out_of_memory_in_training_names_the_batch_flags(tmp_path, tiny_mlm, data_dir, monkeypatch):
    monkeypatch.setattr(AlsaceTrainer, "compute_loss", _out_of_memory)
    out = tmp_path / "oom"
    with pytest.raises(UserError) as caught:
        finetune.main(finetune_args(tiny_mlm, data_dir, out, "--gradient_accumulation_steps", "2"))
    message = str(caught.value)
    assert "out of GPU memory during training" in message and "\n" not in message
    assert "--per_device_train_batch_size (now 8)" in message
    assert "--gradient_accumulation_steps (now 2)" in message
    assert not (out / "results.json").exists()


def test_out_of_memory_in_teacher_selection_names_the_eval_batch_flag(tmp_path, tiny_mlm, data_dir, monkeypatch):
    import alsace.evaluation

    monkeypatch.setattr(alsace.evaluation, "class_logits", _out_of_memory)
    with pytest.raises(UserError, match=r"during teacher selection: lower --per_device_eval_batch_size \(now 4\)"):
        distill.main(cli(model_name_or_path=tiny_mlm, data_dir=data_dir, languages="en,fr,de",
                         output_dir=tmp_path / "d", pool_size=8, per_device_eval_batch_size=4, use_cpu=True,
                         report_to="none", allow_untuned_checkpoint=True))


def test_distillation_rerun_reuses_saved_selection_and_baseline(tmp_path, tiny_mlm, data_dir):
    out = tmp_path / "distilled"
    args = cli(model_name_or_path=tiny_mlm, task="xnli", data_dir=data_dir, languages="en,fr,de", output_dir=out,
               max_steps=2, save_steps=1, per_device_train_batch_size=4, learning_rate="1e-4", report_to="none",
               max_seq_length=128, use_cpu=True, pool_size=8, allow_untuned_checkpoint=True)
    distill.main(args)
    # Simulate a crash after training, and mark the saved selection and baseline so reuse is visible.
    (out / "results.json").unlink()
    (out / "stages" / "run.done").unlink()
    saved = json.loads((out / "teacher_selection.json").read_text("utf-8"))
    selection = saved["selection"]
    selection["teachers"], selection["students"] = ["fr"], ["en", "de"]
    selection["ranking"] = ["fr", "en", "de"]
    (out / "teacher_selection.json").write_text(json.dumps(saved), "utf-8")
    baseline = json.loads((out / "baseline" / "results.json").read_text("utf-8"))
    baseline["per_language"]["en"]["accuracy"] = 0.123
    (out / "baseline" / "results.json").write_text(json.dumps(baseline), "utf-8")

    after = distill.main(args)
    comparison = json.loads((out / "comparison.json").read_text("utf-8"))
    assert comparison["per_language"]["en"]["before"] == 0.123
    assert comparison["per_language"]["fr"]["role"] == "teacher"
    assert after["teacher_average"] == after["per_language"]["fr"]["accuracy"]
    assert json.loads((out / "teacher_selection.json").read_text("utf-8"))["pairs"] == [["fr", "en"], ["fr", "de"]]
