"""The feature cache and the encodings the model is fed, the checkpoint record and model loading, checked exactly
(written against mutation testing: run_script/mutation.sh features modeling).

A stand-in featurizer (a dataclass, as `encode_cached` expects) makes every feature identify its row and
language, so a cache key that ignored the rows or the language would hand back the wrong features.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import socket
from pathlib import Path
from typing import ClassVar

import datasets
import pytest
import torch

import alsace.features as features
from alsace.errors import UserError
from alsace.features import BatchKind, Collator, batch_kind, Featurizer, default_cache_dir, encode_cached, features_fingerprint, split_features
from alsace.checkpoint import CHECKPOINT_INFO
from alsace.modeling import hub_access, hub_is_offline, load_tokenizer_and_model, looks_like_path
from alsace.pairs import PairCollator
from alsace.prompts import PLACEHOLDER_TOKEN, encode_prompt
from alsace.tasks import get_task
from taskdata import GEO_CANDIDATES, tiny_model


@dataclasses.dataclass
class Codes:
    """Features = the premise's character codes, offset by the language (fr + 1000)."""

    task: object
    head: str = "prompt"
    calls: ClassVar[list] = []

    def encode_row(self, row: dict, lang: str) -> dict:
        Codes.calls.append((lang, row["premise"]))
        return {"input_ids": [ord(c) + (1000 if lang == "fr" else 0) for c in row["premise"]]}


def expected(rows, lang):
    return [{"input_ids": [ord(c) + (1000 if lang == "fr" else 0) for c in r["premise"]]} for r in rows]


ROWS_A = [{"premise": "ab", "hypothesis": "x"}, {"premise": "cde", "hypothesis": "y"}]
ROWS_B = [{"premise": "zz", "hypothesis": "x"}, {"premise": "q", "hypothesis": "y"}]


def test_cache_key_follows_rows_language_and_code_and_names_the_file(tmp_path, monkeypatch):
    f = Codes(task=type("T", (), {"name": "My Task/é"})())
    Codes.calls.clear()
    assert encode_cached(f, ROWS_A, "en", tmp_path).to_list() == expected(ROWS_A, "en")
    assert encode_cached(f, ROWS_B, "en", tmp_path).to_list() == expected(ROWS_B, "en")  # other rows, other key
    assert encode_cached(f, ROWS_A, "fr", tmp_path).to_list() == expected(ROWS_A, "fr")  # other language
    names = sorted(p.name for p in (tmp_path / "alsace_features").glob("*.arrow"))
    assert len(names) == 3 and all(re.fullmatch(r"My_Task__-(en|fr)-prompt-[0-9a-f]{16,}\.arrow", n) for n in names)
    # A hit: the same rows (keys in another order) are read back, not re-tokenised.
    before = len(Codes.calls)
    reordered = [{"hypothesis": r["hypothesis"], "premise": r["premise"]} for r in ROWS_A]
    assert encode_cached(f, reordered, "en", tmp_path).to_list() == expected(ROWS_A, "en")
    assert len(Codes.calls) == before
    # overwrite_cache re-tokenises (and replaces the file).
    assert encode_cached(f, ROWS_A, "en", tmp_path, overwrite_cache=True).to_list() == expected(ROWS_A, "en")
    assert len(Codes.calls) == before + len(ROWS_A)
    # The featurizer's code is part of the key.
    key = features_fingerprint(f, ROWS_A, "en")
    monkeypatch.setattr(features, "_code_digest", lambda cls: "edited")
    assert features_fingerprint(f, ROWS_A, "en") != key


def test_default_cache_folder_is_under_the_datasets_cache(features_cache):
    f = Codes(task=type("T", (), {"name": "default-dir"})())
    assert default_cache_dir() == Path(datasets.config.HF_DATASETS_CACHE) / "alsace_features"
    assert encode_cached(f, ROWS_A, "en").to_list() == expected(ROWS_A, "en")
    assert list(default_cache_dir().glob("default-dir-en-prompt-*.arrow"))


