"""Data parallelism on CPU: two processes (torchrun, gloo) must train and evaluate like one.

With dropout off, 2 ranks x 4 rows per step see the same 8 rows per step as 1 process x 8 rows
(accelerate deals batch i of the shared shuffled order to rank i % 2), so the fine-tuned weights must
agree up to float rounding; they would not if gradients were not averaged across ranks. Evaluation
must count every row exactly once and give bit-identical logits to a single-process evaluation of
the same checkpoint, and distillation must select the same teachers as one process would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import finetune
from alsace.data import load_pool
from alsace.evaluation import evaluate_languages, score_languages
from alsace.features import Collator, Featurizer, split_features
from alsace.modeling import load_tokenizer_and_model
from alsace.selection import select_teachers
from alsace.tasks import get_task
from conftest import encode_rows

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")
LANGS = ["en", "fr", "de"]


def torchrun(script: str, argv: list[str]) -> str:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "src" / script), *argv]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


@pytest.fixture(scope="module")
def no_dropout_mlm(tiny_mlm, tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("tiny_no_dropout") / "model"
    shutil.copytree(tiny_mlm, copy)
    config = json.loads((copy / "config.json").read_text("utf-8"))
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (copy / "config.json").write_text(json.dumps(config), "utf-8")
    return copy


def _rows(data_dir: Path, split: str, lang: str) -> int:
    return len((data_dir / "xnli" / split / f"{lang}.jsonl").read_text("utf-8").splitlines())


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def test_two_processes_train_evaluate_and_select_like_one(tmp_path, data_dir, no_dropout_mlm):
    common = ["--model_name_or_path", str(no_dropout_mlm), "--task", "xnli", "--data_dir", str(data_dir),
              "--languages", ",".join(LANGS), "--max_steps", "4", "--learning_rate", "1e-3", "--report_to", "none",
              "--max_seq_length", "128", "--use_cpu", "--save_strategy", "no", "--seed", "3"]
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    finetune.main(common + ["--output_dir", str(single), "--per_device_train_batch_size", "8"])
    torchrun("finetune.py", common + ["--output_dir", str(ddp), "--per_device_train_batch_size", "4"])

    # Gradients averaged across ranks: the same weights as one process on the same 8 rows per step.
    start = load_file(no_dropout_mlm / "model.safetensors")
    one, two = load_file(single / "model.safetensors"), load_file(ddp / "model.safetensors")
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-5
    moved = max((one[k] - start[k]).abs().max().item() for k in start if one[k].shape == start[k].shape)
    assert moved > 1e-4  # training really changed the weights, so the agreement above means something
    assert not (ddp / "training_args.bin").exists() and (ddp / "training_args.json").is_file()

    # Every test row counted exactly once per language, in its original order.
    results = json.loads((ddp / "results.json").read_text("utf-8"))
    for lang in LANGS:
        n = _rows(data_dir, "test", lang)
        assert results["per_language"][lang]["n"] == n
        assert np.load(ddp / "predictions" / f"{lang}_test_logits.npy", allow_pickle=False).shape == (n, 3)
        labels = np.load(ddp / "predictions" / f"{lang}_test_labels.npy", allow_pickle=False)
        gold = [json.loads(line)["label"] for line in (data_dir / "xnli" / "test" / f"{lang}.jsonl").open()]
        assert labels.tolist() == gold

    # One process evaluating the same checkpoint: identical logits, hence identical metrics.
    task = get_task("xnli")
    tokenizer, model = load_tokenizer_and_model(str(ddp), "prompt", task, 6)
    featurizer = Featurizer(tokenizer, task, "prompt", 128, 6)
    collator = Collator(tokenizer.pad_token_id)
    # (One thread here, as torchrun gives each rank: the same summation order, so bit-identical logits.)
    evaluation = evaluate_languages(model, split_features(task, featurizer, str(data_dir), "test", LANGS),
                                    collator, 8, "cpu")
    pool = load_pool(task, LANGS, str(data_dir), 16)
    pool_logits = score_languages(model, {lang: encode_rows(featurizer, rows, lang) for lang, rows in pool.items()},
                                  collator, 8, "cpu")
    for lang in LANGS:
        saved = np.load(ddp / "predictions" / f"{lang}_test_logits.npy", allow_pickle=False)
        assert np.array_equal(saved, evaluation[lang]["logits"])
        assert results["per_language"][lang]["accuracy"] == evaluation[lang]["accuracy"]

    # Distillation on 2 ranks: completes, reuses exactly-once evaluation, selects as one process does.
    distilled = tmp_path / "distilled"
    torchrun("distill.py", ["--model_name_or_path", str(ddp), "--task", "xnli", "--data_dir", str(data_dir),
                            "--languages", ",".join(LANGS), "--output_dir", str(distilled), "--max_steps", "2",
                            "--per_device_train_batch_size", "4", "--learning_rate", "1e-4", "--report_to", "none",
                            "--max_seq_length", "128", "--use_cpu", "--pool_size", "16", "--save_strategy", "no"])
    baseline = json.loads((distilled / "baseline" / "results.json").read_text("utf-8"))
    after = json.loads((distilled / "results.json").read_text("utf-8"))
    for lang in LANGS:
        assert baseline["per_language"][lang]["accuracy"] == results["per_language"][lang]["accuracy"]
        assert after["per_language"][lang]["n"] == _rows(data_dir, "test", lang)
    saved = json.loads((distilled / "teacher_selection.json").read_text("utf-8"))["selection"]
    expected = select_teachers(np.stack([_softmax(pool_logits[lang]) for lang in LANGS]), LANGS)
    assert saved["scores"] == pytest.approx(expected.scores, abs=1e-6)
    assert (saved["teachers"], saved["students"]) == (expected.teachers, expected.students)
    assert saved["num_items"] == 16


def test_two_processes_distil_like_one_with_a_frozen_teacher_and_an_anchor(tmp_path, data_dir, no_dropout_mlm):
    """2 ranks x 2 pairs per step = 1 process x 4 pairs: the same distilled weights (with the source-alignment
    features computed by both ranks together), and DDP runs without
    the unused-parameter search (every parameter gets a gradient), so no rank warns about it."""
    import distill

    common = ["--model_name_or_path", str(no_dropout_mlm), "--task", "xnli", "--data_dir", str(data_dir),
              "--languages", ",".join(LANGS), "--max_steps", "3", "--learning_rate", "1e-3", "--report_to", "none",
              "--max_seq_length", "64", "--use_cpu", "--save_strategy", "no", "--seed", "3", "--pool_size", "8",
              "--frozen_teacher", "--anchor_weight", "0.5", "--allow_untuned_checkpoint",
              "--source_alignment_weight", "2.0"]  # its English features are split across ranks and gathered
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    distill.main(common + ["--output_dir", str(single), "--per_device_train_batch_size", "4"])
    log = torchrun("distill.py", common + ["--output_dir", str(ddp), "--per_device_train_batch_size", "2"])
    start = load_file(no_dropout_mlm / "model.safetensors")
    one, two = load_file(single / "model.safetensors"), load_file(ddp / "model.safetensors")
    # Adam divides by the root of tiny second moments, so the two reduction orders can differ by ~1e-5 after
    # 3 steps (1.1e-5 seen on a busy 2-core machine); a wrong split of the batch moves weights by ~lr = 1e-3.
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 5e-5
    assert max((one[k] - start[k]).abs().max().item() for k in start if one[k].shape == start[k].shape) > 1e-4
    assert "every trainable parameter gets a gradient: no unused-parameter search" in log
    assert "find_unused_parameters=True" not in log  # torch's warning, printed by each rank with the search on


def test_scoring_runs_under_the_mixed_precision_autocast(tmp_path, tiny_mlm):
    """accelerate autocasts by wrapping the trained module's `forward`, which is class scoring: with
    --bf16 the encoder runs under bf16 autocast, without it in float32."""
    from transformers import AutoModelForMaskedLM, TrainingArguments

    from alsace.trainer import AlsaceTrainer

    model = AutoModelForMaskedLM.from_pretrained(tiny_mlm)
    seen = []
    model.base_model.register_forward_pre_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    batch = {"input_ids": torch.tensor([[0, 5, 4, 2]]), "attention_mask": torch.ones(1, 4, dtype=torch.long),
             "mask_pos": torch.tensor([2]), "label_token_ids": torch.tensor([[5, 6, 7]])}
    for bf16 in (False, True):
        trainer = AlsaceTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                                                                    bf16=bf16, report_to="none"),
                                finetune_loss="full_vocab")
        trainer.accelerator.prepare_model(trainer.model)(**batch)
        assert seen.pop() is bf16


def test_torch_compile_trains_and_scores_like_eager(tmp_path, no_dropout_mlm, data_dir):
    """--torch_compile compiles the scorer's forward (class scoring itself) on CPU: one training step
    and the dev logits agree with eager execution."""
    from torch._dynamo.eval_frame import OptimizedModule
    from transformers import TrainingArguments

    from alsace.trainer import AlsaceTrainer

    task = get_task("xnli")
    runs = {}
    for compile_ in (False, True):
        tokenizer, model = load_tokenizer_and_model(str(no_dropout_mlm), "prompt", task, 6)
        features = split_features(task, Featurizer(tokenizer, task, "prompt", 64, 6), str(data_dir), "test",
                                  ["en"], max_rows=8)["en"]
        args = TrainingArguments(output_dir=str(tmp_path / str(compile_)), use_cpu=True, report_to="none",
                                 torch_compile=compile_, max_steps=1, per_device_train_batch_size=8,
                                 per_device_eval_batch_size=8, learning_rate=1e-3, save_strategy="no", seed=1)
        trainer = AlsaceTrainer(model=model, args=args, train_dataset=features,
                                data_collator=Collator(tokenizer.pad_token_id), finetune_loss="full_vocab")
        loss = trainer.train().training_loss
        assert isinstance(trainer.model_wrapped, OptimizedModule) is compile_
        runs[compile_] = loss, trainer.predict(features).predictions
    assert runs[True][0] == pytest.approx(runs[False][0], abs=1e-5)
    np.testing.assert_allclose(runs[True][1], runs[False][1], atol=1e-5)
