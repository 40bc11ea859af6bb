"""The record a training run leaves: HF-style train results and trainer state, environment, model card."""

import json

import pytest

import finetune
from alsace.report.run_record import environment


@pytest.fixture(scope="module")
def run(tiny_mlm, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("record") / "run"
    finetune.main(["--model_name_or_path", str(tiny_mlm), "--data_dir", str(data_dir), "--output_dir", str(out),
                   "--task", "xnli", "--languages", "en,fr", "--max_seq_length", "128", "--max_steps", "4",
                   "--per_device_train_batch_size", "8", "--max_train_samples", "16", "--learning_rate", "1e-3",
                   "--eval_strategy", "steps", "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "1",
                   "--load_best_model_at_end", "--metric_for_best_model", "accuracy", "--max_selection_samples", "8",
                   "--report_to", "none", "--use_cpu", "--disable_tqdm", "true"])
    return out


def test_train_results_and_trainer_state_at_the_top_of_the_run(run):
    train_results = json.loads((run / "train_results.json").read_text())
    assert {"train_loss", "train_runtime", "epoch"} <= set(train_results)
    assert json.loads((run / "all_results.json").read_text()) == train_results
    state = json.loads((run / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert state["best_model_checkpoint"].endswith(("checkpoint-2", "checkpoint-4"))
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert len(losses) == 4  # the loss curve, one point per logging step


def test_environment_says_whether_the_tree_had_uncommitted_changes():
    env = environment()
    assert env["git_commit"] is None or len(env["git_commit"]) == 40
    assert env["git_dirty"] in (True, False) if env["git_commit"] else env["git_dirty"] is None


def test_environment_records_the_cpu_kernels_torch_chose(run, monkeypatch):
    """environment.json names the CPU kernel set (seeded CPU training differs between AVX2 and AVX512 machines)."""
    import json

    import torch

    saved = json.loads((run / "environment.json").read_text())
    assert saved["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and saved["cpu_capability"]
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert environment()["cpu_capability"] == "AVX2"  # read from torch at the time of the run, not cached


def test_model_card_in_the_checkpoint(run):
    card = (run / "README.md").read_text()
    assert card.startswith("---\nlanguage: [en, fr]\n")
    assert "# xnli: English fine-tuning (src/finetune.py)" in card
    assert "labels: entailment, neutral, contradiction" in card and "head: `prompt`" in card
    table = [row for row in (run / "results.md").read_text().splitlines() if row.startswith("|")]
    assert table and all(row in card for row in table)  # the per-language table, verbatim
    assert "| learning_rate | 0.001 |" in card and "| max_train_samples | 16 |" in card