def test_split_features_limits_rows_uses_the_cache_folder_and_restores_progress_bars(data_dir, tmp_path):
    f = Codes(task=get_task("xnli"))
    Codes.calls.clear()
    for bars_on in (True, False):
        datasets.enable_progress_bars() if bars_on else datasets.disable_progress_bars()
        out = split_features(f.task, f, str(data_dir), "validation", ["en", "fr"], max_rows=2, cache_dir=str(tmp_path))
        assert datasets.is_progress_bar_enabled() == bars_on
    datasets.enable_progress_bars()
    assert [len(v) for v in out.values()] == [2, 2]
    assert out["fr"][0]["input_ids"][0] > 1000  # each language encoded as itself
    assert len(list((tmp_path / "alsace_features").glob("*.arrow"))) == 2
    assert len(Codes.calls) == 4  # the second call read the cache
    split_features(f.task, f, str(data_dir), "validation", ["en"], max_rows=2, cache_dir=str(tmp_path),
                   overwrite_cache=True)
    assert len(Codes.calls) == 6
    everything = split_features(f.task, f, str(data_dir), "validation", ["en"], max_rows=0, cache_dir=str(tmp_path))
    assert len(everything["en"]) == 24  # 0 means no limit, like None


def test_collator_pads_token_types_with_zero_and_ids_with_the_pad_id():
    batch = Collator(pad_token_id=7)([{"input_ids": [5, 6, 8], "token_type_ids": [1, 1, 1]},
                                      {"input_ids": [5], "token_type_ids": [1]}])
    assert batch["input_ids"].tolist() == [[5, 6, 8], [5, 7, 7]]
    assert batch["token_type_ids"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    pairs = PairCollator(pad_token_id=7, frozen_teacher=True)([{"b": {"input_ids": [1]}, "teacher_logits": [0.5, 1.5]}])
    assert pairs["teacher_logits"].dtype == torch.float32


@pytest.fixture(scope="module")
def bert_tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model("bert", tmp_path_factory))


def test_classification_features_are_truncated_and_keep_token_types(bert_tokenizer):
    task = get_task("xnli")
    f = Featurizer(bert_tokenizer, task, "classification", 12, 0)
    long = {"premise": "cat dog " * 20, "hypothesis": "red mat", "label": 2}
    feats = f.encode_row(long, "en")
    assert len(feats["input_ids"]) == 12 and len(feats["token_type_ids"]) == 12 and feats["labels"] == 2
    assert feats["input_ids"] == bert_tokenizer("cat dog " * 20, "red mat", truncation=True, max_length=12)["input_ids"]
    assert set(feats["token_type_ids"]) == {0, 1}


def test_native_prompt_needs_both_template_and_label_words(bert_tokenizer):
    task = get_task("xnli")
    partial = dataclasses.replace(task, label_words={k: v for k, v in task.label_words.items() if k != "fr"})
    f = Featurizer(bert_tokenizer, partial, "prompt", 64, 0, prompt_language="native", languages=("en",))
    assert "fr" in partial.templates
    with pytest.raises(UserError,
                       match="^--prompt_language native: task xnli has no fr prompt; use --prompt_language en$"):
        f.prompt_key("fr")
    assert f.prompt_key("en") == "en"


@pytest.fixture(scope="module")
def xlmr_tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model("xlm-roberta", tmp_path_factory))


