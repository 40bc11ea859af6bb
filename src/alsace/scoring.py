"""Class scoring: the one function every stage uses, and the featuriser that prepares its batches.

`class_logits(model, batch)` returns `(batch, num_classes)` class logits for any supported head; which
path runs follows from the batch content and `model.config`, never from a checkpoint name:

- **prompt** (masked LM, the original's default): run the encoder, take the hidden state at the mask,
  apply the LM head's transform and only the label-word rows of the decoder. Identical to the stock
  masked-LM logits at those rows, without projecting every position onto the whole vocabulary
  (XLM-R: 250,002 words) or materialising a `(batch, length, vocab)` tensor.
- **seq2seq** (mT5 / T5): prompt without a mask; the first decoder step's logits at the label rows.
- **classification**: `AutoModelForSequenceClassification` logits, or `AutoModelForMultipleChoice`
  logits for a multiple-choice task (XCOPA), whose batch holds one input per choice `(B, C, L)`.
- **candidates** (GeoMLAMA probing): class k = the mean log-probability of candidate k's pieces. A
  masked LM reads the prompt with as many masks as candidate k has pieces (so no candidate's length is
  leaked to the others); a seq2seq LM scores the pieces teacher-forced after `decoder_prefix_ids`.

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
from alsace.prompts import PLACEHOLDER_TOKEN, encode_prompt, label_word_ids, render, word_pieces
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
    label words can share a batch). Candidate batches: see `_candidate_scores`.
    """
    if "candidate_token_ids" in batch:  # probing with per-row candidate answers
        return _candidate_scores(model, batch)
    if "label_token_ids" not in batch:  # classification or multiple-choice head
        return model(**{k: batch[k] for k in MODEL_INPUTS if k in batch}).logits
    label_ids = batch["label_token_ids"]  # (B, C)
    if model.config.is_encoder_decoder:
        vocab = _first_decoder_step_logits(model, batch)  # (B, V)
        cls = vocab.gather(1, label_ids)
        return (cls, vocab) if return_vocab else cls
    hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    at_mask = hidden[rows, batch["mask_pos"]]  # (B, H)
    transform, weight, bias = mlm_head_parts(model)
    z = transform(at_mask)  # (B, H)
    if return_vocab:
        vocab = F.linear(z, weight, bias)  # (B, V), one position per example
        return vocab.gather(1, label_ids), vocab
    rows_w = weight[label_ids]  # (B, C, H): only the label-word rows
    cls = torch.einsum("bh,bch->bc", z, rows_w.to(z.dtype))
    if bias is not None:
        cls = cls + bias[label_ids].to(cls.dtype)
    return cls


