"""This project's extensions of the distillation loss (all off in the paper's recipe): frozen teacher,
source-language anchor, teacher-confidence filter. Loss values are checked against hand computations."""

import json
import math

import numpy as np
import pytest
import torch

import distill
from alsace.errors import UserError
from alsace.losses import LossConfig, consistency_loss, pair_loss
from alsace.pairs import PairCollator, PairDataset
from conftest import run_argv


def kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def test_confidence_filter_by_hand():
    # Row 1: teacher (0.5, 0.5), max 0.5; row 2: teacher (0.8, 0.2), max 0.8. Students (0.75, 0.25) both.
    a = torch.tensor([[0.0, 0.0], [math.log(4.0), 0.0]])
    b = torch.tensor([[math.log(3.0), 0.0], [math.log(3.0), 0.0]])
    kl1, kl2 = kl([0.5, 0.5], [0.75, 0.25]), kl([0.8, 0.2], [0.75, 0.25])
    assert consistency_loss(a, b).item() == pytest.approx((kl1 + kl2) / 2, rel=1e-5)
    assert consistency_loss(a, b, LossConfig(min_teacher_confidence=0.6)).item() == pytest.approx(kl2, rel=1e-5)  # row 1 dropped
    assert consistency_loss(a, b, LossConfig(min_teacher_confidence=0.9)).item() == 0.0  # nothing kept
    # The filter reads the teacher at temperature 1, the KL uses the temperature.
    t = 2.0
    p2 = [2 / 3, 1 / 3]  # softmax((log 4, 0) / 2)
    q2 = [math.sqrt(3) / (math.sqrt(3) + 1), 1 / (math.sqrt(3) + 1)]  # softmax((log 3, 0) / 2)
    assert consistency_loss(a, b, LossConfig(temperature=t, min_teacher_confidence=0.6)).item() == pytest.approx(kl(p2, q2), rel=1e-5)


def test_teacher_temperature_sharpens_only_the_targets_by_hand():
    a = torch.tensor([[math.log(2.0), 0.0]])  # teacher (2/3, 1/3); at T_a = 0.5: (4/5, 1/5)
    b = torch.tensor([[0.0, 0.0]])  # student (1/2, 1/2) at any temperature
    assert consistency_loss(a, b, LossConfig(teacher_temperature=0.5)).item() == pytest.approx(kl([0.8, 0.2], [0.5, 0.5]), rel=1e-5)
    assert consistency_loss(a, b, LossConfig(temperature=2.0, teacher_temperature=0.5)).item() == pytest.approx(
        kl([0.8, 0.2], [0.5, 0.5]), rel=1e-5)
    assert consistency_loss(a, b).item() == pytest.approx(kl([2 / 3, 1 / 3], [0.5, 0.5]), rel=1e-5)


def test_frozen_teacher_pairs_carry_fixed_logits_and_one_side():
    pool = {lang: [{"input_ids": [0, 5 + i, 2], "labels": 1} for i in range(3)] for lang in ("en", "fr")}
    teacher = {"en": np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]], dtype=np.float32),
               "fr": np.zeros((3, 2), dtype=np.float32)}
    ds = PairDataset(pool, [("en", "fr")], seed=0, teacher_logits=teacher)
    for k in range(3):
        ex = ds[k]
        i = ds.index[k][2]
        assert "a" not in ex and ex["teacher_logits"] == teacher["en"][i].tolist() and "labels" not in ex["b"]
    batch = PairCollator(pad_token_id=1, frozen_teacher=True)([ds[k] for k in range(3)])
    assert batch["input_ids"].shape[0] == 3 and batch["teacher_logits"].shape == (3, 2)


