"""Model loading details (alsace.modeling) that only a real load shows: the masked-LM head, DeBERTa's layout,
growing the vocabulary for the placeholder, and the heads a model type lacks. Tiny models, no training."""

from __future__ import annotations

import logging
import re
import shutil

import pytest
import torch

from alsace.errors import UserError
from alsace.modeling import MLM_HEAD_PREFIXES, load_tokenizer_and_model
from alsace.prompts import PLACEHOLDER_TOKEN
from alsace.tasks import get_task
from taskdata import tiny_model


def without_head(family, tmp_path_factory, tmp_path):
    """The tiny `family` model saved as its bare encoder: no masked-LM head weights in the checkpoint."""
    from transformers import AutoModel, AutoTokenizer

    src, out = tiny_model(family, tmp_path_factory), tmp_path / f"{family}-base"
    AutoModel.from_pretrained(src).save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out


@pytest.mark.parametrize("family, prefix", [("bert", "cls."), ("xlm-roberta", "lm_head."),
                                            ("deberta-v2", "cls.")])
def test_a_checkpoint_without_its_masked_lm_head_is_said_to_start_at_random(family, prefix, tmp_path_factory, tmp_path,
                                                                            caplog):
    # DeBERTa-v2 (saved non-legacy): `lm_predictions.*` missing, so the loader tries the legacy layout, whose
    # `cls.*` is missing too, and says so.
    base = without_head(family, tmp_path_factory, tmp_path)
    with caplog.at_level(logging.WARNING, logger="alsace.modeling"):
        load_tokenizer_and_model(str(base), "prompt", get_task("xnli"), 0)
    warnings = [r.getMessage() for r in caplog.records if r.name == "alsace.modeling"]
    assert len(warnings) == 1 and re.match(rf"the masked-LM head of {re.escape(str(base))} is not in the checkpoint "
                                           rf"\({re.escape(prefix)}\S+ \.\.\.\): it starts at random", warnings[0])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alsace.modeling"):  # the full masked LM: its head is there
        load_tokenizer_and_model(str(tiny_model(family, tmp_path_factory)), "prompt", get_task("xnli"), 0)
    assert [r for r in caplog.records if r.name == "alsace.modeling"] == []
    assert MLM_HEAD_PREFIXES == ("cls.", "lm_predictions.", "lm_head.")


def test_growing_deberta_s_vocabulary_keeps_the_old_rows_and_starts_the_new_one_at_the_mean(tmp_path_factory):
    from transformers import AutoModelForMaskedLM

    src = tiny_model("deberta-v2", tmp_path_factory)  # mDeBERTa-v3's shape: the non-legacy head
    before = AutoModelForMaskedLM.from_pretrained(src)
    assert hasattr(before, "lm_predictions")
    old = before.get_input_embeddings()
    tokenizer, model = load_tokenizer_and_model(str(src), "prompt", get_task("xnli"), 2)
    assert hasattr(model, "lm_predictions") and PLACEHOLDER_TOKEN in tokenizer.get_vocab()
    grown = model.get_input_embeddings()
    size = len(tokenizer)
    assert grown.num_embeddings == size == model.config.vocab_size > old.num_embeddings
    assert grown.padding_idx == old.padding_idx is not None
    torch.testing.assert_close(grown.weight[: old.num_embeddings], old.weight)
    torch.testing.assert_close(grown.weight[old.num_embeddings:], old.weight.mean(0).expand(size - old.num_embeddings, -1))
    bias = model.lm_predictions.lm_head.bias
    assert bias.shape == (size,) and (bias[old.num_embeddings:] == 0).all()
    torch.testing.assert_close(bias[: old.num_embeddings], before.lm_predictions.lm_head.bias)


def test_a_model_type_without_the_head_a_task_needs_is_one_line(tmp_path_factory):
    t5 = str(tiny_model("t5", tmp_path_factory))
    with pytest.raises(UserError, match=r"^--head classification: model type 't5' has no AutoModelForMultipleChoice "
                                        r"head \(.+\); use --head prompt$"):
        load_tokenizer_and_model(t5, "classification", get_task("xcopa"), 0)


def test_a_hub_id_is_what_the_hub_check_is_asked_about_and_a_matching_record_loads(tmp_path_factory, tmp_path,
                                                                                    monkeypatch):
    import json

    import alsace.modeling as modeling
    from alsace.checkpoint import CHECKPOINT_INFO

    asked = []
    monkeypatch.setattr(modeling, "hub_access", lambda model_id: asked.append(model_id) or {"local_files_only": True})
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_cache"))
    with pytest.raises(UserError, match=r"^--model_name_or_path someorg/somemodel: no such local directory"):
        load_tokenizer_and_model("someorg/somemodel", "prompt", get_task("xnli"), 0)
    assert asked == ["someorg/somemodel"]

    checkpoint = tmp_path / "ck"
    shutil.copytree(tiny_model("bert", tmp_path_factory), checkpoint)
    pawsx = get_task("pawsx")
    (checkpoint / CHECKPOINT_INFO).write_text(json.dumps({"task": "pawsx", "label_names": list(pawsx.label_names),
                                                          "head": "prompt"}))
    _, model = load_tokenizer_and_model(str(checkpoint), "prompt", pawsx, 0, check_task=True)  # the record agrees
    assert type(model).__name__ == "BertForMaskedLM"


