"""class_logits equals the stock model's outputs at the label rows, for every head."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from alsace.features import Collator, Featurizer
from alsace.modeling import load_tokenizer_and_model
from alsace.scoring import class_logits
from alsace.tasks import get_task
from conftest import encode_rows

XNLI = get_task("xnli")
ROWS = [{"premise": "the cat sat on the mat", "hypothesis": "a cat sat", "label": 0},
        {"premise": "le chien", "hypothesis": "un chat rouge grand", "label": 2}]


def batch_for(tiny_mlm, head, lang="en", prompt_language="en"):
    tokenizer, model = load_tokenizer_and_model(str(tiny_mlm), head, XNLI, 6)
    model.eval()
    featurizer = Featurizer(tokenizer, XNLI, head, 128, 6, prompt_language, languages=("en", "fr", "de"))
    feats = encode_rows(featurizer, ROWS, lang)
    return tokenizer, model, Collator(tokenizer.pad_token_id)(feats)


def test_prompt_head_matches_stock_masked_lm(tiny_mlm):
    tokenizer, model, batch = batch_for(tiny_mlm, "prompt")
    with torch.no_grad():
        ours = class_logits(model, batch)                                   # (B, C)
        ours_cls, ours_vocab = class_logits(model, batch, return_vocab=True)  # (B, C), (B, V)
        stock = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, L, V)
    at_mask = stock[torch.arange(2), batch["mask_pos"]]                     # (B, V)
    expected = at_mask.gather(1, batch["label_token_ids"])
    assert ours.shape == (2, 3)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours_vocab, at_mask, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours_cls, expected, rtol=1e-5, atol=1e-5)


def test_native_prompts_use_per_language_label_words(tiny_mlm):
    tokenizer, model, batch = batch_for(tiny_mlm, "prompt", lang="de", prompt_language="native")
    words = [tokenizer.convert_ids_to_tokens(i) for i in batch["label_token_ids"][0].tolist()]
    english = Featurizer(tokenizer, XNLI, "prompt", 128, 6).encode_row(ROWS[0], "de")["label_token_ids"]
    assert words != [tokenizer.convert_ids_to_tokens(i) for i in english]
    assert "Vermuten" in tokenizer.decode(batch["input_ids"][0])


def test_classification_head(tiny_mlm):
    tokenizer, model, batch = batch_for(tiny_mlm, "classification")
    assert isinstance(model, type(AutoModelForSequenceClassification.from_pretrained(str(tiny_mlm), num_labels=3)))
    assert "mask_pos" not in batch
    with torch.no_grad():
        logits = class_logits(model, batch)
    assert logits.shape == (2, 3) and model.config.id2label[2] == "contradiction"


def test_padding_does_not_change_scores(tiny_mlm):
    tokenizer, model, batch = batch_for(tiny_mlm, "prompt")
    with torch.no_grad():
        together = class_logits(model, batch)
        feats = encode_rows(Featurizer(tokenizer, XNLI, "prompt", 128, 6), ROWS, "en")
        alone = torch.cat([class_logits(model, Collator(tokenizer.pad_token_id)([f])) for f in feats])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_model_without_mask_token_is_refused(tiny_mlm, tmp_path):
    from alsace.errors import UserError
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_mlm))
    with pytest.raises(UserError, match="needs a tokenizer with a mask token"):
        tok.mask_token = None
        Featurizer(tok, XNLI, "prompt", 128, 6)


def test_missing_model_dir_is_a_user_error(tmp_path):
    from alsace.errors import UserError

    with pytest.raises(UserError, match="directory not found"):
        load_tokenizer_and_model(str(tmp_path / "nope"), "prompt", XNLI, 6)


def test_unreachable_hub_model_is_a_user_error(monkeypatch, tmp_path):
    from alsace.errors import UserError

    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once at import time
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(UserError, match="not in the Hugging Face cache, and HF_HUB_OFFLINE=1 is set.*pass its directory"):
        load_tokenizer_and_model("xlm-roberta-base", "prompt", XNLI, 6)


@pytest.mark.parametrize("head", ["prompt", "classification"])
def test_return_hidden_gives_the_encoders_hidden_states_from_the_same_pass(tiny_mlm, head):
    """`return_hidden`: the same class logits, plus the encoder's hidden states (embeddings' output, then every
    layer) exactly as the stock forward with `output_hidden_states` gives them; refused where no single encoder
    input exists (a multiple-choice batch `(B, C, L)`)."""
    tokenizer, model, batch = batch_for(tiny_mlm, head)
    with torch.no_grad():
        plain = class_logits(model, batch)
        logits, hidden = class_logits(model, batch, return_hidden=True)
        stock = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 output_hidden_states=True).hidden_states
    torch.testing.assert_close(logits, plain, rtol=0, atol=0)
    assert len(hidden) == model.config.num_hidden_layers + 1 == len(stock)
    for ours, theirs in zip(hidden, stock):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    assert not torch.equal(hidden[0], hidden[-1])
    three_d = dict(batch, input_ids=batch["input_ids"][:, None], attention_mask=batch["attention_mask"][:, None])
    with pytest.raises(ValueError, match="return_hidden needs"):
        class_logits(model, three_d, return_hidden=True)