def test_self_anchor_rows_carry_their_own_fixed_targets_without_labels():
    """`anchor_logits` (--anchor_target self): example k carries anchor row j = anchor_order[k mod 3], labels
    stripped, with row j of the targets; the collator stacks those targets (B, C). Label anchors keep labels."""
    pool = {lang: [{"input_ids": [0, 5 + i, 2], "labels": 1} for i in range(4)] for lang in ("en", "fr")}
    teacher = {lang: np.zeros((4, 3), dtype=np.float32) for lang in ("en", "fr")}
    anchors = [{"input_ids": [0, 20 + j], "labels": j % 3} for j in range(3)]
    targets = np.array([[2.0, 0.5, -1.0], [0.0, 1.5, 0.25], [-0.5, 0.0, 3.0]], dtype=np.float32)
    ds = PairDataset(pool, [("en", "fr")], seed=3, teacher_logits=teacher, anchor_features=anchors,
                     anchor_logits=targets)
    assert sorted(ds.anchor_order) == [0, 1, 2]
    for k in range(4):
        j = ds.anchor_order[k % 3]
        ex = ds[k]
        assert ex["anchor"] == {"input_ids": [0, 20 + j]} and ex["anchor_logits"] == targets[j].tolist()
    collate = ds.collator(pad_token_id=1)
    assert (collate.frozen_teacher, collate.anchors, collate.anchor_targets) == (True, True, True)
    batch = collate([ds[k] for k in range(4)])
    expected = torch.from_numpy(np.stack([targets[ds.anchor_order[k % 3]] for k in range(4)]))
    assert torch.equal(batch["anchor_logits"], expected) and "labels" not in batch["anchor"]
    assert batch["anchor"]["input_ids"][:, 1].tolist() == [20 + ds.anchor_order[k % 3] for k in range(4)]
    # Label anchors (no targets): the rows keep their labels and no target is collated.
    plain = PairDataset(pool, [("en", "fr")], seed=3, teacher_logits=teacher, anchor_features=anchors)
    assert "anchor_logits" not in plain[0] and plain[0]["anchor"]["labels"] == plain.anchor_order[0] % 3
    assert plain.collator(pad_token_id=1).anchor_targets is False
    assert "anchor_logits" not in plain.collator(pad_token_id=1)([plain[0], plain[1]])
    # Targets must match the anchor rows one to one.
    for bad_anchors, bad_targets in ((anchors, targets[:2]), (None, targets), ([], targets)):
        with pytest.raises(ValueError, match="^anchor_logits needs one row per anchor feature$"):
            PairDataset(pool, [("en", "fr")], seed=3, teacher_logits=teacher, anchor_features=bad_anchors,
                        anchor_logits=bad_targets)


def test_source_features_are_one_row_per_pool_item_and_example_k_carries_its_items():
    pool = {lang: [{"input_ids": [0, i]} for i in range(3)] for lang in ("en", "fr")}
    features = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)  # (items, layers, H), every row different
    ds = PairDataset(pool, [("en", "fr")], seed=5, source_features=features)
    for k in range(len(ds)):
        _, _, i = ds.index[k]
        assert np.array_equal(ds[k]["source_features"], features[i]) and ds[k]["b"]["input_ids"] == [0, i]
    assert ds.collator(pad_token_id=1).source_features is True
    with pytest.raises(ValueError, match="^source_features has 2 rows for 3 pool items$"):
        PairDataset(pool, [("en", "fr")], seed=5, source_features=features[:2])


def test_pair_order_is_the_seeds():
    """The shuffled pair order and the anchor order follow the seed: equal for one seed, not for another."""
    pool = {lang: [{"input_ids": [0, i]} for i in range(40)] for lang in ("en", "fr", "de")}
    anchors = [{"input_ids": [0, j], "labels": 0} for j in range(12)]
    pairs = [("en", "fr"), ("en", "de")]
    one, again, other = (PairDataset(pool, pairs, seed=s, anchor_features=anchors) for s in (7, 7, 8))
    assert one.index == again.index and one.anchor_order == again.anchor_order
    assert one.index != other.index and one.anchor_order != other.anchor_order


class Linear(torch.nn.Module):
    """Stands in for a classifier: class logits = the first input id's row of a weight table."""

    config = type("Config", (), {"is_encoder_decoder": False})()

    def __init__(self):
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [0.0, math.log(3.0)]]))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return type("Out", (), {"logits": self.table[input_ids[:, 0]]})()