def test_a_vocabulary_padded_beyond_the_tokenizer_is_not_shrunk(tmp_path_factory, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    src, padded = tiny_model("bert", tmp_path_factory), tmp_path / "padded"
    model = AutoModelForMaskedLM.from_pretrained(src)
    rows = len(AutoTokenizer.from_pretrained(src)) + 8  # like XLM-R's checkpoints: rows past the last token id
    model.resize_token_embeddings(rows)
    model.save_pretrained(padded)
    AutoTokenizer.from_pretrained(src).save_pretrained(padded)
    tokenizer, loaded = load_tokenizer_and_model(str(padded), "prompt", get_task("xnli"), 2)
    assert PLACEHOLDER_TOKEN in tokenizer.get_vocab() and len(tokenizer) < rows
    assert loaded.get_input_embeddings().weight.shape[0] == rows  # the new id fits: nothing resized


def test_the_placeholder_becomes_special_and_other_special_tokens_stay(tmp_path_factory, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    src = tiny_model("bert", tmp_path_factory)
    plain, other = tmp_path / "plain", tmp_path / "other"
    tokenizer = AutoTokenizer.from_pretrained(src)
    tokenizer.add_tokens([PLACEHOLDER_TOKEN])  # in the vocabulary, but as a plain token
    tokenizer.save_pretrained(plain)
    model = AutoModelForMaskedLM.from_pretrained(src)
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(plain)
    loaded, _ = load_tokenizer_and_model(str(plain), "prompt", get_task("xnli"), 2)
    assert PLACEHOLDER_TOKEN in loaded.all_special_tokens  # registered as special, like the original
    tokenizer = AutoTokenizer.from_pretrained(src)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<mine>"]})
    tokenizer.save_pretrained(other)
    model = AutoModelForMaskedLM.from_pretrained(src)
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(other)
    loaded, _ = load_tokenizer_and_model(str(other), "prompt", get_task("xnli"), 2)
    assert {"<mine>", PLACEHOLDER_TOKEN} <= set(loaded.all_special_tokens)  # the model's own stay special


def test_an_unreachable_hub_makes_every_loader_read_the_cache_only(tmp_path_factory, monkeypatch):
    import transformers

    import alsace.modeling as modeling

    config = transformers.AutoConfig.from_pretrained(tiny_model("bert", tmp_path_factory))
    seen = {}

    def config_from(path, **kwargs):
        seen["config"] = kwargs
        return config

    def tokenizer_from(path, **kwargs):
        seen["tokenizer"] = kwargs
        raise OSError("not in the cache")

    monkeypatch.setattr(modeling, "hub_access", lambda model_id: {"local_files_only": True})
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", config_from)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer_from)
    with pytest.raises(UserError, match="no such local directory and not in the Hugging Face cache"):
        load_tokenizer_and_model("someorg/somemodel", "prompt", get_task("xnli"), 0)
    assert seen["config"]["local_files_only"] is True and seen["tokenizer"]["local_files_only"] is True


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])  # bf16: the mask must not change the gradient's dtype
def test_train_only_new_token_embeddings_zeroes_exactly_the_kept_rows_gradients_and_freezes_the_rest(
        dtype, tmp_path_factory):
    # --train_only_embeddings, by hand: the kept rows are every token id of the given rows' input_ids and
    # (nested, as a prompt head stores them) label_token_ids; an AdamW step without weight decay moves every
    # other embedding row and nothing else.
    from transformers import AutoModelForMaskedLM

    from alsace.modeling import train_only_new_token_embeddings

    model = AutoModelForMaskedLM.from_pretrained(tiny_model("bert", tmp_path_factory)).to(dtype)
    weight = model.get_input_embeddings().weight
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    rows = [{"input_ids": [2, 11, 3], "label": 1}, {"input_ids": [2, 17, 11, 3], "label_token_ids": [[40], [41, 57]]}]
    trainable, total = train_only_new_token_embeddings(model, rows, special_ids=[1, 11])  # e.g. <unk>, and a repeat
    kept = [1, 2, 3, 11, 17, 40, 41, 57]
    assert (trainable, total) == (weight.shape[0] - len(kept), weight.shape[0])
    assert [name for name, p in model.named_parameters() if p.requires_grad] == ["bert.embeddings.word_embeddings.weight"]
    torch.manual_seed(0)
    direction = torch.randn_like(weight)
    (weight * direction).sum().backward()  # d/dweight = direction, before the mask
    assert weight.grad.dtype == dtype
    expected = direction.clone()
    expected[kept] = 0
    assert torch.equal(weight.grad, expected)
    optimizer = torch.optim.AdamW([weight], lr=0.1, weight_decay=0.0)
    optimizer.step()
    moved = (weight.detach() != before["bert.embeddings.word_embeddings.weight"]).any(dim=1)
    assert moved.nonzero().flatten().tolist() == [i for i in range(weight.shape[0]) if i not in kept]
    for name, p in model.named_parameters():
        if name != "bert.embeddings.word_embeddings.weight":
            assert torch.equal(p, before[name]), name


def test_train_only_new_token_embeddings_with_nothing_kept_leaves_the_gradient_whole(tmp_path_factory):
    # No kept rows (an empty id list, a float tensor unless its dtype is given): every row trains, the gradient
    # passes unchanged.
    from transformers import AutoModelForMaskedLM

    from alsace.modeling import train_only_new_token_embeddings

    model = AutoModelForMaskedLM.from_pretrained(tiny_model("bert", tmp_path_factory))
    weight = model.get_input_embeddings().weight
    assert train_only_new_token_embeddings(model, [{"input_ids": []}]) == (weight.shape[0], weight.shape[0])
    direction = torch.linspace(-1.0, 1.0, weight.numel()).reshape(weight.shape)
    (weight * direction).sum().backward()
    assert torch.equal(weight.grad, direction)