@pytest.mark.parametrize("max_length", [64, 9])
def test_masked_lm_candidates_replace_the_slot_with_one_mask_per_piece(xlmr_tokenizer, max_length):
    task = get_task("geomlama")
    f = Featurizer(xlmr_tokenizer, task, "prompt", max_length, 0)
    row = {"prompt": "the cat sat on the <mask> in the red park today.", "candidates": GEO_CANDIDATES["en"][2],
           "label": 1}
    feats = f.encode_row(row, "en")
    pieces = feats["candidate_token_ids"][:4]
    longest = max(len(p) for p in pieces)
    assert longest > 1  # so the room kept for extra masks matters
    ref = encode_prompt(xlmr_tokenizer, "{left}{mask}{right}", {"left": "the cat sat on the ",
                                                                 "right": " in the red park today."},
                        max_length - (longest - 1), 0)
    mask = xlmr_tokenizer.mask_token_id
    for k, p in enumerate(pieces):
        at = ref.mask_pos
        assert feats["input_ids"][k] == ref.input_ids[:at] + [mask] * len(p) + ref.input_ids[at + 1:]
        assert len(feats["input_ids"][k]) <= max_length
    assert feats["mask_pos"] == ref.mask_pos and feats["labels"] == 1
    assert feats["input_ids"][4:] == [[]] * (task.num_labels - 4)  # absent candidates, K fixed by the task


# ------------------------------------------------------------------- modeling: finding and loading models


