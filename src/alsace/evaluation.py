"""Batched inference over many languages at once: length-sorted, `inference_mode`, exact-once.

Evaluation and teacher selection both need class logits for every row of every language. All rows are
pooled, sorted by length (so a batch holds similar lengths and little padding), scored with
`class_logits`, and scattered back to their original order. Under data parallelism each rank scores
every world_size-th batch and the results are all-gathered, so every row is counted exactly once
(no distributed-sampler padding) and every rank ends with the same arrays.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from tqdm.auto import tqdm

from alsace.distributed import rank_and_world, show_progress
from alsace.features import Collator
from alsace.metrics import accuracy
from alsace.scoring import ClassScorer, class_logits


def eval_bf16(training_args) -> bool:
    """bf16 autocast for our own scoring passes (evaluation, teacher selection) when asked for.

    TF32 needs nothing here: `TrainingArguments(tf32=True)` switches it on globally when parsed.
    """
    return bool(training_args.bf16 or training_args.bf16_full_eval)


def predict_logits(model, features: list[dict], collator: Collator, batch_size: int,
                   device, bf16: bool = False, desc: str = "scoring") -> np.ndarray:
    """Class logits `(N, C)` float32 for `features`, in their original order."""
    return _score_rows(model, features, collator, batch_size, device, bf16, desc, class_logits)


def pooled_features(model, features: list[dict], collator: Collator, batch_size: int, device,
                    bf16: bool = False) -> np.ndarray:
    """`(N, layers, H)` float32: each row's hidden states averaged over its tokens, every layer, in row order
    (`alsace.losses.pooled_hidden_states` of `class_logits`'s pass)."""
    from alsace.losses import pooled_hidden_states

    def pooled(m, batch):
        _, hidden = class_logits(m, batch, return_hidden=True)
        return pooled_hidden_states(hidden, batch["attention_mask"])

    return _score_rows(model, features, collator, batch_size, device, bf16, "pooling", pooled)


def _score_rows(model, features: list[dict], collator: Collator, batch_size: int, device, bf16: bool,
                desc: str, fn) -> np.ndarray:
    """`fn(model, batch)` float32 per row of `features`, in their original order: length-sorted batches in
    eval mode under `inference_mode` (and bf16 autocast when asked), each rank scoring every
    world_size-th batch, all-gathered so that every rank returns every row exactly once."""
    order = sorted(range(len(features)), key=lambda i: _num_tokens(features[i]["input_ids"]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rank, world = rank_and_world()
    mine = batches[rank::world]
    model = model.model if isinstance(model, ClassScorer) else model  # the Trainer's callbacks pass the scorer
    was_training = model.training
    model.to(device)  # distillation scores the pool before the Trainer has placed the model
    model.eval()
    autocast = (torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
                if bf16 else contextlib.nullcontext())
    results = []
    with torch.inference_mode(), autocast:
        for idx in tqdm(mine, desc=desc, disable=not show_progress(), leave=False):
            batch = collator([_without_labels(features[i]) for i in idx])
            batch = {k: v.to(device) for k, v in batch.items()}
            results.append((idx, fn(model, batch).float().cpu().numpy()))
    model.train(was_training)
    if world > 1:
        gathered = [None] * world
        torch.distributed.all_gather_object(gathered, results)
        results = [r for part in gathered for r in part]
    out = np.empty((len(features), *results[0][1].shape[1:]), dtype=np.float32)
    for idx, rows in results:
        out[idx] = rows
    return out


def _num_tokens(ids: list) -> int:
    # Multiple-choice and candidate features hold one sequence per class: sort by their total length.
    return sum(len(x) for x in ids) if ids and isinstance(ids[0], list) else len(ids)


def _without_labels(feature: dict) -> dict:
    # Scoring never needs gold labels; dropping them here keeps selection provably label-free.
    return {k: v for k, v in feature.items() if k != "labels"}


def score_languages(model, features_by_lang: dict[str, list[dict]], collator: Collator,
                    batch_size: int, device, bf16: bool = False, desc: str = "scoring") -> dict[str, np.ndarray]:
    """Class logits per language from one length-sorted pass over all languages together."""
    langs = list(features_by_lang)
    pooled = [f for lang in langs for f in features_by_lang[lang]]
    logits = predict_logits(model, pooled, collator, batch_size, device, bf16, desc)
    out, start = {}, 0
    for lang in langs:
        n = len(features_by_lang[lang])
        out[lang] = logits[start : start + n]
        start += n
    return out


def evaluate_languages(model, features_by_lang: dict[str, list[dict]], collator: Collator,
                       batch_size: int, device, bf16: bool = False) -> dict:
    """Per-language accuracy: `{lang: {"accuracy", "n", "logits" (N, C), "labels" (N,), "distinct_inputs"}}`.

    `distinct_inputs`: how many different token sequences the rows became; far fewer than `n` means the
    tokenizer reads little of the language (e.g. most pieces `<unk>`), so its rows cannot be told apart."""
    logits = score_languages(model, features_by_lang, collator, batch_size, device, bf16, desc="evaluating")
    out = {}
    for lang, lang_logits in logits.items():
        labels = np.array([f["labels"] for f in features_by_lang[lang]], dtype=np.int64)
        out[lang] = {"accuracy": accuracy(lang_logits, labels), "n": int(len(labels)),
                     "logits": lang_logits, "labels": labels,
                     "distinct_inputs": distinct_inputs(features_by_lang[lang])}
    return out


def distinct_inputs(features: list[dict]) -> int:
    """How many different token sequences `features` (one language's rows) hold."""
    return len({_hashable(f["input_ids"]) for f in features})


def _hashable(ids):
    """Token ids as nested tuples (a multiple-choice row holds one sequence per candidate)."""
    return tuple(_hashable(x) for x in ids) if isinstance(ids, (list, tuple)) else ids
