"""Pairs, the consistency loss, and one stacked forward pass = two separate passes."""

import math

import pytest
import torch
import torch.nn.functional as F

from alsace.features import Collator, Featurizer
from alsace.losses import LossConfig, consistency_loss
from alsace.modeling import load_tokenizer_and_model
from alsace.pairs import PairCollator, PairDataset, all_pairs, build_pairs
from alsace.scoring import class_logits
from alsace.tasks import get_task
from conftest import encode_rows

XNLI = get_task("xnli")


def test_original_setting_gives_77_pairs_and_no_student_pairs():
    ranking = list(XNLI.lang_rank)
    teachers, students = ranking[:7], ranking[7:]
    pairs = build_pairs(ranking, teachers, students)
    assert len(pairs) == 21 + 56 == 77
    assert not [p for p in pairs if p[0] in students and p[1] in students]
    assert all(ranking.index(a) < ranking.index(b) for a, b in pairs)  # higher-ranked first
    assert sum(1 for p in pairs if "en" in p) == 14 and sum(1 for p in pairs if "sw" in p) == 7
    assert pairs == build_pairs(ranking, teachers, students)  # deterministic
    assert all_pairs(["en", "fr", "de"]) == [("en", "fr"), ("en", "de"), ("fr", "de")]


def test_kl_by_hand():
    a = torch.tensor([[0.0, 0.0]])              # P_a = (1/2, 1/2)
    b = torch.tensor([[math.log(3.0), 0.0]])    # P_b = (3/4, 1/4)
    kl_ab = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)      # KL(P_a || P_b)
    kl_ba = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)    # KL(P_b || P_a)
    assert consistency_loss(a, b, LossConfig(kl_direction="teacher_target")).item() == pytest.approx(kl_ab)
    assert consistency_loss(a, b, LossConfig(kl_direction="student_target")).item() == pytest.approx(kl_ba)
    assert consistency_loss(a, b, LossConfig(kl_direction="symmetric")).item() == pytest.approx((kl_ab + kl_ba) / 2)
    # Temperature 2 halves the logits before the softmax.
    assert consistency_loss(a, 2 * b, LossConfig(kl_direction="teacher_target", temperature=2.0)).item() == pytest.approx(kl_ab)


def test_kl_matches_f_kl_div_and_zero_on_identical():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    expected = F.kl_div(F.log_softmax(b, -1), F.softmax(a, -1), reduction="batchmean")
    assert consistency_loss(a, b, LossConfig(kl_direction="teacher_target")).item() == pytest.approx(expected.item(), rel=1e-6)
    # The released code: KLDivLoss(batchmean, log_target=True)(log_softmax(s1), log_softmax(s2)).
    released = torch.nn.KLDivLoss(reduction="batchmean", log_target=True)(F.log_softmax(a, -1), F.log_softmax(b, -1))
    assert consistency_loss(a, b, LossConfig(kl_direction="student_target")).item() == pytest.approx(released.item(), rel=1e-6)
    assert consistency_loss(a, a.clone(), LossConfig(kl_direction="symmetric")).item() == pytest.approx(0.0, abs=1e-7)


def test_empty_batch_bf16_and_detach():
    empty = consistency_loss(torch.zeros(0, 3), torch.zeros(0, 3))
    assert empty.item() == 0.0 and not torch.isnan(empty)
    a16, b16 = torch.randn(4, 3).bfloat16(), torch.randn(4, 3).bfloat16()
    loss16 = consistency_loss(a16, b16)
    assert loss16.dtype == torch.float32 and torch.isfinite(loss16)
    a = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(4, 3, requires_grad=True)
    consistency_loss(a, b, LossConfig(detach_teacher=True)).backward()
    assert a.grad is None and b.grad is not None and b.grad.abs().sum() > 0
    a2 = torch.randn(4, 3, requires_grad=True)
    consistency_loss(a2, b.detach()).backward()
    assert a2.grad.abs().sum() > 0  # not detached by default: the teacher side learns too (original)


def test_pair_dataset_has_no_labels_and_is_seeded():
    pool = {lang: [{"input_ids": [0, i], "labels": 1} for i in range(3)] for lang in ("en", "fr")}
    ds = PairDataset(pool, [("en", "fr")], seed=1)
    assert len(ds) == 3 and all("labels" not in ds[k]["a"] and "labels" not in ds[k]["b"] for k in range(3))
    assert ds.index == PairDataset(pool, [("en", "fr")], seed=1).index


def test_stacked_forward_equals_two_passes(tiny_mlm, data_dir):
    tokenizer, model = load_tokenizer_and_model(str(tiny_mlm), "prompt", XNLI, 6)
    model.eval()  # dropout off: the two computations must then agree
    feat = Featurizer(tokenizer, XNLI, "prompt", 128, 6, languages=("en", "fr"))
    from alsace.data import load_pool

    pool = load_pool(XNLI, ["en", "fr"], str(data_dir), 4)
    pairs = [{"a": a, "b": b} for a, b in zip(encode_rows(feat, pool["en"], "en"), encode_rows(feat, pool["fr"], "fr"))]
    collate = Collator(tokenizer.pad_token_id)

    stacked = PairCollator(tokenizer.pad_token_id)(pairs)
    logits = class_logits(model, stacked)
    loss_stacked = consistency_loss(logits[:4], logits[4:])
    grads_stacked = torch.autograd.grad(loss_stacked, list(model.parameters()), allow_unused=True)

    side_a = collate([p["a"] for p in pairs])
    side_b = collate([p["b"] for p in pairs])
    loss_two = consistency_loss(class_logits(model, side_a), class_logits(model, side_b))
    grads_two = torch.autograd.grad(loss_two, list(model.parameters()), allow_unused=True)

    assert loss_stacked.item() == pytest.approx(loss_two.item(), rel=1e-5, abs=1e-7)
    for g1, g2 in zip(grads_stacked, grads_two):
        if g1 is None or g2 is None:
            assert g1 is None and g2 is None
            continue
        torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-6)


def test_readme_names_every_trainer_method_we_override():
    """The README once said only `compute_loss` was overridden while four more methods were."""
    from pathlib import Path

    from transformers import Trainer

    from alsace.trainer import AlsaceTrainer

    overridden = sorted(name for name in vars(AlsaceTrainer) if callable(getattr(Trainer, name, None)))
    assert "compute_loss" in overridden and len(overridden) >= 2
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text("utf-8")
    sentence = readme[readme.index("Training uses the stock"):]
    sentence = sentence[:sentence.index("\n\n") if "\n\n" in sentence else None]
    assert f"{len(overridden)} small overrides" in sentence.replace("five", "5").replace("four", "4"), sentence
    for name in overridden:
        assert f"`{name}`" in sentence, name
