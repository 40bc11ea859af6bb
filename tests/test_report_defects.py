"""What a run reports, as a reader sees it: the teacher-selection plot's lines, the model card's settings,
the console during training, the demo's first lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alsace.report import plots
from alsace.report.run_record import model_card

ROOT = Path(__file__).resolve().parents[1]


def drawn_selection(monkeypatch, tmp_path, threshold, languages=("en", "fr", "de", "sw", "ur", "th", "zh")):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or Path(path))
    scores = np.float32(np.linspace(0.9, 0.6, len(languages)))
    s_hat = np.exp(scores) / np.exp(scores).sum()
    selection = {"languages": list(languages), "scores": scores.tolist(), "normalized_scores": s_hat.tolist(),
                 "threshold": threshold, "ranking": list(languages), "teachers": list(languages[:3]),
                 "students": list(languages[3:]), "agreement": {}, "num_items": 16, "method": "scores"}
    plots.plot_teacher_selection(tmp_path / "sel.png", selection)
    ax = figures[0].axes[0]
    levels = [line.get_ydata()[0] for line in ax.get_lines()]  # the horizontal lines
    return levels, [t.get_text() for t in ax.get_legend().get_texts()]


def test_theta_equal_to_one_over_t_in_float32_is_one_line_and_one_legend_entry(monkeypatch, tmp_path):
    theta = float(np.mean(np.float32(np.full(7, 1 / 7, dtype=np.float32))))  # float32 mean(ŝ), as stored
    assert theta != 1 / 7  # what a 1e-9 comparison got wrong
    levels, legend = drawn_selection(monkeypatch, tmp_path, theta)
    assert len(levels) == 1 and legend[-1] == "threshold θ = 0.1429 = 1/7 (uniform)"
    assert not any(entry.startswith("uniform") for entry in legend)


def test_a_theta_away_from_one_over_t_keeps_both_lines(monkeypatch, tmp_path):
    levels, legend = drawn_selection(monkeypatch, tmp_path, 0.15)
    assert sorted(levels) == pytest.approx([1 / 7, 0.15])
    assert legend[-2:] == ["threshold θ = 0.1500", "uniform 1/7 = 0.1429"]


def card_rows(card: str) -> dict[str, str]:
    table = card.split("## How it was trained", 1)[1]
    return {cells[1].strip(): cells[2].strip() for cells in (row.split("|") for row in table.splitlines())
            if len(cells) == 4 and cells[1].strip() not in ("setting", "---")}


def test_model_card_shows_what_the_run_used(tmp_path):
    args = {"model_args": {"model_name_or_path": "outputs/ft", "head": "prompt"},
            "data_args": {"task": "xnli", "max_seq_length": 64},
            "distill_args": {"frozen_teacher": True, "detach_teacher": False, "anchor_weight": 0.5,
                             "teacher_temperature": None, "kl_direction": "teacher_target"},
            "training_args": {"max_steps": 200, "num_train_epochs": 3.0, "lr_scheduler_type": "linear",
                              "learning_rate": 0.0003, "seed": 0}}
    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 200, "epoch": 1.4184}))
    rows = card_rows(model_card(tmp_path, args))
    assert "num_train_epochs" not in rows  # max_steps overrides it: 3.0 epochs never ran
    assert (rows["max_steps"], rows["optimizer steps trained"], rows["epochs over the training data"]) == (
        "200", "200", "1.42")
    assert (rows["frozen_teacher"], rows["anchor_weight"]) == ("True", "0.5")  # the recipe's extensions
    assert "teacher_temperature" not in rows

    args["training_args"]["max_steps"] = -1  # by epochs: the epoch count is the setting, max_steps is not
    rows = card_rows(model_card(tmp_path, args))
    assert rows["num_train_epochs"] == "3.0" and "max_steps" not in rows


class _Bar:
    def __init__(self):
        self.written = []

    def write(self, text):
        self.written.append(text)


def test_the_trainers_eval_dict_is_not_printed_beside_the_language_table():
    from types import SimpleNamespace

    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from alsace.tracking import quiet_evaluation_logs

    progress, printer = ProgressCallback(), PrinterCallback()
    progress.training_bar = _Bar()
    trainer = SimpleNamespace(callback_handler=SimpleNamespace(callbacks=[progress, printer]))
    quiet_evaluation_logs(trainer)
    state = SimpleNamespace(is_world_process_zero=True, is_local_process_zero=True)
    progress.on_log(None, state, None, logs={"eval_loss": 0.5, "eval_accuracy": 0.8, "epoch": 1.0})
    progress.on_log(None, state, None, logs={"eval_en_accuracy": 0.8, "eval_average_accuracy": 0.7})
    progress.on_log(None, state, None, logs={"loss": 0.25, "epoch": 1.0})
    assert progress.training_bar.written == ["{'loss': '0.25', 'epoch': '1'}"]


def test_demo_prepare_starts_without_blank_lines(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "src" / "demo.py"), "prepare", "--data_dir", str(tmp_path / "d"),
                           "--output_dir", str(tmp_path / "o"), "--train_size", "20", "--validation_size", "10",
                           "--test_size", "10", "--corpus_size", "50"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("demo data: "), repr(proc.stdout[:40])
    assert "\n\n" not in proc.stdout
