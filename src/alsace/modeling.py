"""Loading models and tokenizers for a head (the checkpoint record: alsace.checkpoint).

`load_tokenizer_and_model` picks the model class from the head and the checkpoint's config (masked LM,
seq2seq LM, sequence classification, multiple choice), registers the original's `歌` placeholder, and
fails at once, in one line, on a missing folder or an unreachable Hub. With `check_task`, a checkpoint's
record (`alsace.checkpoint.CheckpointInfo`) must agree with the task's labels and the head.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from alsace.checkpoint import CheckpointInfo
from alsace.errors import UserError
from alsace.prompts import PLACEHOLDER_TOKEN
from alsace.tasks import Task

logger = logging.getLogger(__name__)


HEADS = ("prompt", "classification")


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
    if check_task and (info := CheckpointInfo.read(path)) is not None:  # a stock model records nothing
        info.check(task, head)
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

    value = os.environ.get("HF_HUB_OFFLINE")
    return value is not None and value.strip().lower() in ("1", "true", "yes", "on")


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
    endpoint = os.environ.get("HF_ENDPOINT")  # a mirror; unset or without a host name: the Hub itself
    host = (urlparse(endpoint).hostname if endpoint else None) or "huggingface.co"
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
                        f"({str(err).splitlines()[0][:120]}); use --head prompt") from None  # pragma: no mutate


# Where the masked-LM head's weights live: BERT (and DeBERTa-v2's legacy layout), DeBERTa-v2, (XLM-)RoBERTa.
MLM_HEAD_PREFIXES = ("cls.", "lm_predictions.", "lm_head.")


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
        raise UserError(f"--head prompt: {path} is not a masked LM "  # pragma: no mutate
                        f"({str(err).splitlines()[0][:120]})") from None  # pragma: no mutate
    head_missing = [k for k in info["missing_keys"] if k.startswith(MLM_HEAD_PREFIXES)]
    if head_missing and config.model_type == "deberta-v2":
        config.legacy = not config.legacy
        model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True, **kwargs)
        head_missing = [k for k in info["missing_keys"] if k.startswith(MLM_HEAD_PREFIXES)]
    if head_missing:
        logger.warning("the masked-LM head of %s is not in the checkpoint (%s ...): "  # pragma: no mutate
                       "it starts at random, so "  # pragma: no mutate
                       "prompt scores mean nothing before fine-tuning", path, head_missing[0])  # pragma: no mutate
    return model


def train_only_new_token_embeddings(model, kept_rows: list[dict], special_ids=()) -> tuple[int, int]:
    """Freeze every weight of `model` but its input embeddings, and zero the gradient of the embedding row of
    every token that `kept_rows` use (their `input_ids`, and `label_token_ids` where a head scores label words
    with embeddings tied to the input ones), and of `special_ids` (the tokenizer's special tokens: `<unk>` stands
    for a different unreadable piece in every language, so no language's pairs should move it), so those rows
    never change either: an input made only of such tokens, e.g. a source-language row, is scored exactly as
    before (with weight decay 0, since decay would shrink the kept rows). Returns (trainable rows, embedding
    rows)."""
    weight = model.get_input_embeddings().weight
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    weight.requires_grad_(True)
    kept = sorted({int(i) for row in kept_rows for key in ("input_ids", "label_token_ids")
                   for i in _flat(row.get(key, []))} | {int(i) for i in special_ids})
    kept_ids = torch.tensor(kept, dtype=torch.long)
    # The Trainer may move the model after this: the ids follow the gradient's device (a no-op once there).
    weight.register_hook(lambda grad: grad.index_fill(0, kept_ids.to(grad.device), 0))
    return weight.shape[0] - len(kept), weight.shape[0]


def _flat(ids):
    return [j for i in ids for j in _flat(i)] if isinstance(ids, (list, tuple)) else [ids]
