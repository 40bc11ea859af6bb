"""What the self-distillation is fed, checked through the real entry point (distill.main) on the tiny models.

- frozen teacher: the targets are the starting checkpoint's eval-mode class logits of the same pool item
  in the pair's teacher language, recomputed here independently with the stock masked-LM forward;
- anchor rows: labelled English training rows that change from pair to pair;
- every extension flag reaches the loss in its own slot (values all different, so a swap shows);
- a run with the extensions killed mid-training and rerun equals the uninterrupted run.
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
from transformers import AutoModelForMaskedLM, AutoTokenizer

import alsace.trainer
import distill
import finetune
from alsace.errors import UserError
from alsace.losses import LossConfig
from alsace.pairs import PairDataset
from conftest import run_argv

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")
LANGS = ["en", "fr", "de"]
POOL = 8
ATOL = 2e-6  # batched, padded pool scoring vs one unpadded stock forward


@pytest.fixture(scope="module")
def start_checkpoint(one_thread, tiny_mlm, data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ft") / "run"
    finetune.main(run_argv(tiny_mlm, data_dir, out, task="xnli", languages=",".join(LANGS), max_seq_length=96,
                           use_cpu=True, report_to="none", max_steps=6, per_device_train_batch_size=8,
                           learning_rate="2e-3", max_train_samples=32, max_eval_samples=8, save_strategy="no",
                           seed=3))
    return out


def distill_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return run_argv(model, data, out, *extra, task="xnli", languages=",".join(LANGS), max_seq_length=96, use_cpu=True,
                    report_to="none", per_device_train_batch_size=4, per_device_eval_batch_size=5,
                    learning_rate="1e-3", pool_size=POOL, seed=11, disable_tqdm="true")


class Recorder:
    """Spies on distill.py: the pair dataset it builds and every batch the loss receives."""

    def __init__(self, monkeypatch):
        self.datasets, self.calls, self.outputs, self.references = [], [], [], []
        recorder = self

        class RecordedPairDataset(PairDataset):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                recorder.datasets.append(self)

        real = alsace.trainer.pair_loss

        def spy(model, inputs, *args, **kwargs):
            loss, student = real(model, inputs, *args, **kwargs)
            recorder.references.append(kwargs.get("reference"))
            recorder.calls.append(({k: (v if isinstance(v, dict) else v.clone()) for k, v in inputs.items()}, args))
            recorder.outputs.append((loss.item(), student.detach().clone()))
            return loss, student

        monkeypatch.setattr(distill, "PairDataset", RecordedPairDataset)
        monkeypatch.setattr(alsace.trainer, "pair_loss", spy)


def pool_rows(data_dir: Path, lang: str) -> list[dict]:
    lines = (data_dir / "xnli" / "validation" / f"{lang}.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines[:POOL]]


def stock_class_logits(model, feature: dict) -> np.ndarray:
    """The stock masked-LM forward of one unpadded example: vocabulary logits at the mask, label-word rows."""
    with torch.no_grad():
        ids = torch.tensor([feature["input_ids"]])
        vocab = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, feature["mask_pos"]]
    return vocab[feature["label_token_ids"]].numpy()


def test_frozen_targets_are_the_starting_checkpoints_eval_logits_of_the_same_item_and_teacher_language(
        start_checkpoint, data_dir, tmp_path, monkeypatch):
    rec = Recorder(monkeypatch)
    out = tmp_path / "kd"
    distill.main(distill_args(start_checkpoint, data_dir, out, "--frozen_teacher", "--max_steps", "4",
                              "--save_strategy", "no"))
    (ds,) = rec.datasets
    pairs = [tuple(p) for p in json.loads((out / "teacher_selection.json").read_text())["pairs"]]

    # The pool features distill.py built are the pool rows of their language, in file order.
    tokenizer = AutoTokenizer.from_pretrained(start_checkpoint)
    for lang in LANGS:
        for i, row in enumerate(pool_rows(data_dir, lang)):
            text = tokenizer.decode(ds.pool_features[lang][i]["input_ids"])
            assert row["premise"] in text and row["hypothesis"] in text, (lang, i, text)

    # Independent recomputation: the saved starting checkpoint, stock forward, eval mode (dropout off).
    model = AutoModelForMaskedLM.from_pretrained(start_checkpoint).eval()
    assert model.config.hidden_dropout_prob > 0  # so train-mode logits would differ
    expected = {lang: np.stack([stock_class_logits(model, f) for f in ds.pool_features[lang]]) for lang in LANGS}
    flat = np.concatenate([expected[lang] for lang in LANGS])  # (3 x POOL, C)
    gaps = np.abs(flat[:, None] - flat[None]).max(-1) + np.eye(len(flat))
    # Every (language, item) has logits of its own, 10x further from any other than the tolerance below
    # (measured: nearest 6e-5 apart, recomputation within 1.2e-7): a misaligned row cannot pass.
    assert gaps.min() > 10 * ATOL

    assert len(ds) == len(pairs) * POOL
    for k in range(len(ds)):
        a, b, i = ds.index[k]
        example = ds[k]
        assert "a" not in example
        np.testing.assert_allclose(example["teacher_logits"], expected[a][i], atol=ATOL)
        assert example["b"]["input_ids"] == ds.pool_features[b][i]["input_ids"]

    # The batches the loss received: each student row's teacher logits are its item's in a teacher language
    # paired with the student's language.
    by_ids = {(lang, tuple(f["input_ids"])): (lang, i) for lang in LANGS for i, f in enumerate(ds.pool_features[lang])}
    assert len(by_ids) == len(LANGS) * POOL
    assert len(rec.calls) == 4
    for inputs, _ in rec.calls:
        assert inputs["input_ids"].shape[0] == inputs["num_pairs"] == inputs["teacher_logits"].shape[0]
        for row, mask, target in zip(inputs["input_ids"], inputs["attention_mask"], inputs["teacher_logits"]):
            ids = tuple(row[mask.bool()].tolist())
            matches = [key for key in by_ids if key[1] == ids]
            assert len(matches) == 1
            b, i = by_ids[matches[0]]
            teachers = [a for a, bb in pairs if bb == b]
            assert any(np.allclose(target.numpy(), expected[a][i], atol=ATOL) for a in teachers), (b, i)


def test_anchor_rows_are_english_training_rows_that_vary_across_pairs(start_checkpoint, data_dir, tmp_path,
                                                                      monkeypatch):
    rec = Recorder(monkeypatch)
    distill.main(distill_args(start_checkpoint, data_dir, tmp_path / "kd", "--frozen_teacher", "--anchor_weight",
                              "0.25", "--max_steps", "3", "--save_strategy", "no"))
    (ds,) = rec.datasets
    train = [json.loads(line) for line in (data_dir / "xnli" / "train" / "en.jsonl").read_text("utf-8").splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(start_checkpoint)
    seen = []
    for inputs, args in rec.calls:
        anchor = inputs["anchor"]
        assert anchor["input_ids"].shape[0] == inputs["num_pairs"]
        for row, mask, label in zip(anchor["input_ids"], anchor["attention_mask"], anchor["labels"]):
            text = tokenizer.decode(row[mask.bool()].tolist())
            source = [r for r in train if r["premise"] in text and r["hypothesis"] in text]
            assert source and int(label) == source[0]["label"]  # an English training row with its gold label
            seen.append(text)
    assert len(seen) == 12 and len(set(seen)) == len(seen)  # 12 pairs, 12 different anchor rows (48 to draw)
    # Each pair's anchor row is drawn by its position in the epoch, not by its pool item or pair.
    items = [ds.index[k][2] for k in range(len(ds))]
    anchors = [ds.anchor_order[k % len(ds.anchor_order)] for k in range(len(ds))]
    assert len(set(anchors)) == min(len(ds), len(ds.anchor_features)) > POOL
    assert len({(i, a) for i, a in zip(items, anchors)}) > POOL


def test_self_anchor_rows_are_english_pool_items_with_the_starting_checkpoints_logits(start_checkpoint, data_dir,
                                                                                      tmp_path, monkeypatch):
    """--anchor_target self: the anchor rows are English pool items (no labels), and their targets are the
    starting checkpoint's eval-mode logits on exactly those items, recomputed with the stock forward."""
    rec = Recorder(monkeypatch)
    distill.main(distill_args(start_checkpoint, data_dir, tmp_path / "kd", "--frozen_teacher", "--anchor_weight",
                              "0.25", "--anchor_target", "self", "--max_steps", "3", "--save_strategy", "no"))
    (ds,) = rec.datasets
    model = AutoModelForMaskedLM.from_pretrained(start_checkpoint).eval()
    english = {tuple(f["input_ids"]): stock_class_logits(model, f) for f in ds.pool_features["en"]}
    others = {tuple(f["input_ids"]) for lang in LANGS[1:] for f in ds.pool_features[lang]}
    assert len(english) == POOL
    seen = []
    for inputs, args in rec.calls:
        anchor = inputs["anchor"]
        assert "labels" not in anchor and args[0].anchor_weight == 0.25
        assert anchor["input_ids"].shape[0] == inputs["num_pairs"] == inputs["anchor_logits"].shape[0]
        for row, mask, target in zip(anchor["input_ids"], anchor["attention_mask"], inputs["anchor_logits"]):
            ids = tuple(row[mask.bool()].tolist())
            assert ids in english and ids not in others  # an English pool item
            np.testing.assert_allclose(target.numpy(), english[ids], atol=ATOL)  # and the start's logits on it
            seen.append(ids)
    assert len(set(seen)) == POOL  # 12 anchor rows cycle through all 8 English pool items


