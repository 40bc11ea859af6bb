"""Class scoring: the one function every stage uses, and the featuriser that prepares its batches.

`class_logits(model, batch)` returns `(batch, num_classes)` class logits for any supported head:

- **prompt** (masked LM, the original's default): run the encoder, take the hidden state at the mask,
  apply the LM head's transform and only the label-word rows of the decoder. Identical to the stock
  masked-LM logits at those rows, without projecting every position onto the whole vocabulary
  (XLM-R: 250,002 words) or materialising a `(batch, length, vocab)` tensor.
- **seq2seq** (mT5 / T5): prompt without a mask; the first decoder step's logits at the label rows.
- **classification**: `AutoModelForSequenceClassification` logits.

Fine-tuning with the faithful full-vocabulary loss asks for the vocabulary logits at the mask too
(`return_vocab=True`); the class logits are then gathered from them, so both come from one pass.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from alsace.errors import UserError
from alsace.prompts import PLACEHOLDER_TOKEN, encode_prompt, label_word_ids
from alsace.tasks import Task

logger = logging.getLogger(__name__)
HEADS = ("prompt", "classification")
CHECKPOINT_INFO = "alsace_task.json"  # task/head/prompt settings saved beside every checkpoint


# --------------------------------------------------------------------------------------------------
# The scoring function
# --------------------------------------------------------------------------------------------------


def class_logits(model, batch: dict, return_vocab: bool = False):
    """Class logits `(B, C)` for a batch; with `return_vocab`, also the `(B, V)` logits at the mask.

    The batch holds `input_ids`, `attention_mask` `(B, L)` and, for prompt heads, `mask_pos` `(B,)` and
    `label_token_ids` `(B, C)` (the verbalizer's token id per class, per example, so that per-language
    label words can share a batch).
    """
    if "label_token_ids" not in batch:  # classification head
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    label_ids = batch["label_token_ids"]  # (B, C)
    if model.config.is_encoder_decoder:
        vocab = _first_decoder_step_logits(model, batch)  # (B, V)
        cls = vocab.gather(1, label_ids)
        return (cls, vocab) if return_vocab else cls
    hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    at_mask = hidden[rows, batch["mask_pos"]]  # (B, H)
    transform, decoder = mlm_head_parts(model)
    z = transform(at_mask)  # (B, H)
    if return_vocab:
        vocab = F.linear(z, decoder.weight, decoder.bias)  # (B, V), one position per example
        return vocab.gather(1, label_ids), vocab
    weight = decoder.weight[label_ids]  # (B, C, H): only the label-word rows
    cls = torch.einsum("bh,bch->bc", z, weight.to(z.dtype))
    if decoder.bias is not None:
        cls = cls + decoder.bias[label_ids].to(cls.dtype)
    return cls


def mlm_head_parts(model):
    """The LM head of a masked LM split into (transform, decoder Linear), by `config.model_type`."""
    kind = model.config.model_type
    if kind in ("xlm-roberta", "roberta", "camembert", "xlm-roberta-xl"):
        head = model.lm_head
        return (lambda h: head.layer_norm(F.gelu(head.dense(h)))), head.decoder
    if kind in ("bert", "distilbert") and hasattr(model, "cls"):
        return model.cls.predictions.transform, model.cls.predictions.decoder
    if kind == "deberta-v2" and getattr(model.config, "legacy", True) and hasattr(model, "cls"):
        return model.cls.predictions.transform, model.cls.predictions.decoder
    raise UserError(
        f"--head prompt: masked-LM head of model type {kind!r} is not supported yet "
        "(supported: xlm-roberta, roberta, bert, deberta-v2); use --head classification"
    )


def _first_decoder_step_logits(model, batch):
    """Seq2seq: vocabulary logits `(B, V)` of the first decoder step (no `generate`)."""
    start = model.config.decoder_start_token_id
    dec = torch.full((batch["input_ids"].shape[0], 1), start, device=batch["input_ids"].device)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=dec)
    return out.logits[:, 0]


# --------------------------------------------------------------------------------------------------
# Featurisation: rows -> token ids (+ mask position and verbalizer ids)
# --------------------------------------------------------------------------------------------------


@dataclass
class Featurizer:
    """Turns task rows into model inputs for one head; label words are checked at construction."""

    tokenizer: object
    task: Task
    head: str
    max_length: int
    num_placeholder_tokens: int
    prompt_language: str = "en"  # "en": English prompt for all (original); "native": per language
    is_seq2seq: bool = False
    languages: tuple[str, ...] | None = None  # languages the run uses (default: all of the task's)

    def __post_init__(self):
        self._label_ids = {}
        if self.head == "prompt":
            if not self.is_seq2seq and self.tokenizer.mask_token is None:
                raise UserError("--head prompt needs a tokenizer with a mask token; use --head classification")
            for lang in self.languages or self.task.languages:
                words = self.task.label_words[self.prompt_key(lang)]
                context = f"task {self.task.name} label words ({self.prompt_key(lang)})"
                self._label_ids[lang] = label_word_ids(self.tokenizer, words, context)

    def prompt_key(self, lang: str) -> str:
        """Which language's template and label words an input in `lang` uses."""
        if self.prompt_language == "native":
            if lang not in self.task.templates or lang not in self.task.label_words:
                raise UserError(
                    f"--prompt_language native: task {self.task.name} has no {lang} prompt; use --prompt_language en"
                )
            return lang
        return "en"

    def label_token_ids(self, lang: str) -> list[int]:
        return self._label_ids[lang]

    def encode_row(self, row: dict, lang: str) -> dict:
        texts = {f: row[f] for f in self.task.text_fields}
        if self.head == "classification":
            fields = [texts[f] for f in self.task.text_fields]
            enc = self.tokenizer(*fields, truncation=True, max_length=self.max_length)
            feats = {"input_ids": enc["input_ids"]}
        else:
            enc = encode_prompt(
                self.tokenizer,
                self.task.templates[self.prompt_key(lang)],
                texts,
                self.max_length,
                0 if self.is_seq2seq else self.num_placeholder_tokens,
                use_mask=not self.is_seq2seq,
            )
            feats = {"input_ids": enc.input_ids, "mask_pos": enc.mask_pos,
                     "label_token_ids": self._label_ids[lang]}
        if "label" in row:
            feats["labels"] = row["label"]
        return feats

    def encode(self, rows: list[dict], lang: str) -> list[dict]:
        return [self.encode_row(row, lang) for row in rows]