class ClassScorer(torch.nn.Module):
    """The module the Trainer trains: `forward(**batch)` is `class_logits(model, batch)`.

    Scoring is then the forward of the module that DDP, accelerate's autocast and `torch.compile`
    wrap, so DDP's gradient all-reduce and bf16 autocast apply to it as to any stock model. Its
    `state_dict` is the Hugging Face model's own (same keys), so a Trainer checkpoint of the scorer
    loads with `from_pretrained` and resumes into the scorer unchanged. Any other attribute is the
    model's (the Trainer reads `config`, `_keys_to_ignore_on_save`, `tie_weights`).
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.train(model.training)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "model":  # not yet set (copying, unpickling)
                raise
            return getattr(self.model, name)

    def forward(self, labels=None, return_vocab: bool = False, **batch):
        # `labels` belong to the loss, not to scoring; naming them lets the Trainer find the labels.
        return class_logits(self.model, batch, return_vocab)

    def state_dict(self, *args, **kwargs):
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.model.load_state_dict(state_dict, strict, assign)


def as_scorer(model) -> torch.nn.Module:
    """A model wrapped in `ClassScorer`; a scorer, or its DDP / DeepSpeed / compiled wrapper, unchanged."""
    from accelerate.utils import extract_model_from_parallel

    inner = extract_model_from_parallel(model, keep_torch_compile=False)
    return model if isinstance(inner, ClassScorer) else ClassScorer(model)


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
NO_CANDIDATE = -1e4  # class logit of an absent (padding) candidate: probability ~0, finite in KL and bf16


def mlm_head_parts(model):
    """The LM head of a masked LM as `(transform, weight (V, H), bias (V,))`, by `config.model_type`.

    Stock logits = `transform(hidden) @ weight.T + bias`; splitting them lets callers project onto a
    few vocabulary rows only.
    """
    kind = model.config.model_type
    if kind in ("xlm-roberta", "roberta", "camembert", "xlm-roberta-xl"):
        head = model.lm_head
        return (lambda h: head.layer_norm(F.gelu(head.dense(h)))), head.decoder.weight, head.decoder.bias
    if kind in ("bert", "deberta-v2") and hasattr(model, "cls"):  # BERT; DeBERTa-v2 with legacy=True
        predictions = model.cls.predictions
        return predictions.transform, predictions.decoder.weight, predictions.decoder.bias
    if kind == "deberta-v2" and hasattr(model, "lm_predictions"):
        # The non-legacy head (mDeBERTa-v3's own): dense -> act -> LayerNorm, then the input embeddings.
        head = model.lm_predictions.lm_head
        transform = lambda h: head.LayerNorm(head.transform_act_fn(head.dense(h)))  # noqa: E731
        return transform, model.get_input_embeddings().weight, head.bias
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


def _candidate_scores(model, batch):
    """Probing scores `(B, K)`: mean log-probability of each candidate's pieces.

    `candidate_token_ids` `(B, K, P)` holds candidate k's pieces, padded with -100; a candidate with no
    piece is absent (rows have 2..K candidates) and scores `NO_CANDIDATE`. Masked LM: `input_ids`
    `(B, K, L)`, candidate k's input carries len(pieces_k) masks from `mask_pos` on. Seq2seq:
    `input_ids` `(B, L)` and `decoder_prefix_ids` `(B, S)` (T5's sentinel, or empty).
    """
    pieces = batch["candidate_token_ids"]  # (B, K, P)
    present = (pieces >= 0).any(-1)  # (B, K)
    valid = pieces[present] >= 0  # (N, P), N = present candidates
    if model.config.is_encoder_decoder:
        piece_logits = _seq2seq_piece_logits(model, batch, present, valid)  # (M, V), M = valid pieces
    else:
        piece_logits = _mlm_piece_logits(model, batch, present, valid)  # (M, V)
    targets = pieces[present][valid]  # (M,)
    logp = piece_logits.float().log_softmax(-1).gather(1, targets[:, None]).squeeze(1)  # (M,)
    per_piece = torch.zeros(valid.shape, dtype=logp.dtype, device=logp.device).masked_scatter(valid, logp)
    mean = per_piece.sum(-1) / valid.sum(-1)  # (N,)
    scores = torch.full(present.shape, NO_CANDIDATE, dtype=mean.dtype, device=mean.device)
    return scores.masked_scatter(present, mean)  # (B, K)


def _mlm_piece_logits(model, batch, present, valid):
    """Vocabulary logits `(M, V)` at every mask of every present candidate's input."""
    ids = batch["input_ids"][present]  # (N, L)
    hidden = model.base_model(input_ids=ids, attention_mask=batch["attention_mask"][present])[0]  # (N, L, H)
    starts = batch["mask_pos"][:, None].expand(present.shape)[present]  # (N,)
    offsets = torch.arange(valid.shape[1], device=ids.device)
    positions = (starts[:, None] + offsets).clamp(max=ids.shape[1] - 1)  # (N, P)
    at_masks = hidden.gather(1, positions[..., None].expand(-1, -1, hidden.shape[-1]))  # (N, P, H)
    transform, weight, bias = mlm_head_parts(model)
    return F.linear(transform(at_masks[valid]), weight, bias)  # (M, V)


def _seq2seq_piece_logits(model, batch, present, valid):
    """Vocabulary logits `(M, V)` of the teacher-forced decoder at every piece of every present candidate."""
    k = present.shape[1]
    ids = batch["input_ids"][:, None].expand(-1, k, -1)[present]  # (N, L): the prompt once per candidate
    attn = batch["attention_mask"][:, None].expand(-1, k, -1)[present]
    prefix = batch["decoder_prefix_ids"][:, None].expand(-1, k, -1)[present]  # (N, S)
    targets = torch.cat([prefix, batch["candidate_token_ids"][present]], 1)  # (N, S + P)
    start = torch.full_like(targets[:, :1], model.config.decoder_start_token_id)
    decoder_input_ids = torch.cat([start, targets[:, :-1]], 1)  # shifted right
    decoder_input_ids = decoder_input_ids.masked_fill(decoder_input_ids < 0, model.config.pad_token_id)
    logits = model(input_ids=ids, attention_mask=attn, decoder_input_ids=decoder_input_ids).logits
    return logits[:, prefix.shape[1]:][valid]  # (M, V): the positions predicting the pieces


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
    prompt_language: str = "en"  # "en": the source language's prompt for all (original); "native": per language
    is_seq2seq: bool = False
    languages: tuple[str, ...] | None = None  # languages the run uses (default: all of the task's)

    def __post_init__(self):
        self._label_ids = {}
        if self.task.candidate_field and self.head != "prompt":
            raise UserError(f"--head {self.head}: task {self.task.name} scores candidate answers with the LM "
                            "itself; use --head prompt")
        if self.head == "prompt":
            if not self.is_seq2seq and self.tokenizer.mask_token is None:
                raise UserError("--head prompt needs a tokenizer with a mask token; use --head classification")
            if self.task.candidate_field:
                # T5-style sentinel marking the answer slot, when the tokenizer has one (mT5 does).
                sentinel = "<extra_id_0>"
                self._sentinel = sentinel if self.is_seq2seq and sentinel in self.tokenizer.get_vocab() else None
                return  # candidates are the answers: no label words
            if self.task.source_language not in self.task.templates:
                raise UserError(f"--head prompt: task {self.task.name} has no prompt (template and label words); "
                                "add one to the task file or use --head classification")
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
        return self.task.source_language

    def label_token_ids(self, lang: str) -> list[int]:
        return self._label_ids[lang]

    def encode_row(self, row: dict, lang: str) -> dict:
        if self.task.candidate_field:
            feats = self._encode_candidates(row)
        elif self.head == "classification" and self.task.choice_fields:
            feats = self._encode_choices(row)
        elif self.head == "classification":
            fields = [row[f] for f in self.task.text_fields]
            enc = self.tokenizer(*fields, truncation=True, max_length=self.max_length)
            feats = {k: enc[k] for k in ("input_ids", "token_type_ids") if k in enc}
        else:
            enc = encode_prompt(
                self.tokenizer,
                self.task.templates[self.prompt_key(lang)],
                {f: row[f] for f in self.task.text_fields},
                self.max_length,
                0 if self.is_seq2seq else self.num_placeholder_tokens,
                use_mask=not self.is_seq2seq,
            )
            feats = {"input_ids": enc.input_ids, "mask_pos": enc.mask_pos,
                     "label_token_ids": self._label_ids[lang]}
        if "label" in row:
            feats["labels"] = row["label"]
        return feats

    def _encode_choices(self, row: dict) -> dict:
        """Multiple-choice head: one (shared context, choice) pair per class, `(C, L_c)`."""
        context, _ = render(self.task.choice_context, row, mask="", placeholders="")
        choices = [row[f] for f in self.task.choice_fields]
        enc = self.tokenizer([context] * len(choices), choices, truncation=True, max_length=self.max_length)
        return {k: enc[k] for k in ("input_ids", "token_type_ids") if k in enc}

    def _encode_candidates(self, row: dict) -> dict:
        """Probing: the prompt with its mask slot, and each candidate's pieces (padded to the task's K).

        Masked LM: one input per candidate, the slot expanded to as many masks as that candidate has
        pieces. Seq2seq: one input with T5's sentinel in the slot (nothing if the tokenizer has none).
        """
        candidates = row[self.task.candidate_field]
        pieces = [word_pieces(self.tokenizer, c) for c in candidates]
        if not all(pieces):
            raise UserError(f"task {self.task.name}: a candidate of {candidates} has no sub-token in this tokenizer")
        left, right = row[self.task.text_fields[0]].split(self.task.mask_slot)
        absent = [[] for _ in range(self.task.num_labels - len(pieces))]  # fixed K for every batch
        if self.is_seq2seq:
            enc = encode_prompt(self.tokenizer, "{left}{mask}{right}", {"left": left, "right": right},
                                self.max_length, 0, use_mask=self._sentinel is not None, mask_token=self._sentinel)
            prefix = [self.tokenizer.convert_tokens_to_ids(self._sentinel)] if self._sentinel else []
            return {"input_ids": enc.input_ids, "candidate_token_ids": pieces + absent, "decoder_prefix_ids": prefix}
        longest = max(len(p) for p in pieces)  # room for the extra masks of the longest candidate
        enc = encode_prompt(self.tokenizer, "{left}{mask}{right}", {"left": left, "right": right},
                            self.max_length - (longest - 1), 0)
        ids, at = enc.input_ids, enc.mask_pos
        mask_id = self.tokenizer.mask_token_id
        inputs = [ids[:at] + [mask_id] * len(p) + ids[at + 1:] for p in pieces]
        return {"input_ids": inputs + absent, "mask_pos": at, "candidate_token_ids": pieces + absent}

    def encode(self, rows: list[dict], lang: str) -> list[dict]:
        return [self.encode_row(row, lang) for row in rows]


# Padding value per batch key; `input_ids` use the tokenizer's pad id. -100 marks absent pieces.
PAD_VALUES = {"token_type_ids": 0, "candidate_token_ids": -100, "decoder_prefix_ids": 0}
BATCH_KEYS = ("input_ids", "token_type_ids", "mask_pos", "label_token_ids", "candidate_token_ids",
              "decoder_prefix_ids", "labels")


class Collator:
    """Pads a list of features into a batch; pair features (`a`, `b`) are stacked into one batch.

    A distillation pair batch of B pairs becomes one `(2B, ...)` batch, the B higher-ranked sides
    first, so that both sides go through the model in a single forward pass. With a frozen teacher
    the pairs carry side a's class logits instead: a `(B, ...)` batch of the b sides plus
    `teacher_logits` `(B, C)`. Anchor rows (labelled, supervised) become a nested batch `anchor`.
    Features with one input per class (multiple choice, candidates) become `(B, C, L)` tensors.
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> dict:
        if "b" in features[0]:  # distillation pairs
            sides = [f["a"] for f in features if "a" in f] + [f["b"] for f in features]
            batch = self(sides)
            batch["num_pairs"] = torch.tensor(len(features))
            if "teacher_logits" in features[0]:
                batch["teacher_logits"] = torch.tensor([f["teacher_logits"] for f in features], dtype=torch.float32)
            if "anchor" in features[0]:
                batch["anchor"] = self([f["anchor"] for f in features])
            return batch
        batch = {}
        for key in BATCH_KEYS:
            if key in features[0]:
                pad = self.pad_token_id if key == "input_ids" else PAD_VALUES.get(key, 0)
                batch[key] = _pad([f[key] for f in features], pad)
        batch["attention_mask"] = _pad([_ones_like(f["input_ids"]) for f in features], 0)
        return batch


def _ones_like(ids: list) -> list:
    return [_ones_like(x) for x in ids] if ids and isinstance(ids[0], list) else [1] * len(ids)


def _pad(values: list, pad: int) -> torch.Tensor:
    """ints -> `(B,)`; lists of ints -> `(B, L)`; lists of lists -> `(B, K, L)`, padded with `pad`."""
    if isinstance(values[0], int):
        return torch.tensor(values, dtype=torch.long)
    if values[0] and isinstance(values[0][0], list):
        k = max(len(v) for v in values)
        length = max((len(x) for v in values for x in v), default=0)
        out = torch.full((len(values), k, length), pad, dtype=torch.long)
        for i, v in enumerate(values):
            for j, x in enumerate(v):
                out[i, j, : len(x)] = torch.tensor(x, dtype=torch.long)
        return out
    out = torch.full((len(values), max(len(v) for v in values)), pad, dtype=torch.long)
    for i, v in enumerate(values):
        out[i, : len(v)] = torch.tensor(v, dtype=torch.long)
    return out


# --------------------------------------------------------------------------------------------------
# Loading models and tokenizers
# --------------------------------------------------------------------------------------------------


def load_tokenizer_and_model(path: str, head: str, task: Task, num_placeholder_tokens: int,
                             trust_remote_code: bool = False, check_task: bool = False):
    """Load a tokenizer and the model for `head`; register the `歌` placeholder like the original."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    if head not in HEADS:
        raise UserError(f"--head {head!r}: choose one of {', '.join(HEADS)}")
    if looks_like_path(path) and not Path(path).expanduser().is_dir():
        raise UserError(f"--model_name_or_path {path}: directory not found (relative to {Path.cwd()}); "
                        "pass the folder of a downloaded model or checkpoint, or a Hub id such as xlm-roberta-base")
    hub = {} if Path(path).expanduser().is_dir() else hub_access(path)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, **hub)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, **hub)
    except (OSError, ValueError) as err:
        if hub.get("local_files_only"):
            offline = ("HF_HUB_OFFLINE=1 is set" if hub_is_offline() else
                       "the Hub is unreachable (set HF_HUB_OFFLINE=1 on offline machines to skip the check)")
            raise UserError(
                f"--model_name_or_path {path}: no such local directory and not in the Hugging Face cache, and "
                f"{offline}; download it where there is internet (MODEL=<hub id> bash run_script/prepare_data.sh) "
                "and pass its directory"
            ) from None
        raise UserError(
            f"--model_name_or_path {path}: could not load it ({str(err).splitlines()[0][:160]}); "
            "without internet, snapshot the model elsewhere and pass its local directory"
        ) from None
    if check_task:
        check_checkpoint_task(path, task, head)
    kwargs = {"config": config, "trust_remote_code": trust_remote_code}
    if head == "classification":
        model = _load_classifier(path, task, config, kwargs)
    elif config.is_encoder_decoder:
        model = AutoModelForSeq2SeqLM.from_pretrained(path, **kwargs)
    else:
        if tokenizer.mask_token is None:
            raise UserError(
                f"--head prompt: {path} has no mask token, so it cannot fill a cloze prompt; "
                "use --head classification"
            )
        model = _load_masked_lm(path, config, kwargs)
    if head == "prompt" and num_placeholder_tokens > 0 and not config.is_encoder_decoder:
        # The original registered `歌` as an additional special token, so each copy is one token.
        if PLACEHOLDER_TOKEN not in tokenizer.get_vocab() or PLACEHOLDER_TOKEN not in tokenizer.all_special_tokens:
            tokenizer.add_special_tokens({"additional_special_tokens": [PLACEHOLDER_TOKEN]},
                                         replace_extra_special_tokens=False)
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            # New id: grow the embeddings (the original never did and would index out of range).
            _grow_vocabulary(model, len(tokenizer))
    return tokenizer, model