def test_the_hidden_state_anchor_compares_with_a_frozen_copy_of_the_starting_checkpoint(start_checkpoint, data_dir,
                                                                                        tmp_path, monkeypatch):
    """--anchor_features_weight: every loss call gets the same reference model, whose weights are the starting
    checkpoint's (not the moving model's) in eval mode and without gradients; off, no reference at all."""
    rec = Recorder(monkeypatch)
    distill.main(distill_args(start_checkpoint, data_dir, tmp_path / "kd", "--frozen_teacher", "--anchor_weight",
                              "0.5", "--anchor_target", "self", "--anchor_features_weight", "3.5", "--max_steps", "3",
                              "--save_strategy", "no"))
    assert len(rec.calls) == 3 and all(args[0].anchor_features_weight == 3.5 for _, args in rec.calls)
    reference = rec.references[0]
    assert all(r is reference for r in rec.references) and not reference.training
    assert not any(p.requires_grad for p in reference.parameters())
    start = load_file(start_checkpoint / "model.safetensors")
    state = reference.state_dict()
    assert all(torch.equal(state[k], v) for k, v in start.items() if k in state) and len(set(start) & set(state)) > 10
    trained = load_file(tmp_path / "kd" / "model.safetensors")
    assert any(not torch.equal(trained[k], start[k]) for k in start)  # the model moved, its reference did not
    rec = Recorder(monkeypatch)
    distill.main(distill_args(start_checkpoint, data_dir, tmp_path / "off", "--frozen_teacher", "--anchor_weight",
                              "0.5", "--anchor_target", "self", "--max_steps", "1", "--save_strategy", "no"))
    assert rec.references == [None]


