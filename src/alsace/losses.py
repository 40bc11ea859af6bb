"""The losses: supervised fine-tuning, and the consistency loss between the two sides of a language pair.

- `supervised_loss`, `full_vocab`: cross-entropy over the whole vocabulary at the mask against the
  gold label word (the original's loss); `label_words`: cross-entropy over the class logits.
- `pair_loss`: the consistency KL (`consistency_loss`) between the stacked halves of one forward
  pass, or against the frozen teacher's logits; optionally plus an English anchor.
Each returns the loss and the class logits the Trainer reports.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from alsace.scoring import as_scorer

KL_DIRECTIONS = ("teacher_target", "student_target", "symmetric")


def consistency_loss(logits_a: torch.Tensor, logits_b: torch.Tensor, direction: str = "teacher_target",
                     detach_a: bool = False, temperature: float = 1.0,
                     min_confidence: float = 0.0, temperature_a: float | None = None) -> torch.Tensor:
    """Batch-mean KL divergence between the class distributions of the two sides of each pair.

    logits_a: `(B, C)` class logits of the higher-ranked (teacher) side; logits_b: `(B, C)` of the other.
    - teacher_target: KL(P_a || P_b), the teacher's distribution is the target (the paper);
    - student_target: KL(P_b || P_a), what the released code computes (`KLDivLoss(log P_a, log P_b)`);
    - symmetric: the mean of the two.
    With `detach_a`, no gradient flows into side a (a fixed teacher). Computed in float32, so bf16
    logits give a finite float32 loss. An empty batch gives 0.

    `min_confidence` (this project's extension; 0 = off, the paper): only pairs whose side-a maximum class
    probability (at temperature 1) is at least this value count; the loss is the mean over those pairs
    (0 when none is kept). `temperature_a` (extension; None = `temperature`): side a's own temperature,
    below 1 to sharpen the targets.
    """
    if direction not in KL_DIRECTIONS:
        raise ValueError(f"unknown kl direction {direction!r}")
    if logits_a.shape[0] == 0:
        return logits_b.float().sum() * 0.0
    if detach_a:
        logits_a = logits_a.detach()
    log_p_a = F.log_softmax(logits_a.float() / (temperature_a or temperature), dim=-1)  # (B, C)
    log_p_b = F.log_softmax(logits_b.float() / temperature, dim=-1)  # (B, C)

    def kl(log_target, log_input):  # KL(target || input) per pair, (B,)
        return (log_target.exp() * (log_target - log_input)).sum(-1)

    if direction == "teacher_target":
        per_pair = kl(log_p_a, log_p_b)
    elif direction == "student_target":
        per_pair = kl(log_p_b, log_p_a)
    else:
        per_pair = 0.5 * (kl(log_p_a, log_p_b) + kl(log_p_b, log_p_a))
    if min_confidence <= 0:
        return per_pair.mean()
    keep = (logits_a.detach().float().softmax(-1).amax(-1) >= min_confidence).float()  # (B,)
    return (per_pair * keep).sum() / keep.sum().clamp(min=1.0)


def supervised_loss(model, inputs: dict, finetune_loss: str):
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


def pair_loss(model, inputs: dict, kl_direction: str = "teacher_target", detach_teacher: bool = False,
              temperature: float = 1.0, min_teacher_confidence: float = 0.0, anchor_weight: float = 0.0,
              teacher_temperature: float | None = None):
    """Consistency loss of a pair batch (`Collator`: B higher-ranked sides, then B others).

    With a frozen teacher the batch holds only the B other sides and `teacher_logits` `(B, C)`. With
    `anchor` rows, `anchor_weight` x their supervised cross-entropy (over the class logits) is added.
    Returns the loss and the `(B, C)` class logits of the lower-ranked sides.
    """
    n = int(inputs["num_pairs"])
    sides = {k: v for k, v in inputs.items() if k not in ("num_pairs", "teacher_logits", "anchor")}
    logits = as_scorer(model)(**sides)  # (2B, C): both sides in one forward pass; (B, C) when frozen
    teacher = inputs["teacher_logits"] if "teacher_logits" in inputs else logits[:n]
    student = logits[-n:]
    loss = consistency_loss(teacher, student, kl_direction, detach_teacher, temperature, min_teacher_confidence,
                            teacher_temperature)
    if anchor_weight > 0 and "anchor" in inputs:
        anchor_loss, _ = supervised_loss(model, inputs["anchor"], "label_words")
        loss = loss + anchor_weight * anchor_loss
    return loss, student
