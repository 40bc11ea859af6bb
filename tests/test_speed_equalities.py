"""The equalities our speed relies on: every shortcut computes the same numbers as the slow way.

No timings here (see src/benchmark.py); only fp32 values and gradients, compared at tight tolerance:
- length-sorted batched evaluation == scoring each example alone, in file order;
- the restricted LM head (mask position, label rows) == the stock masked-LM logits there
  (XLM-R and BERT shapes), and the full vocabulary at the mask == stock logits at the mask, with the
  same loss and gradients as the stock masked-LM loss;
- the stacked distillation step (one forward of 2B) == two passes, loss and gradients;
- cached tokenisation == fresh tokenisation, and the cache key changes with what the features depend on.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, XLMRobertaConfig, XLMRobertaForMaskedLM

from alsace.data import load_split
from alsace.evaluation import predict_logits
from alsace.features import Collator, Featurizer, encode_cached, features_fingerprint, split_features
from alsace.losses import LossConfig, consistency_loss, pair_loss, supervised_loss
from alsace.pairs import PairCollator
from alsace.modeling import load_tokenizer_and_model
from alsace.scoring import class_logits
from alsace.tasks import get_task
from conftest import encode_rows

TIGHT = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def setup(tiny_mlm, data_dir):
    """Tiny XLM-R-shaped model (dropout off), its featurizer and XNLI-layout rows."""
    task = get_task("xnli")
    tokenizer, model = load_tokenizer_and_model(str(tiny_mlm), "prompt", task, num_placeholder_tokens=6)
    model.eval()
    featurizer = Featurizer(tokenizer, task, "prompt", max_length=64, num_placeholder_tokens=6)
    return task, featurizer, model, Collator(tokenizer.pad_token_id)


def _features(setup, data_dir, lang="en", split="test"):
    task, featurizer, _, _ = setup
    return encode_rows(featurizer, load_split(task, split, lang, str(data_dir)), lang)


def test_sorted_evaluation_equals_one_by_one_in_file_order(setup, data_dir):
    _, _, model, collator = setup
    features = _features(setup, data_dir, "en") + _features(setup, data_dir, "fr")
    lengths = [len(f["input_ids"]) for f in features]
    assert lengths != sorted(lengths), "the fixture must exercise the reordering"
    sorted_logits = predict_logits(model, features, collator, batch_size=7, device="cpu")  # (N, C)
    with torch.no_grad():  # no padding, no sorting: the reference
        alone = np.concatenate([class_logits(model, collator([f])).numpy() for f in features])
    np.testing.assert_allclose(sorted_logits, alone, **TIGHT)


def _stock_model(family: str):
    torch.manual_seed(0)
    size = dict(vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=66, pad_token_id=1)
    model = XLMRobertaForMaskedLM(XLMRobertaConfig(**size)) if family == "xlm-roberta" else \
        BertForMaskedLM(BertConfig(**size))
    with torch.no_grad():  # initial biases are 0 and LayerNorm 1/0: perturb so that dropping one shows
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _random_batch(lengths, vocab=500, num_classes=3, seed=0):
    """A padded batch (pad id 1) with the mask 3 tokens before each end and per-example label ids."""
    rng = np.random.default_rng(seed)
    features = [{"input_ids": rng.integers(5, vocab, n).tolist(), "mask_pos": n - 3,
                 "label_token_ids": rng.choice(np.arange(5, vocab), num_classes, replace=False).tolist(),
                 "labels": int(rng.integers(num_classes))} for n in lengths]
    return Collator(pad_token_id=1)(features)


@pytest.mark.parametrize("family", ["xlm-roberta", "bert"])
def test_restricted_head_equals_stock_logits_at_label_rows(family):
    model = _stock_model(family)
    batch = _random_batch([9, 14, 6, 11])
    rows = torch.arange(4)
    with torch.no_grad():
        stock = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, L, V)
        expected = stock[rows, batch["mask_pos"]].gather(1, batch["label_token_ids"])  # (B, C)
        cls, vocab = class_logits(model, batch, return_vocab=True)
        torch.testing.assert_close(class_logits(model, batch), expected, **TIGHT)
        torch.testing.assert_close(cls, expected, **TIGHT)
        torch.testing.assert_close(vocab, stock[rows, batch["mask_pos"]], **TIGHT)  # (B, V)


@pytest.mark.parametrize("family", ["xlm-roberta", "bert"])
def test_full_vocab_loss_at_mask_equals_stock_masked_lm_loss(family):
    """Same loss and same gradients as the stock MLM loss with every position but the mask ignored."""
    batch = _random_batch([9, 14, 6, 11], seed=1)
    ours_model, stock_model = _stock_model(family), _stock_model(family)
    loss, _ = supervised_loss(ours_model, batch, "full_vocab")
    loss.backward()
    gold = batch["label_token_ids"].gather(1, batch["labels"][:, None]).squeeze(1)  # (B,)
    mlm_labels = torch.full_like(batch["input_ids"], -100)
    mlm_labels[torch.arange(4), batch["mask_pos"]] = gold
    stock_loss = stock_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             labels=mlm_labels).loss
    stock_loss.backward()
    torch.testing.assert_close(loss, stock_loss, **TIGHT)
    for (name, p), q in zip(ours_model.named_parameters(), stock_model.parameters()):
        torch.testing.assert_close(p.grad, q.grad, **TIGHT, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("direction,detach", [("teacher_target", False), ("symmetric", True)])
def test_stacked_distillation_step_equals_two_passes(setup, data_dir, direction, detach):
    _, _, model, collator = setup
    a_side, b_side = _features(setup, data_dir, "en")[:6], _features(setup, data_dir, "de")[:6]
    strip = lambda f: {k: v for k, v in f.items() if k != "labels"}  # noqa: E731
    pairs = [{"a": strip(a), "b": strip(b)} for a, b in zip(a_side, b_side)]

    def grads():
        out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
        return out

    model.zero_grad(set_to_none=True)
    config = LossConfig(kl_direction=direction, detach_teacher=detach)
    stacked, _ = pair_loss(model, PairCollator(collator.pad_token_id)(pairs), config)  # one (2B, L) forward
    stacked.backward()
    stacked_grads = grads()
    logits_a = class_logits(model, collator([p["a"] for p in pairs]))  # (B, C)
    logits_b = class_logits(model, collator([p["b"] for p in pairs]))  # (B, C)
    two_pass = consistency_loss(logits_a, logits_b, config)
    two_pass.backward()
    two_pass_grads = grads()
    torch.testing.assert_close(stacked, two_pass, **TIGHT)
    assert stacked_grads.keys() == two_pass_grads.keys() and stacked_grads
    for name, grad in stacked_grads.items():
        torch.testing.assert_close(grad, two_pass_grads[name], rtol=1e-4, atol=1e-6,
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_bf16_evaluation_gives_float32_close_to_fp32(setup, data_dir):
    _, _, model, collator = setup
    features = _features(setup, data_dir, "en")
    fp32 = predict_logits(model, features, collator, batch_size=8, device="cpu")
    bf16 = predict_logits(model, features, collator, batch_size=8, device="cpu", bf16=True)
    assert bf16.dtype == np.float32 and np.isfinite(bf16).all()
    assert not np.array_equal(bf16, fp32), "bf16 autocast was not applied"
    np.testing.assert_allclose(bf16, fp32, atol=0.05 * np.abs(fp32).max())


def test_cached_tokenisation_equals_fresh(setup, data_dir, tmp_path):
    task, featurizer, _, _ = setup
    rows = load_split(task, "test", "fr", str(data_dir))
    fresh = encode_rows(featurizer, rows, "fr")
    first = encode_cached(featurizer, rows, "fr", tmp_path)  # tokenises and writes the Arrow file
    files = list(tmp_path.rglob("*.arrow"))
    assert len(files) == 1
    assert first.to_list() == fresh

    def refuse(row, lang):
        raise AssertionError("re-tokenised although cached")

    refusing = copy.copy(featurizer)  # same settings, so the same key; a cache hit must not tokenise
    refusing.encode_row = refuse
    assert encode_cached(refusing, rows, "fr", tmp_path).to_list() == fresh
    by_split = split_features(task, featurizer, str(data_dir), "test", ["en", "fr"], cache_dir=str(tmp_path))
    assert by_split["fr"] == fresh and by_split["en"] == encode_rows(featurizer, load_split(task, "test", "en",
                                                                                      str(data_dir)), "en")


def test_cache_key_changes_with_what_features_depend_on(setup, data_dir):
    task, featurizer, _, _ = setup
    rows = load_split(task, "test", "en", str(data_dir))
    key = features_fingerprint(featurizer, rows, "en")
    edited = [dict(rows[0], premise=rows[0]["premise"] + " x")] + rows[1:]
    others = [
        features_fingerprint(featurizer, edited, "en"),  # file contents
        features_fingerprint(featurizer, rows, "fr"),  # language (its label words)
        features_fingerprint(Featurizer(featurizer.tokenizer, task, "prompt", 32, 6), rows, "en"),  # max length
        features_fingerprint(Featurizer(featurizer.tokenizer, task, "prompt", 64, 0), rows, "en"),  # placeholders
        features_fingerprint(Featurizer(featurizer.tokenizer, get_task("pawsx"), "classification", 64, 6),
                             [{"sentence1": "a", "sentence2": "b", "label": 0}], "en"),  # task and head
    ]
    tokenizer = copy.deepcopy(featurizer.tokenizer)
    tokenizer.add_tokens(["zzzq"])
    others.append(features_fingerprint(Featurizer(tokenizer, task, "prompt", 64, 6), rows, "en"))  # tokenizer
    assert key == features_fingerprint(Featurizer(featurizer.tokenizer, task, "prompt", 64, 6), rows, "en")
    assert len(set(others + [key])) == len(others) + 1


# Every feature shape the featurizer makes: multiple choice (with token type ids), candidate answers
# (nested per-candidate inputs with empty "absent" slots), seq2seq candidates (decoder prefix).
SHAPES = [("xcopa", "xlm-roberta", "prompt", "it"), ("xcopa", "bert", "classification", "tr"),
          ("pawsx", "bert", "classification", "de"), ("geomlama", "xlm-roberta", "prompt", "sw"),
          ("geomlama", "t5", "prompt", "zh")]


@pytest.mark.parametrize("task_name, family, head, lang", SHAPES)
def test_cached_tokenisation_equals_fresh_for_every_feature_shape(task_name, family, head, lang, tmp_path,
                                                                  tmp_path_factory):
    from taskdata import tiny_model, write_geomlama_like, write_pawsx_like, write_xcopa_like

    write_xcopa_like(tmp_path, {"test": 5})
    write_pawsx_like(tmp_path, {"test": 5})
    write_geomlama_like(tmp_path, n=6)
    task = get_task(task_name)
    tokenizer, model = load_tokenizer_and_model(str(tiny_model(family, tmp_path_factory)), head, task,
                                                task.num_placeholder_tokens)
    featurizer = Featurizer(tokenizer, task, head, 96, task.num_placeholder_tokens,
                            is_seq2seq=model.config.is_encoder_decoder)
    rows = load_split(task, "test", lang, str(tmp_path))
    cached = encode_cached(featurizer, rows, lang, tmp_path / "cache").to_list()
    assert cached == encode_rows(featurizer, rows, lang)
    assert encode_cached(featurizer, rows, lang, tmp_path / "cache").to_list() == cached  # from the file