def test_pair_loss_frozen_teacher_and_anchor_by_hand():
    model = Linear()
    collate = PairCollator(pad_token_id=9, frozen_teacher=True, anchors=True)
    # Two pairs: students are ids 1 -> (3/4, 1/4) and 0 -> (1/2, 1/2); frozen teacher logits given.
    # Anchor rows: id 1 with label 0 (p = 3/4), id 2 with label 0 (p = 1/4).
    examples = [{"b": {"input_ids": [1]}, "teacher_logits": [0.0, 0.0], "anchor": {"input_ids": [1], "labels": 0}},
                {"b": {"input_ids": [0]}, "teacher_logits": [math.log(4.0), 0.0],
                 "anchor": {"input_ids": [2], "labels": 0}}]
    batch = collate(examples)
    consistency = (kl([0.5, 0.5], [0.75, 0.25]) + kl([0.8, 0.2], [0.5, 0.5])) / 2
    anchor = (-math.log(0.75) - math.log(0.25)) / 2
    loss, student = pair_loss(model, batch)
    assert loss.item() == pytest.approx(consistency, rel=1e-5)  # anchor weight 0: the anchor rows are ignored
    loss, _ = pair_loss(model, batch, LossConfig(anchor_weight=0.5))
    assert loss.item() == pytest.approx(consistency + 0.5 * anchor, rel=1e-5)
    assert student.shape == (2, 2)
    loss.backward()
    assert model.table.grad.abs().sum() > 0  # the student and anchor rows learn; the teacher is a constant


def test_pair_loss_self_anchor_by_hand():
    """--anchor_target self: the anchor rows' loss is KL(start || model) on them, not a cross-entropy."""
    model = Linear()
    collate = PairCollator(pad_token_id=9, frozen_teacher=True, anchors=True, anchor_targets=True)
    # Anchor rows: id 1 (model 3/4, 1/4) with start logits (log 4, 0) -> (4/5, 1/5); id 2 (model 1/4, 3/4)
    # with start (0, log 2) -> (1/3, 2/3).
    examples = [{"b": {"input_ids": [1]}, "teacher_logits": [0.0, 0.0], "anchor": {"input_ids": [1]},
                 "anchor_logits": [math.log(4.0), 0.0]},
                {"b": {"input_ids": [0]}, "teacher_logits": [math.log(4.0), 0.0], "anchor": {"input_ids": [2]},
                 "anchor_logits": [0.0, math.log(2.0)]}]
    batch = collate(examples)
    assert batch["anchor_logits"].shape == (2, 2)
    consistency = (kl([0.5, 0.5], [0.75, 0.25]) + kl([0.8, 0.2], [0.5, 0.5])) / 2
    anchor = (kl([0.8, 0.2], [0.75, 0.25]) + kl([1 / 3, 2 / 3], [0.25, 0.75])) / 2
    loss, _ = pair_loss(model, batch, LossConfig(anchor_weight=0.5))
    assert loss.item() == pytest.approx(consistency + 0.5 * anchor, rel=1e-5)
    loss, _ = pair_loss(model, batch)
    assert loss.item() == pytest.approx(consistency, rel=1e-5)  # anchor weight 0: the anchor rows are ignored


