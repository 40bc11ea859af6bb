"""The losses: supervised fine-tuning, and the consistency loss between the two sides of a language pair.

- `supervised_loss`, `full_vocab`: cross-entropy over the whole vocabulary at the mask against the
  gold label word (the original's loss); `label_words`: cross-entropy over the class logits.
- `pair_loss`: the consistency KL (`consistency_loss`) between the stacked halves of one forward
  pass, or against the frozen teacher's logits; optionally plus an English anchor.
Each returns the loss and the class logits the Trainer reports. The consistency loss's options are
named once, in `LossConfig`; the command line builds it (`DistillArguments.loss_config`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alsace.features import BatchKind, batch_kind
from alsace.pairs import PAIR_KEYS
from alsace.scoring import as_scorer

KL_DIRECTIONS = ("teacher_target", "student_target", "symmetric")
ANCHOR_TARGETS = ("labels", "self")  # the anchor rows' target: gold labels, or the starting checkpoint's own distribution


@dataclass(frozen=True)
class LossConfig:
    """The options of the consistency loss, with the paper's values as defaults (the command line's
    `DistillArguments` takes its flags' defaults from here).

    - kl_direction: teacher_target = KL(P_teacher || P_student), the paper; student_target =
      KL(P_student || P_teacher), what the released code computes (`KLDivLoss(log P_a, log P_b)`);
      symmetric = the mean of the two;
    - detach_teacher: no gradient flows into the teacher side (a fixed teacher);
    - temperature: the softmax temperature of both sides;
    - min_teacher_confidence (this project's extension; 0 = off, the paper): only pairs whose teacher-side
      maximum class probability (at temperature 1) is at least this value count; the loss is the mean over
      those pairs (0 when none is kept);
    - anchor_weight (extension; 0 = off): this weight x the anchor loss of the batch's source-language anchor
      rows is added (the supervised cross-entropy, or with `anchor_logits` the KL from the starting checkpoint's
      distribution: `pair_loss`);
    - teacher_temperature (extension; None = `temperature`): the teacher side's own temperature, below 1 to
      sharpen the targets;
    - anchor_features_weight (extension; 0 = off): this weight x `feature_anchor_loss` of the same anchor rows
      is added (their hidden states held at the starting model's).
    - source_alignment_weight (extension; 0 = off): this weight x `source_alignment_loss` of the lower-ranked
      sides is added (each row's pooled hidden states pulled to the starting model's on the same item in the
      source language; the batch carries those as `source_features`).
    """

    kl_direction: str = "teacher_target"
    detach_teacher: bool = False
    temperature: float = 1.0
    min_teacher_confidence: float = 0.0
    anchor_weight: float = 0.0
    teacher_temperature: float | None = None
    anchor_features_weight: float = 0.0
    source_alignment_weight: float = 0.0


def consistency_loss(logits_a: torch.Tensor, logits_b: torch.Tensor, config: LossConfig = LossConfig()) -> torch.Tensor:
    """Batch-mean KL divergence between the class distributions of the two sides of each pair.

    logits_a: `(B, C)` class logits of the higher-ranked (teacher) side; logits_b: `(B, C)` of the other.
    The options (`LossConfig`): the KL's direction, a detached teacher side, the temperatures and the
    teacher-confidence filter; `anchor_weight` is `pair_loss`'s. Computed in float32, so bf16 logits give a
    finite float32 loss. An empty batch gives 0.
    """
    if config.kl_direction not in KL_DIRECTIONS:
        raise ValueError(f"unknown kl direction {config.kl_direction!r}")
    if logits_a.shape[0] == 0:
        return logits_b.float().sum() * 0.0
    if config.detach_teacher:
        logits_a = logits_a.detach()
    teacher_temperature = config.teacher_temperature or config.temperature
    log_p_a = F.log_softmax(logits_a.float() / teacher_temperature, dim=1)  # (B, C)
    log_p_b = F.log_softmax(logits_b.float() / config.temperature, dim=1)  # (B, C)

    def kl(log_target, log_input):  # KL(target || input) per pair, (B,)
        return (log_target.exp() * (log_target - log_input)).sum(1)

    if config.kl_direction == "teacher_target":
        per_pair = kl(log_p_a, log_p_b)
    elif config.kl_direction == "student_target":
        per_pair = kl(log_p_b, log_p_a)
    else:
        per_pair = 0.5 * (kl(log_p_a, log_p_b) + kl(log_p_b, log_p_a))
    if config.min_teacher_confidence <= 0:
        return per_pair.mean()
    keep = (logits_a.detach().float().softmax(1).amax(1) >= config.min_teacher_confidence).float()  # (B,)
    return (per_pair * keep).sum() / keep.sum().clamp(min=1.0)


def supervised_loss(model, inputs: dict, finetune_loss: str = "label_words"):
    """Fine-tuning loss and `(B, C)` class logits of a labelled batch (the Trainer's step; benchmarked)."""
    labels = inputs["labels"]  # (B,)
    if finetune_loss == "full_vocab" and "label_token_ids" in inputs:
        # Whole vocabulary at the mask only: equal to the stock masked-LM loss with every other
        # position ignored, without the (B, L, V) logits.
        logits, vocab = as_scorer(model)(**inputs, return_vocab=True)  # (B, C), (B, V)
        target = inputs["label_token_ids"].gather(1, labels[:, None]).squeeze(1)  # gold label word id
        return F.cross_entropy(vocab.float(), target), logits
    logits = as_scorer(model)(**inputs)  # (B, C)
    return F.cross_entropy(logits.float(), labels), logits


def feature_anchor_loss(model, reference, rows: dict) -> torch.Tensor:
    """How far the model's hidden states on `rows` moved from the frozen starting model's `reference`.

    The mean over the hidden-state layers (the embeddings' output and every layer's; an encoder-decoder's
    encoder) of the squared difference per non-padding token and hidden unit. Both models run in eval mode
    (no dropout), so the loss is 0 while the model still equals the start; the gradient flows into the model
    only. The class logits' anchor holds a few numbers per row, and the network can keep those on the
    anchored rows while the source language's unseen rows move; this holds the whole representation.
    """
    from accelerate.utils import extract_model_from_parallel

    from alsace.scoring import MODEL_INPUTS

    inner = extract_model_from_parallel(model)  # a ClassScorer passes config, base_model, get_encoder through
    encoder = (lambda m: m.get_encoder() if m.config.is_encoder_decoder else m.base_model)
    features = {k: v for k, v in rows.items() if k in MODEL_INPUTS}
    reference.to(features["input_ids"].device)
    with torch.no_grad():
        start = encoder(reference.eval())(**features, output_hidden_states=True).hidden_states
    training = inner.training
    inner.eval()
    try:
        now = encoder(inner)(**features, output_hidden_states=True).hidden_states
    finally:
        inner.train(training)
    mask = features["attention_mask"].unsqueeze(-1).float()  # (B, L, 1)
    per_layer = [(((h.float() - h0.float()) ** 2) * mask).sum() / (mask.sum() * h.shape[-1]) for h, h0 in zip(now, start)]
    return sum(per_layer) / len(per_layer)


def pooled_hidden_states(hidden_states, attention_mask: torch.Tensor) -> torch.Tensor:
    """`(B, layers, H)` float32: each layer's hidden states `(B, L, H)` averaged over the row's non-padding tokens."""
    mask = attention_mask.unsqueeze(-1).float()  # (B, L, 1)
    return torch.stack([(h.float() * mask).sum(1) / mask.sum(1) for h in hidden_states], dim=1)


def source_alignment_loss(pooled: torch.Tensor, source_features: torch.Tensor) -> torch.Tensor:
    """Mean over rows, layers and hidden units of the squared difference between the rows' pooled hidden
    states `(B, layers, H)` and the starting model's pooled hidden states on the same items in the source language.

    A class distribution gives a row 7 numbers to match; the pooled hidden states of its source-language
    translation give every layer's whole summary (cross-lingual alignment by distilling representations, as in
    Reimers and Gurevych 2020), so a language's token embeddings learn where the source language's meaning sits.
    """
    return ((pooled - source_features.float()) ** 2).mean()


def pair_loss(model, inputs: dict, config: LossConfig = LossConfig(), reference=None):
    """Consistency loss of a pair batch (`alsace.pairs.PairCollator`: B higher-ranked sides, then B others).

    A frozen-teacher batch (`BatchKind.FROZEN_PAIRS`) holds only the B other sides and `teacher_logits` `(B, C)`. With
    `anchor` rows, `config.anchor_weight` x their supervised cross-entropy (over the class logits) is added, or,
    when the batch carries `anchor_logits` `(B, C)` (`--anchor_target self`), x KL(softmax(anchor_logits) ||
    the model's distribution on the anchor rows) at temperature 1; with `config.anchor_features_weight`, also
    that weight x `feature_anchor_loss` of the anchor rows against `reference`, the frozen starting model. With
    `source_features` `(B, layers, H)` (`--source_alignment_weight`), `config.source_alignment_weight` x
    `source_alignment_loss` of the lower-ranked sides, from the same forward pass.
    Returns the loss and the `(B, C)` class logits of the lower-ranked sides.
    """
    kind = batch_kind(inputs)
    if kind is BatchKind.PLAIN:
        raise ValueError("pair_loss needs a pair batch (alsace.pairs.PairCollator), "  # pragma: no mutate
                         "got a plain one")  # pragma: no mutate
    n = int(inputs["num_pairs"])
    sides = {k: v for k, v in inputs.items() if k not in PAIR_KEYS}
    source = inputs.get("source_features")  # (B, layers, H): the items' source-language features, when aligned
    if source is None and config.source_alignment_weight > 0:
        raise ValueError("source_alignment_weight > 0 needs the batch's source_features (PairDataset)")  # pragma: no mutate
    if source is None:
        logits = as_scorer(model)(**sides)  # (2B, C): both sides in one forward pass; (B, C) when frozen
    else:
        logits, hidden = as_scorer(model)(**sides, return_hidden=True)
    teacher = inputs["teacher_logits"] if kind is BatchKind.FROZEN_PAIRS else logits[:n]
    student = logits[-n:]
    loss = consistency_loss(teacher, student, config)
    if source is not None:
        pooled = pooled_hidden_states([h[-n:] for h in hidden], sides["attention_mask"][-n:])
        loss = loss + config.source_alignment_weight * source_alignment_loss(pooled, source)
    if config.anchor_weight > 0 and inputs.get("anchor") is not None:  # the batch's anchor rows, when it has them
        if inputs.get("anchor_logits") is not None:  # --anchor_target self: KL from the starting distribution
            anchor_loss = consistency_loss(inputs["anchor_logits"], as_scorer(model)(**inputs["anchor"]))
        else:
            anchor_loss, _ = supervised_loss(model, inputs["anchor"])  # the class cross-entropy
        loss = loss + config.anchor_weight * anchor_loss
        if config.anchor_features_weight > 0:  # and the rows' hidden states, at the starting model's
            if reference is None:
                raise ValueError("anchor_features_weight > 0 needs the frozen starting model (reference)")
            loss = loss + config.anchor_features_weight * feature_anchor_loss(model, reference, inputs["anchor"])
    return loss, student