class Collator:
    """Pads a list of features into a batch; pair features (`a`, `b`) are stacked into one batch.

    A distillation pair batch of B pairs becomes one `(2B, L)` batch, the B higher-ranked sides first,
    so that both sides go through the model in a single forward pass.
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> dict:
        if "a" in features[0]:
            batch = self([f["a"] for f in features] + [f["b"] for f in features])
            batch["num_pairs"] = torch.tensor(len(features))
            return batch
        longest = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        attn = torch.zeros((len(features), longest), dtype=torch.long)
        for i, f in enumerate(features):
            ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            attn[i, : len(f["input_ids"])] = 1
        batch = {"input_ids": ids, "attention_mask": attn}
        for key in ("mask_pos", "label_token_ids", "labels"):
            if key in features[0]:
                batch[key] = torch.tensor([f[key] for f in features], dtype=torch.long)
        return batch


# --------------------------------------------------------------------------------------------------
# Loading models and tokenizers
# --------------------------------------------------------------------------------------------------


def load_tokenizer_and_model(path: str, head: str, task: Task, num_placeholder_tokens: int,
                             trust_remote_code: bool = False, check_task: bool = False):
    """Load a tokenizer and the model for `head`; register the `歌` placeholder like the original."""
    from transformers import (AutoConfig, AutoModelForMaskedLM, AutoModelForSeq2SeqLM,
                              AutoModelForSequenceClassification, AutoTokenizer)

    if head not in HEADS:
        raise UserError(f"--head {head!r}: choose one of {', '.join(HEADS)}")
    looks_local = path.startswith((".", "/", "~")) or Path(path).exists()
    if looks_local and not Path(path).is_dir():
        raise UserError(f"--model_name_or_path {path}: directory not found")
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise UserError(
            f"--model_name_or_path {path}: could not load it ({str(err).splitlines()[0][:160]}); "
            "without internet, snapshot the model elsewhere and pass its local directory"
        ) from None
    if check_task:
        check_checkpoint_task(path, task, head)
    kwargs = {"config": config, "trust_remote_code": trust_remote_code}
    if head == "classification":
        config.num_labels = task.num_labels
        config.id2label = dict(enumerate(task.label_names))
        config.label2id = {n: i for i, n in enumerate(task.label_names)}
        model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    elif config.is_encoder_decoder:
        model = AutoModelForSeq2SeqLM.from_pretrained(path, **kwargs)
    else:
        if tokenizer.mask_token is None:
            raise UserError(
                f"--head prompt: {path} has no mask token, so it cannot fill a cloze prompt; "
                "use --head classification"
            )
        try:
            model = AutoModelForMaskedLM.from_pretrained(path, **kwargs)
        except ValueError as err:
            raise UserError(f"--head prompt: {path} is not a masked LM ({str(err).splitlines()[0][:120]})") from None
    if head == "prompt" and num_placeholder_tokens > 0 and not config.is_encoder_decoder:
        # The original registered `歌` as an additional special token, so each copy is one token.
        if PLACEHOLDER_TOKEN not in tokenizer.get_vocab() or PLACEHOLDER_TOKEN not in tokenizer.all_special_tokens:
            tokenizer.add_special_tokens({"additional_special_tokens": [PLACEHOLDER_TOKEN]},
                                         replace_extra_special_tokens=False)
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            # New id: grow the embeddings (the original never did and would index out of range).
            model.resize_token_embeddings(len(tokenizer))
    return tokenizer, model


def write_checkpoint_info(output_dir: str | Path, task: Task, head: str, featurizer: Featurizer) -> None:
    from alsace.reporting import write_json

    info = {
        "task": task.name,
        "label_names": list(task.label_names),
        "head": head,
        "prompt_language": featurizer.prompt_language,
        "num_placeholder_tokens": featurizer.num_placeholder_tokens,
    }
    write_json(Path(output_dir) / CHECKPOINT_INFO, info)


def check_checkpoint_task(path: str, task: Task, head: str) -> None:
    """A checkpoint fine-tuned by this project must match the task's label set and the head."""
    info_path = Path(path) / CHECKPOINT_INFO
    if not info_path.is_file():
        return  # a stock or foreign checkpoint: nothing recorded to check against
    info = json.loads(info_path.read_text("utf-8"))
    if list(info.get("label_names", [])) != list(task.label_names):
        raise UserError(
            f"{path}: checkpoint was fine-tuned for labels {info.get('label_names')} ({info.get('task')}) "
            f"but --task {task.name} has {list(task.label_names)}; use a checkpoint of this task"
        )
    if info.get("head") != head:
        raise UserError(f"{path}: checkpoint was trained with --head {info.get('head')}; pass --head {info.get('head')}")