def test_feature_anchor_loss_by_hand(tiny_mlm):
    """Two anchor rows, the second padded. Only token 6's embedding (in row 0) is moved, and not by a constant
    (LayerNorm would remove a constant shift), so row 1's hidden states stay and row 0's move: the loss is the
    squared change over row 0's tokens, summed over layers' units, divided by the 6 real tokens (not 8
    positions) x the hidden size, averaged over the layers."""
    import copy

    from transformers import AutoModelForMaskedLM

    from alsace.losses import feature_anchor_loss
    from alsace.scoring import as_scorer

    start = AutoModelForMaskedLM.from_pretrained(tiny_mlm)
    assert start.config.hidden_dropout_prob > 0  # a train-mode forward would differ from the reference
    model, reference = copy.deepcopy(start).train(), copy.deepcopy(start).eval().requires_grad_(False)
    pad = start.config.pad_token_id
    rows = {"input_ids": torch.tensor([[5, 6, 7, 8], [9, 10, pad, pad]]),
            "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]), "labels": torch.tensor([0, 1])}
    assert feature_anchor_loss(as_scorer(model), reference, rows).item() == 0.0
    with torch.no_grad():
        hidden = start.config.hidden_size
        model.get_input_embeddings().weight[6] += torch.linspace(-1.0, 0.5, hidden)
    loss = feature_anchor_loss(as_scorer(model), reference, rows)
    assert model.training  # the mode it had

    def states(m, ids):  # one row alone, no padding: (layers, tokens, hidden)
        with torch.no_grad():
            return torch.stack(m.eval()(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states)[:, 0]

    moved, still = states(copy.deepcopy(model), [5, 6, 7, 8]), states(reference, [5, 6, 7, 8])
    layers = moved.shape[0]
    assert torch.allclose(states(copy.deepcopy(model), [9, 10]), states(reference, [9, 10]))
    expected = sum(((moved[i] - still[i]) ** 2).sum().item() / (6 * hidden) for i in range(layers)) / layers
    assert expected > 1e-3  # a real move, far above float noise
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    loss.backward()
    assert model.get_input_embeddings().weight.grad[6].abs().sum() > 0
    assert all(p.grad is None for p in reference.parameters())


def test_feature_anchor_loss_of_an_encoder_decoder_holds_its_encoder(tmp_path_factory):
    """mT5-style models: the encoder's hidden states (its embeddings' output and every encoder layer), the
    decoder is never run; the model is passed bare, as well as wrapped."""
    import copy

    from transformers import AutoModelForSeq2SeqLM

    from alsace.losses import feature_anchor_loss
    from alsace.scoring import as_scorer
    from taskdata import tiny_model

    start = AutoModelForSeq2SeqLM.from_pretrained(tiny_model("t5", tmp_path_factory))
    model, reference = copy.deepcopy(start).train(), copy.deepcopy(start).eval().requires_grad_(False)
    hidden = start.config.d_model
    with torch.no_grad():
        model.get_input_embeddings().weight[7] += torch.linspace(-1.0, 0.5, hidden)
    rows = {"input_ids": torch.tensor([[5, 7, 9], [6, 8, 0]]), "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]])}

    def states(m):  # (layers, rows, tokens, hidden) of the encoder alone
        with torch.no_grad():
            return torch.stack(m.eval().get_encoder()(**rows, output_hidden_states=True).hidden_states)

    diff = (states(copy.deepcopy(model)) - states(reference)) ** 2 * rows["attention_mask"][None, :, :, None]
    expected = (diff.sum((1, 2, 3)) / (5 * hidden)).mean().item()
    assert expected > 1e-3
    assert feature_anchor_loss(as_scorer(model), reference, rows).item() == pytest.approx(expected, rel=1e-4)
    assert feature_anchor_loss(model, reference, rows).item() == pytest.approx(expected, rel=1e-4)
    assert model.training


def test_pair_loss_adds_the_weighted_feature_anchor_of_the_anchor_rows(monkeypatch):
    import alsace.losses

    seen = []

    def fake(model, reference, rows):
        seen.append((reference, rows["input_ids"].tolist()))
        return torch.tensor(0.3)

    monkeypatch.setattr(alsace.losses, "feature_anchor_loss", fake)
    model, reference = Linear(), object()
    collate = PairCollator(pad_token_id=9, frozen_teacher=True, anchors=True, anchor_targets=True)
    batch = collate([{"b": {"input_ids": [1]}, "teacher_logits": [0.0, 0.0], "anchor": {"input_ids": [2]},
                      "anchor_logits": [math.log(4.0), 0.0]}])
    with_anchor, _ = pair_loss(model, batch, LossConfig(anchor_weight=0.5))
    both, _ = pair_loss(model, batch, LossConfig(anchor_weight=0.5, anchor_features_weight=2.0), reference=reference)
    assert both.item() == pytest.approx(with_anchor.item() + 2.0 * 0.3, rel=1e-6)
    assert seen == [(reference, [[2]])]  # the anchor rows, not the pair's student side
    small, _ = pair_loss(model, batch, LossConfig(anchor_weight=0.5, anchor_features_weight=0.25), reference=reference)
    assert small.item() == pytest.approx(with_anchor.item() + 0.25 * 0.3, rel=1e-6)  # any weight > 0, not only > 1
    with pytest.raises(ValueError, match="needs the frozen starting model"):
        pair_loss(model, batch, LossConfig(anchor_weight=0.5, anchor_features_weight=2.0))


class Encoder(torch.nn.Module):
    """Stands in for an encoder classifier with two hidden-state layers: the embeddings e = `emb[id]`, then 2e + 1;
    class logits = the first input id's row of `Linear`'s table."""

    config = type("Config", (), {"is_encoder_decoder": False})()

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Parameter(torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, -1.0], [5.0, 5.0]]))
        self.table = Linear().table

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, output_hidden_states=False):
        e = self.emb[input_ids]  # (B, L, 2)
        hidden = (e, 2 * e + 1) if output_hidden_states else None
        return type("Out", (), {"logits": self.table[input_ids[:, 0]], "hidden_states": hidden})()