@pytest.mark.parametrize("value, is_path", [
    ("xlm-roberta-large", False), ("FacebookAI/xlm-roberta-large", False), ("./model", True), ("/abs/m", True),
    ("~/m", True), ("a/b/c", True), ("models/xlm-roberta-large", True), ("datasets/x", True), ("a\\b", True),
    (".hidden", True),
])
def test_looks_like_path(value, is_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert looks_like_path(value) is is_path
    (tmp_path / "mine").mkdir()
    assert looks_like_path("mine/model") and looks_like_path("mine")  # an existing local folder


@pytest.mark.parametrize("value, offline", [("1", True), (" TRUE ", True), ("yes", True), ("on", True), ("0", False),
                                            ("", False), ("off", False)])
def test_hub_offline_values(value, offline, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub_is_offline() is offline
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert hub_is_offline() is False


def test_multiple_choice_pairs_the_context_with_each_choice(bert_tokenizer):
    task = get_task("xcopa")
    f = Featurizer(bert_tokenizer, task, "classification", 14, 0)
    row = {"premise": "the cat sat on the red mat in the big park " * 2, "question": "cause", "choice1": "dog ran",
           "choice2": "cat sat", "label": 1}
    feats = f.encode_row(row, "en")
    context = f"{row['premise']} What was the cause?"
    enc = bert_tokenizer([context] * 2, ["dog ran", "cat sat"], truncation=True, max_length=14)
    assert feats["input_ids"] == enc["input_ids"] and feats["token_type_ids"] == enc["token_type_ids"]
    assert all(len(ids) == 14 for ids in feats["input_ids"]) and feats["labels"] == 1


def test_placeholders_go_to_masked_lm_prompts_only(xlmr_tokenizer):
    task = get_task("xnli")
    row = {"premise": "the cat sat", "hypothesis": "a dog ran", "label": 0}
    texts = {"premise": "the cat sat", "hypothesis": "a dog ran"}
    mlm = Featurizer(xlmr_tokenizer, task, "prompt", 64, 2).encode_row(row, "en")
    assert mlm["input_ids"] == encode_prompt(xlmr_tokenizer, task.templates["en"], texts, 64, 2).input_ids
    assert mlm["input_ids"] != encode_prompt(xlmr_tokenizer, task.templates["en"], texts, 64, 0).input_ids
    seq2seq = Featurizer(xlmr_tokenizer, task, "prompt", 64, 2, is_seq2seq=True).encode_row(row, "en")
    assert seq2seq["input_ids"] == encode_prompt(xlmr_tokenizer, task.templates["en"], texts, 64, 0,
                                                 use_mask=False).input_ids


def test_seq2seq_candidates_without_a_sentinel_have_an_empty_slot(xlmr_tokenizer):
    """A seq2seq tokenizer without T5's `<extra_id_0>` (stand-in: the tiny XLM-R one): nothing in the slot and no
    decoder prefix."""
    task = get_task("geomlama")
    assert "<extra_id_0>" not in xlmr_tokenizer.get_vocab()
    f = Featurizer(xlmr_tokenizer, task, "prompt", 64, 0, is_seq2seq=True)
    row = {"prompt": "the cat sat on the <mask> in the park.", "candidates": GEO_CANDIDATES["en"][0], "label": 0}
    feats = f.encode_row(row, "en")
    ref = encode_prompt(xlmr_tokenizer, "{left}{mask}{right}",
                        {"left": "the cat sat on the ", "right": " in the park."}, 64, 0, use_mask=False)
    assert feats["input_ids"] == ref.input_ids and feats["decoder_prefix_ids"] == []
    assert xlmr_tokenizer.mask_token_id not in feats["input_ids"]


# ------------------------------------------------------------------------- modeling: loading and the Hub


@pytest.fixture
def no_proxy(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


def test_hub_access_offline_proxy_reachable_and_unreachable(no_proxy, monkeypatch, caplog):
    calls = []

    class Connection:
        def close(self):
            calls.append("closed")

    def reachable(address, timeout):
        calls.append((address, timeout))
        return Connection()

    monkeypatch.setattr(socket, "create_connection", reachable)
    assert hub_access("xlm-roberta-base") == {} and calls == [(("huggingface.co", 443), 3), "closed"]
    monkeypatch.setenv("HF_ENDPOINT", "https://mirror.example:8443/hf")
    calls.clear()
    assert hub_access("m") == {} and calls[0] == (("mirror.example", 443), 3)
    monkeypatch.setenv("HF_ENDPOINT", "not a url")  # no host name in it: the Hub itself
    calls.clear()
    assert hub_access("m") == {} and calls[0] == (("huggingface.co", 443), 3)
    monkeypatch.setenv("HF_ENDPOINT", "https://mirror.example:8443/hf")

    def unreachable(address, timeout):
        raise OSError("no route")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with caplog.at_level("WARNING"):
        assert hub_access("org/model") == {"local_files_only": True}
    assert caplog.records[-1].getMessage() == ("the Hugging Face Hub (mirror.example) is unreachable: looking for "
                                               "org/model in the local cache only")
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(proxy, "http://proxy:3128")
        assert hub_access("m") == {}  # behind a proxy only the HTTP client can tell: no socket check
        monkeypatch.delenv(proxy)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert hub_access("m") == {"local_files_only": True}


def test_load_refuses_an_unknown_head_and_a_missing_folder(tmp_path):
    task = get_task("xnli")
    with pytest.raises(UserError, match=r"^--head 'mlm': choose one of prompt, classification$"):
        load_tokenizer_and_model("xlm-roberta-base", "mlm", task, 0)
    with pytest.raises(UserError, match=rf"^--model_name_or_path {re.escape(str(tmp_path / 'nope'))}: directory not "
                                        "found"):
        load_tokenizer_and_model(str(tmp_path / "nope"), "prompt", task, 0)


def test_load_prompt_head_registers_one_placeholder_token_and_grows_the_embeddings(tmp_path_factory, monkeypatch):
    import transformers

    seen = []
    real = transformers.AutoConfig.from_pretrained

    def spy(path, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return real(path, **kwargs)

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", spy)
    path = str(tiny_model("xlm-roberta", tmp_path_factory))
    task = get_task("xnli")
    plain_tok, plain = load_tokenizer_and_model(path, "prompt", task, 0)
    tokenizer, model = load_tokenizer_and_model(path, "prompt", task, 2)
    assert seen and set(seen) == {False}  # remote code stays off unless asked for
    assert PLACEHOLDER_TOKEN not in plain_tok.get_vocab()
    assert PLACEHOLDER_TOKEN in tokenizer.all_special_tokens and len(tokenizer) == len(plain_tok) + 1
    assert tokenizer.tokenize(PLACEHOLDER_TOKEN * 2) == [PLACEHOLDER_TOKEN] * 2  # one token per copy
    old = plain.get_input_embeddings().weight
    grown = model.get_input_embeddings().weight
    assert grown.shape[0] == len(tokenizer) and torch.equal(grown[: old.shape[0]], old)
    assert type(model).__name__ == "XLMRobertaForMaskedLM"
    assert load_tokenizer_and_model(path, "classification", task, 2)[1].get_input_embeddings().weight.shape[0] == \
        old.shape[0]  # placeholders belong to the prompt head only


def test_load_classification_heads_and_seq2seq(tmp_path_factory, tmp_path):
    bert = str(tiny_model("bert", tmp_path_factory))
    xnli, xcopa = get_task("xnli"), get_task("xcopa")
    _, model = load_tokenizer_and_model(bert, "classification", xnli, 0)
    assert type(model).__name__ == "BertForSequenceClassification" and model.config.num_labels == 3
    assert model.config.id2label == dict(enumerate(xnli.label_names))
    assert model.config.label2id == {n: i for i, n in enumerate(xnli.label_names)}
    _, choice = load_tokenizer_and_model(bert, "classification", xcopa, 0)
    assert type(choice).__name__ == "BertForMultipleChoice"
    _, t5 = load_tokenizer_and_model(str(tiny_model("t5", tmp_path_factory)), "prompt", xnli, 2)
    assert type(t5).__name__ == "T5ForConditionalGeneration"
    checkpoint = tmp_path / "ck"
    shutil.copytree(bert, checkpoint)
    (checkpoint / CHECKPOINT_INFO).write_text(json.dumps({"task": "pawsx", "label_names": ["a", "b"],
                                                          "head": "prompt"}))
    load_tokenizer_and_model(str(checkpoint), "prompt", xnli, 0)  # the record is read only when asked
    with pytest.raises(UserError, match="checkpoint was fine-tuned for labels"):
        load_tokenizer_and_model(str(checkpoint), "prompt", xnli, 0, check_task=True)


def test_load_explains_why_a_model_cannot_be_found(no_proxy, monkeypatch, tmp_path):
    import transformers

    task = get_task("xnli")
    with pytest.raises(UserError) as missing:
        load_tokenizer_and_model(str(tmp_path / "nope"), "prompt", task, 0)
    assert str(missing.value) == (f"--model_name_or_path {tmp_path / 'nope'}: directory not found (relative to "
                                  f"{Path.cwd()}); pass the folder of a downloaded model or checkpoint, or a Hub id "
                                  "such as xlm-roberta-base")

    def fails(path, **kwargs):
        raise OSError("not here\nsecond line")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", fails)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as offline:
        load_tokenizer_and_model("no-org/no-model", "prompt", task, 0)
    assert str(offline.value) == (
        "--model_name_or_path no-org/no-model: no such local directory and not in the Hugging Face cache, and "
        "HF_HUB_OFFLINE=1 is set; download it where there is internet (MODEL=<hub id> bash "
        "run_script/prepare_data.sh) and pass its directory")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: (_ for _ in ()).throw(OSError()))
    with pytest.raises(UserError, match=r"and the Hub is unreachable \(set HF_HUB_OFFLINE=1 on offline machines to "
                                        r"skip the check\); download"):
        load_tokenizer_and_model("no-org/no-model", "prompt", task, 0)
    monkeypatch.setattr("alsace.modeling.hub_access", lambda model_id: {})
    with pytest.raises(UserError) as failed:
        load_tokenizer_and_model("no-org/no-model", "prompt", task, 0)
    assert str(failed.value) == ("--model_name_or_path no-org/no-model: could not load it (not here); without "
                                 "internet, snapshot the model elsewhere and pass its local directory")


def test_one_placeholder_is_registered_too(tmp_path_factory):
    tokenizer, model = load_tokenizer_and_model(str(tiny_model("xlm-roberta", tmp_path_factory)), "prompt",
                                                get_task("xnli"), 1)
    assert PLACEHOLDER_TOKEN in tokenizer.all_special_tokens
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)


def test_a_plain_dict_batch_is_of_the_plain_kind():
    assert batch_kind({"input_ids": [[1, 2]]}) is BatchKind.PLAIN  # a batch built by hand, without a kind