def test_every_extension_flag_reaches_its_own_slot_of_the_loss(start_checkpoint, data_dir, tmp_path, monkeypatch):
    rec = Recorder(monkeypatch)
    distill.main(distill_args(start_checkpoint, data_dir, tmp_path / "kd", "--max_steps", "1", "--save_strategy",
                              "no", "--kl_direction", "student_target", "--detach_teacher", "--temperature", "3.0",
                              "--min_teacher_confidence", "0.2", "--anchor_weight", "0.7",
                              "--teacher_temperature", "0.4"))
    (inputs, args), = rec.calls
    # pair_loss(model, inputs, LossConfig(...)): every value differs from the others
    assert args == (LossConfig(kl_direction="student_target", detach_teacher=True, temperature=3.0,
                               min_teacher_confidence=0.2, anchor_weight=0.7, teacher_temperature=0.4),)
    assert "anchor" in inputs and "teacher_logits" not in inputs  # online teacher: both sides in the batch
    assert inputs["input_ids"].shape[0] == 2 * inputs["num_pairs"]


def test_teacher_temperature_changes_only_the_targets_through_the_entry_point(start_checkpoint, data_dir, tmp_path,
                                                                              monkeypatch):
    """Two runs that differ only in --teacher_temperature: the same frozen targets and student inputs at the
    first step, and each first loss is KL(softmax(targets / T_a) || softmax(student / T)) of the student
    logits the loss saw (not uniform), so the temperature divides the targets only."""
    firsts = {}
    for t_a in (1.0, 0.5):
        rec = Recorder(monkeypatch)
        distill.main(distill_args(start_checkpoint, data_dir, tmp_path / f"kd{t_a}", "--frozen_teacher",
                                  "--temperature", "2.0", "--teacher_temperature", str(t_a), "--max_steps", "1",
                                  "--save_strategy", "no"))
        (inputs, args), = rec.calls
        (loss, student), = rec.outputs
        assert args[0].temperature == 2.0 and args[0].teacher_temperature == t_a
        spread = student.softmax(-1).amax(-1) - student.softmax(-1).amin(-1)
        assert spread.min() > 1e-3  # the student's distributions are not uniform
        log_p = (inputs["teacher_logits"] / t_a).log_softmax(-1)
        log_q = (student.float() / 2.0).log_softmax(-1)
        assert loss == pytest.approx(float((log_p.exp() * (log_p - log_q)).sum(-1).mean()), rel=1e-5)
        wrong = (inputs["teacher_logits"] / 2.0).log_softmax(-1), (student.float() / t_a).log_softmax(-1)
        assert loss != pytest.approx(float((wrong[0].exp() * (wrong[0] - wrong[1])).sum(-1).mean()), rel=1e-3)
        firsts[t_a] = (inputs, loss)
    assert torch.equal(firsts[1.0][0]["teacher_logits"], firsts[0.5][0]["teacher_logits"])
    assert torch.equal(firsts[1.0][0]["input_ids"], firsts[0.5][0]["input_ids"])
    assert firsts[1.0][1] != pytest.approx(firsts[0.5][1], rel=1e-3)