def test_source_alignment_loss_by_hand():
    """Student rows [1, 2] and [2] (padded with id 3, whose embedding (5, 5) must not count). Pooled states:
    row 1 layer 0 ((1, 2) + (3, -1)) / 2 = (2, 0.5), layer 1 (5, 2); row 2 (3, -1) and (7, -1). Against the
    source features [(2, 1), (5, 2)] and [(3, -1), (6, 1)] the squared differences are 0.25 (row 1, layer 0) and
    1 + 4 (row 2, layer 1): 5.25 over 2 rows x 2 layers x 2 units = 0.65625."""
    from alsace.losses import pooled_hidden_states, source_alignment_loss

    model = Encoder()
    source = [[[2.0, 1.0], [5.0, 2.0]], [[3.0, -1.0], [6.0, 1.0]]]
    examples = [{"b": {"input_ids": [1, 2]}, "teacher_logits": [0.0, 0.0], "source_features": np.array(source[0])},
                {"b": {"input_ids": [2]}, "teacher_logits": [math.log(4.0), 0.0], "source_features": np.array(source[1])}]
    batch = PairCollator(pad_token_id=3, frozen_teacher=True, source_features=True)(examples)
    assert batch["source_features"].dtype == torch.float32 and batch["source_features"].shape == (2, 2, 2)
    out = model(batch["input_ids"], output_hidden_states=True)
    pooled = pooled_hidden_states(out.hidden_states, batch["attention_mask"])
    assert pooled.tolist() == [[[2.0, 0.5], [5.0, 2.0]], [[3.0, -1.0], [7.0, -1.0]]]
    assert source_alignment_loss(pooled, batch["source_features"]).item() == pytest.approx(0.65625)
    consistency = (kl([0.5, 0.5], [0.75, 0.25]) + kl([0.8, 0.2], [0.25, 0.75])) / 2
    plain = PairCollator(pad_token_id=3, frozen_teacher=True)(examples)  # the same batch without the features
    assert "source_features" not in plain
    off, student = pair_loss(model, plain)
    assert off.item() == pytest.approx(consistency, rel=1e-5)
    for weight in (0.5, 2.0):  # the weight multiplies the alignment term, and only it
        loss, same = pair_loss(model, batch, LossConfig(source_alignment_weight=weight))
        assert loss.item() == pytest.approx(consistency + weight * 0.65625, rel=1e-5)
        assert torch.equal(same, student)
    loss.backward()  # the gradient reaches the embeddings through the pooled states
    assert model.emb.grad[1].abs().sum() > 0 and model.emb.grad[3].abs().sum() == 0  # not the padding's row
    with pytest.raises(ValueError, match="needs the batch's source_features"):
        pair_loss(model, plain, LossConfig(source_alignment_weight=1.0))


def test_source_alignment_of_an_online_pair_batch_reads_the_lower_ranked_sides():
    """Both sides in one forward pass (no frozen teacher): the alignment is of the B lower-ranked rows (the
    second half), not of the teacher sides [0] and [0], whose pooled states are (0, 0) and (1, 1)."""
    model = Encoder()
    source = np.array([[[2.0, 1.0], [5.0, 2.0]], [[3.0, -1.0], [6.0, 1.0]]])
    examples = [{"a": {"input_ids": [0]}, "b": {"input_ids": [1, 2]}, "source_features": source[0]},
                {"a": {"input_ids": [0]}, "b": {"input_ids": [2]}, "source_features": source[1]}]
    batch = PairCollator(pad_token_id=3, source_features=True)(examples)
    consistency = (kl([0.5, 0.5], [0.75, 0.25]) + kl([0.5, 0.5], [0.25, 0.75])) / 2
    loss, _ = pair_loss(model, batch, LossConfig(source_alignment_weight=1.0))
    assert loss.item() == pytest.approx(consistency + 0.65625, rel=1e-5)