# Hub routes that no user or organisation can be named after: `models/x` is always a local path.
RESERVED_HUB_NAMES = {"models", "datasets", "spaces", "docs"}


def looks_like_path(path: str) -> bool:
    """A value that can only be a local path: never sent to the Hub, so a typo fails at once.

    Hub ids are `name` or `owner/name`; anything starting with `.`, `/` or `~`, with a backslash or
    more than one `/`, or whose first part is a reserved word or an existing local folder is a path.
    """
    first = path.split("/")[0]
    return (path.startswith((".", "/", "~")) or "\\" in path or path.count("/") > 1 or Path(path).exists()
            or ("/" in path and (first in RESERVED_HUB_NAMES or Path(first).is_dir())))


def hub_is_offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on")


def hub_access(model_id: str) -> dict:
    """`{"local_files_only": True}` when the Hub cannot be reached, so loading skips 30 s of retries.

    HF_HUB_OFFLINE=1 says so explicitly; otherwise one 3-second connection attempt decides (skipped
    behind a proxy, which only the HTTP client knows how to use). A cached model still loads.
    """
    import os
    import socket
    from urllib.parse import urlparse

    if hub_is_offline():
        return {"local_files_only": True}
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return {}
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        logger.warning("the Hugging Face Hub (%s) is unreachable: looking for %s in the local cache only",
                       host, model_id)
        return {"local_files_only": True}
    return {}


