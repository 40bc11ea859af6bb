"""End-to-end smoke runs of finetune.main and distill.main on a tiny model (CPU, offline)."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import distill
import finetune
from alsace.data import load_split
from alsace.features import Collator, Featurizer
from alsace.modeling import load_tokenizer_and_model
from alsace.scoring import class_logits
from alsace.tasks import get_task
from conftest import encode_rows, run_argv

COMMON = ["--task", "xnli", "--languages", "en,fr,de", "--max_seq_length", "128", "--report_to", "none",
          "--use_cpu", "--per_device_eval_batch_size", "16", "--disable_tqdm", "true"]


@pytest.fixture(scope="module")
def finetuned(tiny_mlm, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "run"
    results = finetune.main(run_argv(tiny_mlm, data_dir, out, *COMMON, max_steps=8, per_device_train_batch_size=8,
                                     learning_rate="1e-3", eval_strategy="steps", eval_steps=4, save_steps=4,
                                     load_best_model_at_end=True, metric_for_best_model="accuracy",
                                     max_train_samples=40))
    return out, results


def test_finetune_writes_the_results_contract(finetuned):
    out, results = finetuned
    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["task"] == "xnli" and saved["split"] == "test"
    assert list(saved["per_language"]) == ["en", "fr", "de"]
    accs = {k: v["accuracy"] for k, v in saved["per_language"].items()}
    assert all(v["n"] == 30 for v in saved["per_language"].values())
    assert saved["average"] == pytest.approx(np.mean(list(accs.values())))
    assert saved["transfer_gap"] == pytest.approx(accs["en"] - (accs["fr"] + accs["de"]) / 2)
    assert saved["spread"] == pytest.approx(max(accs.values()) - min(accs.values()))
    for name in ("results.md", "run_args.json", "environment.json", "model.safetensors", "alsace_task.json",
                 "predictions/fr_test_logits.npy", "predictions/fr_test_labels.npy"):
        assert (out / name).is_file(), name
    assert "| fr |" in (out / "results.md").read_text()
    run_args = json.loads((out / "run_args.json").read_text())
    assert run_args["finetune_args"]["max_train_samples"] == 40


def test_checkpoint_reloads_with_the_same_logits(finetuned, data_dir):
    out, _ = finetuned
    task = get_task("xnli")
    tokenizer, model = load_tokenizer_and_model(str(out), "prompt", task, 6)
    model.eval()
    feats = encode_rows(Featurizer(tokenizer, task, "prompt", 128, 6, languages=("fr",)),
                        load_split(task, "test", "fr", str(data_dir)), "fr")
    with torch.no_grad():
        logits = class_logits(model, Collator(tokenizer.pad_token_id)(feats)).numpy()
    saved = np.load(out / "predictions" / "fr_test_logits.npy", allow_pickle=False)
    np.testing.assert_allclose(logits, saved, rtol=1e-4, atol=1e-5)
    labels = np.load(out / "predictions" / "fr_test_labels.npy", allow_pickle=False)
    assert labels.tolist() == [r["label"] for r in load_split(task, "test", "fr", str(data_dir))]


def distill_args(model_dir, data_dir, out, *extra):
    return run_argv(model_dir, data_dir, out, *COMMON, *extra, max_steps=4, per_device_train_batch_size=4,
                    learning_rate="1e-4", pool_size=12, save_strategy="no", seed=3)


def test_distill_end_to_end(finetuned, data_dir, tmp_path):
    model_dir, ft_results = finetuned
    out = tmp_path / "distill"
    after = distill.main(distill_args(model_dir, data_dir, out))
    sel = json.loads((out / "teacher_selection.json").read_text())
    chosen = sel["selection"]
    assert sorted(chosen["teachers"] + chosen["students"]) == ["de", "en", "fr"]
    assert chosen["num_items"] == 12 and len(chosen["normalized_scores"]) == 3
    assert sum(chosen["normalized_scores"]) == pytest.approx(1.0)
    assert all(a in chosen["teachers"] for a, _ in sel["pairs"])  # no student-student pair
    before = json.loads((out / "baseline" / "results.json").read_text())
    # The baseline is the fine-tuned checkpoint evaluated again: same accuracies as finetune.py reported.
    assert {k: v["accuracy"] for k, v in before["per_language"].items()} == \
        {k: v["accuracy"] for k, v in ft_results["per_language"].items()}
    assert "teacher_average" in after and "student_average" in after
    comp = json.loads((out / "comparison.json").read_text())
    for lang, row in comp["per_language"].items():
        assert row["delta"] == pytest.approx(after["per_language"][lang]["accuracy"] - row["before"])
    assert comp["summary"]["transfer_gap"]["after"] == pytest.approx(after["transfer_gap"])
    assert "| metric | before | after | Δ |" in (out / "comparison.md").read_text()


def test_collapse_warning_is_in_results_md_too(finetuned, data_dir, tmp_path, monkeypatch):
    """A reader of results.md alone (not only comparison.md and the log) sees that predictions collapsed."""
    import alsace.report.results

    model_dir, _ = finetuned
    monkeypatch.setattr(alsace.report.results, "is_collapsed", lambda before, after: True)
    distill.main(distill_args(model_dir, data_dir, tmp_path / "c", "--max_steps", "1"))
    for name in ("results.md", "comparison.md"):
        assert "**WARNING: predictions collapsed in en, fr, de**" in (tmp_path / "c" / name).read_text(), name
    assert "WARNING" not in (tmp_path / "c" / "baseline" / "results.md").read_text()


def test_distillation_never_reads_gold_labels(finetuned, data_dir, tmp_path):
    """Replacing every dev label (the pool's source) by garbage changes nothing in selection or training."""
    model_dir, _ = finetuned
    garbage = tmp_path / "garbage_labels"
    shutil.copytree(data_dir, garbage)
    for path in (garbage / "xnli" / "validation").glob("*.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({**r, "label": "GOLD?"}) + "\n" for r in rows))
    distill.main(distill_args(model_dir, data_dir, tmp_path / "a"))
    distill.main(distill_args(model_dir, garbage, tmp_path / "b"))
    sel_a = json.loads((tmp_path / "a" / "teacher_selection.json").read_text())
    sel_b = json.loads((tmp_path / "b" / "teacher_selection.json").read_text())
    # The only differences: the report-only pool accuracies (of each language and of each kind of per-item
    # target), computed where the labels are readable, absent where not.
    assert set(sel_a["selection"].pop("pool_accuracy")) == {"en", "fr", "de"}
    assert sel_b["selection"].pop("pool_accuracy") is None
    assert set(sel_a["selection"].pop("target_accuracy")) == {"majority_vote", "dawid_skene", "source"}
    assert sel_b["selection"].pop("target_accuracy") is None
    assert sel_a == sel_b
    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_fixed_rank_and_explicit_pairs(finetuned, data_dir, tmp_path):
    model_dir, _ = finetuned
    distill.main(distill_args(model_dir, data_dir, tmp_path / "r", "--lang_rank", "de,en,fr", "--num_students", "2"))
    sel = json.loads((tmp_path / "r" / "teacher_selection.json").read_text())
    assert sel["selection"]["teachers"] == ["de"] and sel["selection"]["method"] == "fixed_rank"
    assert sel["pairs"] == [["de", "en"], ["de", "fr"]]


def test_untuned_checkpoint_is_refused_or_warned_about(tiny_mlm, data_dir, tmp_path, caplog, monkeypatch):
    """A raw model (no alsace_task.json) used to run to the end with teachers picked by noise; allowed, the
    log says that the scores are too close to separate (every language scored alike, as the raw demo model)."""
    from alsace.errors import UserError

    with pytest.raises(UserError, match="no alsace_task.json.*--allow_untuned_checkpoint"):
        distill.main(distill_args(tiny_mlm, data_dir, tmp_path / "raw"))
    assert not (tmp_path / "raw").exists()
    score = distill.score_languages

    def alike(*args, **kwargs):  # every language scores as English, up to 1e-4 in one class's logit
        logits = score(*args, **kwargs)
        return {lang: logits["en"] + np.eye(logits["en"].shape[1])[0] * 1e-4 * i for i, lang in enumerate(logits)}

    monkeypatch.setattr(distill, "score_languages", alike)
    with caplog.at_level("WARNING", logger="alsace.distill"):
        distill.main(distill_args(tiny_mlm, data_dir, tmp_path / "raw", "--allow_untuned_checkpoint",
                                  "--max_steps", "1"))
    assert any("TEACHER SCORES TOO CLOSE TO SEPARATE: normalised scores span" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("direction, temperature", [("student_target", "2.5"), ("symmetric", "0.5")])
def test_kl_direction_and_temperature_reach_the_loss(finetuned, data_dir, tmp_path, monkeypatch, direction,
                                                     temperature):
    """The command-line values arrive in every consistency-loss call of the training run."""
    import alsace.losses

    calls = []
    loss = alsace.losses.consistency_loss

    def spy(logits_a, logits_b, config):
        calls.append((config.kl_direction, config.detach_teacher, config.temperature))
        return loss(logits_a, logits_b, config)

    monkeypatch.setattr(alsace.losses, "consistency_loss", spy)
    model_dir, _ = finetuned
    distill.main(distill_args(model_dir, data_dir, tmp_path / "k", "--max_steps", "2",
                              "--kl_direction", direction, "--temperature", temperature, "--detach_teacher"))
    assert len(calls) == 2  # one per training step
    assert set(calls) == {(direction, True, float(temperature))}


def test_explicit_pair_languages_train_on_their_pairs(finetuned, data_dir, tmp_path):
    model_dir, _ = finetuned
    distill.main(distill_args(model_dir, data_dir, tmp_path / "p", "--pair_languages", "fr,en"))
    assert json.loads((tmp_path / "p" / "teacher_selection.json").read_text())["pairs"] == [["fr", "en"]]


@pytest.mark.parametrize("pairs, message", [("en,es", "es not among --languages"),
                                            ("en", "at least two different languages")])
def test_pair_languages_outside_languages_fail_before_any_work(finetuned, data_dir, tmp_path, pairs, message):
    """Was a KeyError at the first training batch, after baseline/ and teacher_selection.json were written."""
    model_dir, _ = finetuned
    from alsace.errors import UserError

    with pytest.raises(UserError, match=message):
        distill.main(distill_args(model_dir, data_dir, tmp_path / "p", "--pair_languages", pairs))
    assert not (tmp_path / "p").exists()


def test_best_on_dev_keeps_the_best_checkpoint(finetuned, data_dir, tmp_path, monkeypatch):
    """The kept model is the checkpoint with the HIGHEST dev accuracy. Setting the flag after
    TrainingArguments was built left greater_is_better None, so transformers kept the LOWEST.

    The tiny model's dev accuracy barely moves, so the metric is scripted (0.5, 0.9, 0.3, 0.6, 0.4 at steps
    2..10): only the choice among the saved checkpoints is under test, and the weights really differ."""
    model_dir, _ = finetuned
    from alsace.errors import UserError

    with pytest.raises(UserError, match="--select_best_on_dev needs --eval_strategy"):
        distill.main(distill_args(model_dir, data_dir, tmp_path / "x", "--select_best_on_dev"))
    scripted = iter([0.5, 0.9, 0.3, 0.6, 0.4])
    monkeypatch.setattr(distill, "compute_accuracy", lambda eval_pred: {"accuracy": next(scripted)})
    out = tmp_path / "best"
    args = distill_args(model_dir, data_dir, out, "--select_best_on_dev", "--eval_strategy", "steps",
                        "--eval_steps", "2", "--save_steps", "2", "--max_steps", "10", "--learning_rate", "1e-3",
                        "--keep_checkpoints")  # inspected below
    args[args.index("--save_strategy") + 1] = "steps"
    distill.main(args)
    state = json.loads((out / "checkpoint-10" / "trainer_state.json").read_text())
    assert {e["step"]: e["eval_accuracy"] for e in state["log_history"] if "eval_accuracy" in e} == \
        {2: 0.5, 4: 0.9, 6: 0.3, 8: 0.6, 10: 0.4}
    assert state["best_metric"] == 0.9 and state["best_model_checkpoint"].endswith("checkpoint-4")
    kept, best = load_file(out / "model.safetensors"), load_file(out / "checkpoint-4" / "model.safetensors")
    last = load_file(out / "checkpoint-10" / "model.safetensors")
    assert all(torch.equal(kept[k], best[k]) for k in best)
    assert not all(torch.equal(last[k], best[k]) for k in best)


def test_dev_split_is_read_once_for_best_checkpoint_and_per_language_scalars(finetuned, data_dir, tmp_path,
                                                                            monkeypatch):
    """--select_best_on_dev with --eval_all_dev_languages reads the validation split once; the per-language
    dev scalars see --max_eval_samples rows per language (the --dev_language set too: one dev-row policy)."""
    model_dir, _ = finetuned
    reads, given = [], {}
    real_split_features = distill.split_features

    def counting(task, featurizer, data_dir, split, languages, *args, **kwargs):
        reads.append((split, tuple(languages)))
        return real_split_features(task, featurizer, data_dir, split, languages, *args, **kwargs)

    class Recording(distill.LanguageDevMetrics):
        def __init__(self, features, *args):
            given.update({lang: len(rows) for lang, rows in features.items()})
            super().__init__(features, *args)

    monkeypatch.setattr(distill, "split_features", counting)
    monkeypatch.setattr(distill, "LanguageDevMetrics", Recording)
    args = distill_args(model_dir, data_dir, tmp_path / "d", "--select_best_on_dev", "--eval_all_dev_languages",
                        "--eval_strategy", "steps", "--eval_steps", "2", "--save_steps", "2", "--max_steps", "2",
                        "--max_eval_samples", "5")
    args[args.index("--save_strategy") + 1] = "steps"
    distill.main(args)
    assert [r for r in reads if r[0] == "validation"] == [("validation", ("en", "fr", "de"))]
    assert given == {"en": 5, "fr": 5, "de": 5}
    state = json.loads((tmp_path / "d" / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"].endswith("checkpoint-2")


def test_best_on_dev_refuses_save_steps_that_skip_evaluated_steps(finetuned, data_dir, tmp_path):
    """--save_steps 3 with --eval_steps 2 would never save most evaluated steps: the library's check runs."""
    model_dir, _ = finetuned
    from alsace.errors import UserError

    args = distill_args(model_dir, data_dir, tmp_path / "x", "--select_best_on_dev", "--eval_strategy", "steps",
                        "--eval_steps", "2", "--save_steps", "3")
    args[args.index("--save_strategy") + 1] = "steps"
    with pytest.raises(UserError, match="multiple of the evaluation steps"):
        distill.main(args)
    assert not (tmp_path / "x").exists()