def test_feature_anchor_flag_is_checked(tmp_path):
    base = ["--model_name_or_path", "unused", "--output_dir", str(tmp_path / "o")]
    with pytest.raises(UserError, match=r"--anchor_features_weight -1.0: must be >= 0"):
        distill.main(base + ["--anchor_features_weight", "-1", "--anchor_weight", "1"])
    with pytest.raises(UserError, match=r"--anchor_features_weight 2.0 holds the hidden states of the anchor rows, "
                                        r"which --anchor_weight > 0 brings"):
        distill.main(base + ["--anchor_features_weight", "2"])
    assert not (tmp_path / "o").exists()


def test_online_pair_loss_unchanged_by_the_extensions_when_off():
    model = Linear()
    batch = PairCollator(pad_token_id=9)([{"a": {"input_ids": [0]}, "b": {"input_ids": [1]}}])
    loss, _ = pair_loss(model, batch)
    assert loss.item() == pytest.approx(kl([0.5, 0.5], [0.75, 0.25]), rel=1e-5)


@pytest.mark.parametrize("flag,value,message", [
    ("--anchor_weight", "-1", "--anchor_weight"),
    ("--min_teacher_confidence", "1.5", "--min_teacher_confidence"),
    ("--teacher_temperature", "0", "--teacher_temperature"),
    ("--anchor_target", "gold", "--anchor_target 'gold': choose labels or self"),
    ("--source_alignment_weight", "-1", "--source_alignment_weight -1.0: must be >= 0"),
])
def test_bad_extension_values_fail_before_work(flag, value, message, tmp_path):
    with pytest.raises(UserError, match=message):
        distill.main(["--model_name_or_path", "unused", "--output_dir", str(tmp_path / "o"), flag, value])
    assert not (tmp_path / "o").exists()


def test_extension_flags_reach_the_loss(tiny_finetuned, data_dir, tmp_path, monkeypatch):
    """distill.main with every extension on: the trainer's loss sees them (recorded, then trained)."""
    import alsace.trainer

    seen = []
    real = alsace.trainer.pair_loss

    def spy(model, inputs, *args, **kwargs):
        seen.append((sorted(inputs), args, kwargs))
        return real(model, inputs, *args, **kwargs)

    monkeypatch.setattr(alsace.trainer, "pair_loss", spy)
    out = tmp_path / "kd"
    distill.main(run_argv(tiny_finetuned, data_dir, out, task="xnli", languages="en,fr,de", max_seq_length=96,
                          use_cpu=True, report_to="none", max_steps=2, per_device_train_batch_size=4,
                          learning_rate="1e-4", pool_size=8, save_strategy="no", frozen_teacher=True,
                          anchor_weight="0.25", min_teacher_confidence="0.3", temperature="2.0",
                          kl_direction="symmetric", teacher_temperature="0.5", anchor_features_weight="1.5",
                          source_alignment_weight="0.75"))
    keys, args, kwargs = seen[0]
    assert {"teacher_logits", "anchor", "num_pairs", "source_features"} <= set(keys)
    assert args == (LossConfig(kl_direction="symmetric", detach_teacher=False, temperature=2.0, min_teacher_confidence=0.3,
                               anchor_weight=0.25, teacher_temperature=0.5, anchor_features_weight=1.5,
                               source_alignment_weight=0.75),)  # every value its own: a swap shows
    assert kwargs["reference"] is not None
    run_args = json.loads((out / "run_args.json").read_text())["distill_args"]
    assert run_args["frozen_teacher"] is True and run_args["anchor_weight"] == 0.25


def test_source_alignment_refuses_an_encoder_decoder_before_any_work(data_dir, tmp_path, tmp_path_factory):
    from taskdata import tiny_model

    out = tmp_path / "kd"
    argv = run_argv(tiny_model("t5", tmp_path_factory), data_dir, out, task="xnli", languages="en,fr",
                    head="prompt", use_cpu=True, report_to="none", max_steps=1, pool_size=8,
                    allow_untuned_checkpoint="true", source_alignment_weight="1")
    with pytest.raises(UserError, match=r"--source_alignment_weight aligns an encoder's hidden states: .* is an "
                                        r"encoder-decoder model"):
        distill.main(argv)
    assert not out.exists()