# The real entry point in a subprocess, parked after step KILL_AFTER so that SIGKILL lands at a known point.
MAX_STEPS, SAVE_STEPS, KILL_AFTER = 6, 2, 3
PARKED_RUN = f"""
import os, sys, time
from transformers import TrainerCallback
import alsace.trainer, distill
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
run_cli(distill.main, sys.argv[1:])
"""


def test_extensions_killed_mid_training_then_rerun_equal_the_uninterrupted_run(start_checkpoint, data_dir,
                                                                               tmp_path):
    extra = ("--frozen_teacher", "--anchor_weight", "0.3", "--teacher_temperature", "0.5", "--max_steps",
             str(MAX_STEPS), "--save_steps", str(SAVE_STEPS), "--warmup_steps", "2")
    reference = tmp_path / "reference"
    distill.main(distill_args(start_checkpoint, data_dir, reference, *extra))

    out, marker = tmp_path / "killed", tmp_path / "parked"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PARKED_MARKER": str(marker), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", PARKED_RUN, *distill_args(start_checkpoint, data_dir, out, *extra)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert marker.exists(), stderr[-3000:]
    assert (out / f"checkpoint-{SAVE_STEPS}").is_dir() and not (out / f"checkpoint-{2 * SAVE_STEPS}").exists()
    assert not (out / "results.json").exists()

    distill.main(distill_args(start_checkpoint, data_dir, out, *extra))  # the same command again resumes
    wa, wb = load_file(reference / "model.safetensors"), load_file(out / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    for name in ("results.json", "baseline/results.json"):
        ra, rb = (json.loads((run / name).read_text())["per_language"] for run in (reference, out))
        assert ra == rb
    for lang in LANGS:
        assert np.array_equal(np.load(reference / "predictions" / f"{lang}_test_logits.npy"),
                              np.load(out / "predictions" / f"{lang}_test_logits.npy"))
    state = json.loads((out / "trainer_state.json").read_text())  # checkpoints are removed at the end
    ref_state = json.loads((reference / "trainer_state.json").read_text())
    assert [h.get("loss") for h in state["log_history"]] == [h.get("loss") for h in ref_state["log_history"]]


def test_anchor_train_rows_add_english_training_rows_without_labels_and_with_the_starting_checkpoints_logits(
        start_checkpoint, data_dir, tmp_path, monkeypatch):
    """--anchor_train_rows: the self-anchor's rows are English's pool items and then its training rows (their gold
    labels dropped), each with the starting checkpoint's eval-mode logits on it as the target; the batches draw
    from both kinds."""
    rec = Recorder(monkeypatch)
    distill.main(distill_args(start_checkpoint, data_dir, tmp_path / "kd", "--frozen_teacher", "--anchor_weight",
                              "0.25", "--anchor_target", "self", "--anchor_train_rows", "--max_steps", "6",
                              "--save_strategy", "no"))
    (ds,) = rec.datasets
    train_lines = (data_dir / "xnli" / "train" / "en.jsonl").read_text("utf-8").splitlines()
    assert len(ds.anchor_features) == POOL + len(train_lines) and len(ds.anchor_logits) == len(ds.anchor_features)
    assert [f["input_ids"] for f in ds.anchor_features[:POOL]] == [f["input_ids"] for f in ds.pool_features["en"]]
    tokenizer = AutoTokenizer.from_pretrained(start_checkpoint)
    premises = [json.loads(line)["premise"] for line in train_lines]
    for f, premise in zip(ds.anchor_features[POOL:], premises):  # the training rows, in the file's order
        assert "labels" not in f and premise.split()[0] in tokenizer.decode(f["input_ids"])
    model = AutoModelForMaskedLM.from_pretrained(start_checkpoint).eval()
    start = {tuple(f["input_ids"]): stock_class_logits(model, f) for f in ds.anchor_features}
    pool_ids = {tuple(f["input_ids"]) for fs in ds.pool_features.values() for f in fs}
    kinds = set()
    for inputs, _ in rec.calls:
        anchor = inputs["anchor"]
        assert "labels" not in anchor
        for row, mask, target in zip(anchor["input_ids"], anchor["attention_mask"], inputs["anchor_logits"]):
            ids = tuple(row[mask.bool()].tolist())
            np.testing.assert_allclose(target.numpy(), start[ids], atol=ATOL)
            kinds.add(ids in pool_ids)
    assert kinds == {True, False}  # English pool items and training rows both anchored
    with pytest.raises(UserError, match="--anchor_train_rows .* needs --anchor_target self"):  # nothing to add to
        distill.main(distill_args(start_checkpoint, data_dir, tmp_path / "bad", "--anchor_weight", "0.25",
                                  "--anchor_train_rows", "--max_steps", "1"))
    assert not (tmp_path / "bad").exists()


def test_train_only_embeddings_moves_only_the_rows_of_tokens_english_never_uses(start_checkpoint, data_dir, tmp_path,
                                                                                 monkeypatch):
    """--train_only_embeddings: after training, every weight but the input embeddings equals the start's, the
    embedding rows of every token in English's pool items and training rows (and the label words) are unchanged
    while other rows moved, so English's pool items score exactly as before; weight decay is refused."""
    rec = Recorder(monkeypatch)
    passed = []  # the special-token ids the entry point keeps as well (<unk>: every language's unreadable piece)
    keep = distill.train_only_new_token_embeddings
    monkeypatch.setattr(distill, "train_only_new_token_embeddings",
                        lambda model, rows, ids=(): passed.append(list(ids)) or keep(model, rows, ids))
    out = tmp_path / "kd"
    distill.main(distill_args(start_checkpoint, data_dir, out, "--frozen_teacher", "--train_only_embeddings",
                              "--weight_decay", "0", "--learning_rate", "5e-2", "--max_steps", "4",
                              "--save_strategy", "no"))
    (ds,) = rec.datasets
    start, trained = load_file(start_checkpoint / "model.safetensors"), load_file(out / "model.safetensors")
    (name,) = [k for k in start if k.endswith("word_embeddings.weight")]
    assert [k for k in start if not torch.equal(start[k], trained[k])] == [name]  # nothing else moved
    train_rows = [json.loads(line) for line in (data_dir / "xnli" / "train" / "en.jsonl").read_text().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(start_checkpoint)
    assert passed == [tokenizer.all_special_ids] and tokenizer.unk_token_id in passed[0]
    english = {i for f in ds.pool_features["en"] for i in (*f["input_ids"], *f["label_token_ids"])}
    english |= {i for r in train_rows for i in tokenizer(r["premise"], r["hypothesis"])["input_ids"]}
    moved = {int(i) for i in torch.nonzero((start[name] != trained[name]).any(1)).flatten()}
    assert moved and not moved & english  # the rows of English's tokens stayed put, others moved
    others = {i for lang in LANGS[1:] for f in ds.pool_features[lang] for i in f["input_ids"]}
    assert moved <= others  # and only tokens the trained languages' pool items use
    before = AutoModelForMaskedLM.from_pretrained(start_checkpoint).eval()
    after = AutoModelForMaskedLM.from_pretrained(out).eval()
    for f in ds.pool_features["en"]:
        np.testing.assert_array_equal(stock_class_logits(after, f), stock_class_logits(before, f))
    with pytest.raises(UserError, match="--train_only_embeddings with --weight_decay 0.01: .* pass --weight_decay 0"):
        distill.main(distill_args(start_checkpoint, data_dir, tmp_path / "bad", "--train_only_embeddings",
                                  "--weight_decay", "0.01", "--max_steps", "1"))
    assert not (tmp_path / "bad").exists()


def test_source_alignment_targets_are_the_starting_checkpoints_pooled_english_states_of_the_same_item(
        start_checkpoint, data_dir, tmp_path, monkeypatch):
    """--source_alignment_weight: the dataset's features are the starting checkpoint's eval-mode hidden states
    of each English pool item, every layer averaged over its tokens, recomputed here with the stock forward of
    one unpadded row; every batch row carries the features of its own item in English (not of its own language,
    not of another item), and the loss gets the weight. Off: no features at all."""
    rec = Recorder(monkeypatch)
    distill.main(distill_args(start_checkpoint, data_dir, tmp_path / "kd", "--frozen_teacher", "--source_guard",
                              "--source_alignment_weight", "0.75", "--max_steps", "3", "--save_strategy", "no"))
    (ds,) = rec.datasets
    model = AutoModelForMaskedLM.from_pretrained(start_checkpoint).eval()

    def pooled(feature):  # (layers, H)
        with torch.no_grad():
            ids = torch.tensor([feature["input_ids"]])
            states = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True).hidden_states
        return torch.stack([h[0].mean(0) for h in states]).numpy()

    expected = {lang: np.stack([pooled(f) for f in ds.pool_features[lang]]) for lang in LANGS}
    assert ds.source_features.shape == expected["en"].shape == (POOL, model.config.num_hidden_layers + 1,
                                                                model.config.hidden_size)
    np.testing.assert_allclose(ds.source_features, expected["en"], atol=1e-5)
    flat = np.concatenate([expected[lang] for lang in LANGS]).reshape(len(LANGS) * POOL, -1)
    assert (np.abs(flat[:, None] - flat[None]).max(-1) + 1e3 * np.eye(len(flat))).min() > 1e-3  # all distinct
    by_ids = {tuple(f["input_ids"]): (lang, i) for lang in LANGS for i, f in enumerate(ds.pool_features[lang])}
    rows = 0
    for inputs, args in rec.calls:
        assert args[0].source_alignment_weight == 0.75
        assert inputs["source_features"].shape[0] == inputs["num_pairs"] == inputs["input_ids"].shape[0]
        for row, mask, target in zip(inputs["input_ids"], inputs["attention_mask"], inputs["source_features"]):
            lang, i = by_ids[tuple(row[mask.bool()].tolist())]
            assert lang != "en"  # --source_guard ranks English first: never the side being aligned
            np.testing.assert_allclose(target.numpy(), expected["en"][i], atol=1e-5)
            rows += 1
    assert rows == 12
    rec = Recorder(monkeypatch)
    distill.main(distill_args(start_checkpoint, data_dir, tmp_path / "off", "--frozen_teacher", "--max_steps", "1",
                              "--save_strategy", "no"))
    assert rec.datasets[0].source_features is None and "source_features" not in rec.calls[0][0]


def test_source_alignment_needs_the_source_language(start_checkpoint, data_dir, tmp_path):
    out = tmp_path / "kd"
    argv = distill_args(start_checkpoint, data_dir, out, "--source_alignment_weight", "1")
    argv[argv.index("--languages") + 1] = "fr,de"
    with pytest.raises(UserError, match=r"--source_alignment_weight pulls every language to the source language en"):
        distill.main(argv)
    assert not out.exists()