def _grow_vocabulary(model, size: int) -> None:
    """`resize_token_embeddings`, except for DeBERTa-v2's non-legacy head.

    There transformers (5.24) treats the head's hidden-to-hidden `dense` layer as the output embeddings
    and would resize it; the head's real output weights are the input embeddings plus a bias, so those
    two are grown here (new rows: the mean embedding, bias 0).
    """
    if not hasattr(model, "lm_predictions"):
        model.resize_token_embeddings(size)
        return
    old = model.get_input_embeddings()
    grown = torch.nn.Embedding(size, old.embedding_dim, padding_idx=old.padding_idx).to(old.weight.device)
    with torch.no_grad():
        grown.weight[: old.num_embeddings] = old.weight
        grown.weight[old.num_embeddings :] = old.weight.mean(0)
    model.set_input_embeddings(grown)
    head = model.lm_predictions.lm_head
    head.bias = torch.nn.Parameter(torch.cat([head.bias.data, head.bias.data.new_zeros(size - head.bias.numel())]))
    model.config.vocab_size = size


def _load_classifier(path: str, task: Task, config, kwargs):
    """`AutoModelForMultipleChoice` for a multiple-choice task (XCOPA), else sequence classification."""
    from transformers import AutoModelForMultipleChoice, AutoModelForSequenceClassification

    auto = AutoModelForMultipleChoice if task.choice_fields else AutoModelForSequenceClassification
    config.num_labels = task.num_labels
    config.id2label = dict(enumerate(task.label_names))
    config.label2id = {n: i for i, n in enumerate(task.label_names)}
    try:
        return auto.from_pretrained(path, **kwargs)
    except ValueError as err:
        raise UserError(f"--head classification: model type {config.model_type!r} has no {auto.__name__} head "
                        f"({str(err).splitlines()[0][:120]}); use --head prompt") from None


