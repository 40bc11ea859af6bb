"""Exact prompt strings, truncation that keeps the mask, label-word ids."""

import pytest
from transformers import AutoTokenizer

from alsace.errors import UserError
from alsace.prompts import encode_prompt, label_word_ids, render
from alsace.tasks import get_task

P, H = "A man plays.", "Someone plays"


def fill(task_name, lang, placeholders="歌" * 6):
    task = get_task(task_name)
    fields = dict(zip(task.text_fields, (P, H)))
    return render(task.templates[lang], fields, "<mask>", placeholders)[0]


def test_xnli_english_template_is_the_originals():
    assert fill("xnli", "en") == ("Suppose A man plays. Can we infer that Someone plays"
                                 "歌歌歌歌歌歌? Yes, no or maybe? Answer: <mask>.")


def test_xnli_native_templates_keep_the_original_spacing():
    # French as in the original; Arabic keeps its double space after part B.
    assert fill("xnli", "fr") == ("Supposer A man plays. Pouvons-nous en déduire que Someone plays"
                                 "歌歌歌歌歌歌? Oui, non ou peut-être ? Réponse: <mask>.")
    assert fill("xnli", "ar", "") == ("افترض A man plays. هل يمكننا أن نستنتج أن  Someone plays"
                                     "؟ نعم ، لا ، أو ربما؟ إجابه: <mask>.")
    assert fill("xnli", "zh", "") == "假设 A man plays. 我们可以推断出 Someone plays? 是，不是，或者也许？ 答案: <mask>."


def test_pawsx_template_has_no_placeholders_and_a_double_space():
    assert fill("pawsx", "en") == ("Are the following sentences A man plays. and Someone plays"
                                  "  are paraphrases of each other? yes or no? Answer: <mask>.")


def test_label_words():
    assert get_task("xnli").label_words["en"] == ("yes", "maybe", "no")
    assert get_task("xnli").label_words["de"] == ("ja", "vielleicht", "Nein")
    assert get_task("pawsx").label_words["en"] == ("no", "yes")


@pytest.fixture(scope="module")
def tokenizer(tiny_mlm):
    tok = AutoTokenizer.from_pretrained(tiny_mlm)
    tok.add_special_tokens({"additional_special_tokens": ["歌"]}, replace_extra_special_tokens=False)
    return tok


def test_placeholders_are_one_token_each(tokenizer):
    enc = encode_prompt(tokenizer, get_task("xnli").templates["en"], {"premise": P, "hypothesis": H}, 128, 6)
    tokens = tokenizer.convert_ids_to_tokens(enc.input_ids)
    assert tokens.count("歌") == 6
    assert enc.input_ids[enc.mask_pos] == tokenizer.mask_token_id
    # Untruncated inputs are exactly the tokenizer's ids of the rendered string.
    assert enc.input_ids == tokenizer(fill("xnli", "en").replace("<mask>", tokenizer.mask_token))["input_ids"]


def test_long_inputs_are_cut_inside_the_fields_never_the_template(tokenizer):
    long_premise = "the cat sat on the mat " * 200
    enc = encode_prompt(tokenizer, get_task("xnli").templates["en"],
                        {"premise": long_premise, "hypothesis": H}, 64, 6)
    assert len(enc.input_ids) <= 64
    assert enc.input_ids[enc.mask_pos] == tokenizer.mask_token_id
    text = tokenizer.decode(enc.input_ids)
    assert "Answer:" in text and "Can we infer" in text and text.count("歌") == 6
    assert "Someone" in text  # the short hypothesis survives; the long premise was cut


def test_template_longer_than_max_length_is_a_user_error(tokenizer):
    with pytest.raises(UserError, match="max_seq_length"):
        encode_prompt(tokenizer, get_task("xnli").templates["en"], {"premise": P, "hypothesis": H}, 10, 6)


def test_label_word_ids_skip_bare_word_boundary(tokenizer):
    """Pinned by hand: the tiny tokenizer splits "yes" into "▁" + "y" + "es" (the bare word boundary is
    skipped, the first real piece kept) and has "maybe" and "no" as whole words."""
    assert tokenizer.convert_ids_to_tokens(tokenizer("yes", add_special_tokens=False)["input_ids"]) == ["▁", "y", "es"]
    ids = label_word_ids(tokenizer, ["yes", "maybe", "no"], "test")
    assert tokenizer.convert_ids_to_tokens(ids) == ["y", "▁maybe", "▁no"]


def test_colliding_label_words_are_refused(tokenizer):
    with pytest.raises(UserError, match="share their first sub-token"):
        label_word_ids(tokenizer, ["yes", "yes"], "test")
