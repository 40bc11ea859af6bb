"""class_logits across model families (XLM-R, mBERT, mDeBERTa-v3, mT5) and task shapes, on tiny models.

Every number is checked against the stock model's own forward pass, computed here by hand.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForMaskedLM, DebertaV2Config, DebertaV2ForMaskedLM

from alsace.errors import UserError
from alsace.features import Collator, Featurizer
from alsace.modeling import _load_masked_lm, load_tokenizer_and_model
from alsace.prompts import word_pieces
from alsace.scoring import NO_CANDIDATE, class_logits, mlm_head_parts
from alsace.tasks import Task, get_task
from conftest import WORDS, encode_rows
from taskdata import one_cpu_thread, tiny_model

MLM_FAMILIES = ("xlm-roberta", "bert", "deberta-v2")
XCOPA_ROW = {"premise": "the cat sat", "question": "cause", "choice1": "a dog ran", "choice2": "the red mat",
             "label": 1}
XNLI_ROWS = [{"premise": "the cat sat on the mat", "hypothesis": "a dog ran", "label": 0},
             {"premise": "big red park", "hypothesis": "the cat", "label": 2}]


@pytest.fixture(autouse=True, scope="module")
def _one_cpu_thread():
    with one_cpu_thread():
        yield


def load(family, tmp_path_factory, task_name: str, head: str = "prompt"):
    task = get_task(task_name)
    tok, model = load_tokenizer_and_model(str(tiny_model(family, tmp_path_factory)), head, task,
                                          task.num_placeholder_tokens)
    featurizer = Featurizer(tok, task, head, 96, task.num_placeholder_tokens,
                            is_seq2seq=model.config.is_encoder_decoder)
    return tok, model.eval(), featurizer


def batch_of(featurizer, rows, lang="en"):
    return Collator(featurizer.tokenizer.pad_token_id)(encode_rows(featurizer, rows, lang))


# ---------------------------------------------------------------------------------------------------
# Prompt head on masked LMs: each tokenizer's own mask; restricted head == stock logits
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", MLM_FAMILIES)
def test_xcopa_prompt_renders_with_the_tokenizers_own_mask(family, tmp_path_factory):
    tok, _, featurizer = load(family, tmp_path_factory, "xcopa")
    feats = featurizer.encode_row(XCOPA_ROW, "it")
    ids = feats["input_ids"]
    assert ids.count(tok.mask_token_id) == 1 and ids[feats["mask_pos"]] == tok.mask_token_id
    text = tok.decode(ids)
    assert "What was the cause?" in text.replace(" ?", "?") and "Option 2:" in text.replace(" :", ":")
    assert feats["label_token_ids"] == [word_pieces(tok, "1")[0], word_pieces(tok, "2")[0]]


@pytest.mark.parametrize("family", MLM_FAMILIES)
def test_prompt_head_equals_stock_masked_lm_logits(family, tmp_path_factory):
    # XNLI adds six `歌` placeholders, which grows the vocabulary of these tiny tokenizers: the
    # restricted head must still equal the stock logits afterwards (DeBERTa's non-legacy head included).
    _, model, featurizer = load(family, tmp_path_factory, "xnli")
    batch = batch_of(featurizer, XNLI_ROWS)
    with torch.no_grad():
        ours = class_logits(model, batch)  # (B, 3)
        stock = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, L, V)
    rows = torch.arange(len(XNLI_ROWS))
    expected = stock[rows, batch["mask_pos"]].gather(1, batch["label_token_ids"])
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_deberta_legacy_head_parts_equal_stock_logits():
    config = DebertaV2Config(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32, legacy=True)
    torch.manual_seed(0)
    model = DebertaV2ForMaskedLM(config).eval()
    hidden = torch.randn(3, 16)
    transform, weight, bias = mlm_head_parts(model)
    with torch.no_grad():
        torch.testing.assert_close(F.linear(transform(hidden), weight, bias), model.cls(hidden))


def test_deberta_checkpoint_with_the_non_legacy_head_loads_it(tmp_path_factory, tmp_path):
    # mDeBERTa-v3 on the Hub: the weights are `lm_predictions.*` but config.json has no `legacy`, so
    # transformers would build the legacy head at random. The loader must notice and flip `legacy`.
    src = tiny_model("deberta-v2", tmp_path_factory)
    for f in src.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    config = json.loads((tmp_path / "config.json").read_text())
    del config["legacy"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    from transformers import AutoConfig

    loaded = _load_masked_lm(str(tmp_path), AutoConfig.from_pretrained(tmp_path), {})
    reference = AutoModelForMaskedLM.from_pretrained(src)
    assert hasattr(loaded, "lm_predictions")
    torch.testing.assert_close(loaded.lm_predictions.lm_head.dense.weight, reference.lm_predictions.lm_head.dense.weight)


def test_label_words_colliding_on_first_piece_fail_at_start_up(tmp_path_factory):
    tok, _, _ = load("xlm-roberta", tmp_path_factory, "xcopa")
    base = get_task("xcopa")
    clash = Task(**{**base.__dict__, "name": "clash", "label_words": {"en": ("cat", "cat dog")}})
    with pytest.raises(UserError, match="share their first sub-token"):
        Featurizer(tok, clash, "prompt", 96, 0)


# ---------------------------------------------------------------------------------------------------
# Seq2seq (mT5): no mask in the prompt, first decoder step, same loss as the LM's own
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_name", ["xnli", "xcopa"])
def test_seq2seq_class_logits_are_the_first_decoder_step(task_name, tmp_path_factory):
    tok, model, featurizer = load("t5", tmp_path_factory, task_name)
    rows = XNLI_ROWS if task_name == "xnli" else [XCOPA_ROW, {**XCOPA_ROW, "question": "effect", "label": 0}]
    batch = batch_of(featurizer, rows)
    assert "<extra_id_0>" not in tok.decode(batch["input_ids"][0])  # classification prompts carry no slot
    start = torch.full((len(rows), 1), model.config.decoder_start_token_id)
    with torch.no_grad():
        cls, vocab = class_logits(model, batch, return_vocab=True)
        stock = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      decoder_input_ids=start).logits[:, 0]  # (B, V)
        # Fine-tuning loss on the label word == the seq2seq LM's own loss with the label word as target.
        target = batch["label_token_ids"].gather(1, batch["labels"][:, None])  # (B, 1)
        lm_loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=target).loss
    torch.testing.assert_close(cls, stock.gather(1, batch["label_token_ids"]))
    torch.testing.assert_close(F.cross_entropy(vocab, target[:, 0]), lm_loss)


# ---------------------------------------------------------------------------------------------------
# Multiple choice (XCOPA classification head)
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", MLM_FAMILIES)
def test_xcopa_classification_head_is_multiple_choice(family, tmp_path_factory):
    tok, model, featurizer = load(family, tmp_path_factory, "xcopa", head="classification")
    assert type(model).__name__.endswith("ForMultipleChoice")
    batch = batch_of(featurizer, [XCOPA_ROW, {**XCOPA_ROW, "choice2": "big park"}])
    assert batch["input_ids"].shape[:2] == (2, 2)  # (B, choices, L)
    assert "the red mat" in tok.decode(batch["input_ids"][0, 1]) or family == "bert"
    assert ("token_type_ids" in batch) == (family == "bert")  # mBERT's second segment is marked
    with torch.no_grad():
        logits = class_logits(model, batch)
    assert logits.shape == (2, 2)
    torch.testing.assert_close(logits, model(**{k: batch[k] for k in batch if k != "labels"}).logits)


def test_seq2seq_has_no_multiple_choice_head(tmp_path_factory):
    with pytest.raises(UserError, match="no AutoModelForMultipleChoice head"):
        load("t5", tmp_path_factory, "xcopa", head="classification")


# ---------------------------------------------------------------------------------------------------
# GeoMLAMA candidates: as many masks as pieces, mean log-probability, no length leak
# ---------------------------------------------------------------------------------------------------

GEO_ROW = {"prompt": "the cat sat on the <mask> in the park.", "candidates": ["mat", "dog red big"], "label": 0}


def test_candidate_scores_match_a_hand_computation_on_a_masked_lm(tmp_path_factory):
    tok, model, featurizer = load("xlm-roberta", tmp_path_factory, "geomlama")
    by_length = {len(word_pieces(tok, w)): w for w in WORDS["en"]}
    row = {**GEO_ROW, "candidates": [by_length[1], by_length[3]]}
    one, three = (word_pieces(tok, c) for c in row["candidates"])
    assert len(one) == 1 and len(three) == 3  # the point of the test: 1 piece vs 3 pieces
    with torch.no_grad():
        scores = class_logits(model, batch_of(featurizer, [row]))[0]  # (K,)

    def by_hand(pieces):
        text = row["prompt"].replace("<mask>", tok.mask_token * len(pieces))
        enc = tok(text, return_tensors="pt")
        ids = enc["input_ids"][0].tolist()
        at = [i for i, t in enumerate(ids) if t == tok.mask_token_id]
        assert len(at) == len(pieces)
        with torch.no_grad():
            logp = model(**enc).logits[0].log_softmax(-1)  # (L, V)
        return sum(logp[p, piece].item() for p, piece in zip(at, pieces)) / len(pieces)

    assert scores[0].item() == pytest.approx(by_hand(one), abs=1e-4)
    assert scores[1].item() == pytest.approx(by_hand(three), abs=1e-4)
    assert (scores[2:] == NO_CANDIDATE).all() and scores.shape == (get_task("geomlama").num_labels,)


def test_a_candidates_score_does_not_depend_on_the_other_candidates(tmp_path_factory):
    _, model, featurizer = load("xlm-roberta", tmp_path_factory, "geomlama")
    rows = [GEO_ROW, {**GEO_ROW, "candidates": ["mat", "a"]}, {**GEO_ROW, "candidates": ["dog red big", "mat", "a"]}]
    with torch.no_grad():
        scores = class_logits(model, batch_of(featurizer, rows))  # (3, K), rows padded to the longest
    torch.testing.assert_close(scores[0, 0], scores[1, 0])
    torch.testing.assert_close(scores[0, 0], scores[2, 1])
    torch.testing.assert_close(scores[0, 1], scores[2, 0])


def test_candidate_scores_match_a_hand_computation_on_seq2seq(tmp_path_factory):
    tok, model, featurizer = load("t5", tmp_path_factory, "geomlama")
    batch = batch_of(featurizer, [GEO_ROW])
    sentinel = tok.convert_tokens_to_ids("<extra_id_0>")
    assert batch["input_ids"][0].tolist().count(sentinel) == 1  # the slot holds T5's sentinel
    with torch.no_grad():
        scores = class_logits(model, batch)[0]
    for k, candidate in enumerate(GEO_ROW["candidates"]):
        pieces = word_pieces(tok, candidate)
        decoder_input = [model.config.decoder_start_token_id, sentinel] + pieces[:-1]
        with torch.no_grad():
            logp = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         decoder_input_ids=torch.tensor([decoder_input])).logits[0].log_softmax(-1)
        expected = sum(logp[1 + j, p].item() for j, p in enumerate(pieces)) / len(pieces)
        assert scores[k].item() == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("family", ["bert", "deberta-v2"])
def test_candidate_scoring_shapes(family, tmp_path_factory):
    _, model, featurizer = load(family, tmp_path_factory, "geomlama")
    batch = batch_of(featurizer, [GEO_ROW, {**GEO_ROW, "candidates": ["cat", "dog", "park"], "label": 2}])
    k = get_task("geomlama").num_labels
    assert batch["input_ids"].shape[:2] == (2, k) and batch["candidate_token_ids"].shape[:2] == (2, k)
    scores = class_logits(model, batch)
    assert scores.shape == (2, k) and scores.requires_grad  # distillation trains through it
    assert torch.isfinite(scores).all() and (scores[:, :2] < 0).all() and (scores[0, 2:] == NO_CANDIDATE).all()


def test_candidate_task_refuses_the_classification_head(tmp_path_factory):
    tok, _, _ = load("xlm-roberta", tmp_path_factory, "xcopa")
    with pytest.raises(UserError, match="use --head prompt"):
        Featurizer(tok, get_task("geomlama"), "classification", 96, 0)


def test_collator_pads_per_class_inputs():
    feats = [{"input_ids": [[5, 6, 7], [5]], "candidate_token_ids": [[9], [9, 8]], "mask_pos": 1, "labels": 0},
             {"input_ids": [[5, 6], []], "candidate_token_ids": [[4, 3, 2], []], "mask_pos": 0, "labels": 1}]
    batch = Collator(pad_token_id=1)(feats)
    assert batch["input_ids"].tolist() == [[[5, 6, 7], [5, 1, 1]], [[5, 6, 1], [1, 1, 1]]]
    assert batch["attention_mask"].tolist() == [[[1, 1, 1], [1, 0, 0]], [[1, 1, 0], [0, 0, 0]]]
    assert batch["candidate_token_ids"].tolist() == [[[9, -100, -100], [9, 8, -100]],
                                                     [[4, 3, 2], [-100, -100, -100]]]