def _load_masked_lm(path: str, config, kwargs):
    """A masked LM whose MLM head really comes from the checkpoint.

    DeBERTa-v2/v3 checkpoints from Microsoft (mDeBERTa-v3 included) store the non-legacy head
    (`lm_predictions.*`), while transformers defaults to `legacy=True` (`cls.*`) and would start that head
    at random; a checkpoint saved with the other layout is reloaded with `legacy` flipped.
    """
    from transformers import AutoModelForMaskedLM

    kwargs = {**kwargs, "config": config}
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True, **kwargs)
    except ValueError as err:
        raise UserError(f"--head prompt: {path} is not a masked LM ({str(err).splitlines()[0][:120]})") from None
    head_missing = [k for k in info["missing_keys"] if k.startswith(("cls.", "lm_predictions.", "lm_head."))]
    if head_missing and config.model_type == "deberta-v2":
        config.legacy = not config.legacy
        model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True, **kwargs)
        head_missing = [k for k in info["missing_keys"] if k.startswith(("cls.", "lm_predictions."))]
    if head_missing:
        logger.warning("the masked-LM head of %s is not in the checkpoint (%s ...): it starts at random, so "
                       "prompt scores mean nothing before fine-tuning", path, head_missing[0])
    return model


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


def placeholder_count(model_path: str, task, flag: int | None) -> int:
    """The flag if given, else what the checkpoint was fine-tuned with, else the task's default."""
    if flag is not None:
        return flag
    info = Path(model_path) / CHECKPOINT_INFO
    if info.is_file():
        return int(json.loads(info.read_text("utf-8"))["num_placeholder_tokens"])
    return task.num_placeholder_tokens


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
