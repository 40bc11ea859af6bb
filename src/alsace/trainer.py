"""The stock Hugging Face `Trainer` with one overridden hook: `compute_loss`.

Supervised batches (English fine-tuning, dev evaluation) and pair batches (self-distillation) both
go through `class_logits`; the loss differs:
- supervised, `full_vocab`: cross-entropy over the whole vocabulary at the mask against the gold
  label word (the original's loss); `label_words`: cross-entropy over the class logits;
- pairs: the consistency KL between the stacked halves of one forward pass.
The returned outputs carry `logits` = class logits, so the stock evaluation loop and
`compute_metrics` work unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer

from alsace.distillation import consistency_loss
from alsace.scoring import class_logits


class AlsaceTrainer(Trainer):
    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean

    def __init__(self, *args, finetune_loss: str = "label_words", kl_direction: str = "teacher_target",
                 detach_teacher: bool = False, temperature: float = 1.0, **kwargs):
        # Our batches carry `mask_pos` and `label_token_ids`, which the model's forward does not take;
        # the stock column filter would drop them.
        kwargs["args"].remove_unused_columns = False
        super().__init__(*args, **kwargs)
        self.finetune_loss = finetune_loss
        self.kl_direction = kl_direction
        self.detach_teacher = detach_teacher
        self.temperature = temperature

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "num_pairs" in inputs:
            loss, logits = self._pair_loss(model, inputs)
        else:
            loss, logits = self._supervised_loss(model, inputs)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss ({loss.item()}) at step {self.state.global_step}: lower --learning_rate, "
                "or use bf16 instead of fp16 (overflow); the last saved checkpoint is kept"
            )
        return (loss, {"logits": logits}) if return_outputs else loss

    def _supervised_loss(self, model, inputs):
        labels = inputs["labels"]  # (B,)
        if self.finetune_loss == "full_vocab" and "label_token_ids" in inputs:
            logits, vocab = class_logits(model, inputs, return_vocab=True)  # (B, C), (B, V)
            target = inputs["label_token_ids"].gather(1, labels[:, None]).squeeze(1)  # gold label word id
            return F.cross_entropy(vocab.float(), target), logits
        logits = class_logits(model, inputs)  # (B, C)
        return F.cross_entropy(logits.float(), labels), logits

    def _pair_loss(self, model, inputs):
        n = int(inputs["num_pairs"])
        logits = class_logits(model, inputs)  # (2B, C): both sides in one forward pass
        loss = consistency_loss(logits[:n], logits[n:], self.kl_direction, self.detach_teacher, self.temperature)
        return loss, logits[:n]


def compute_accuracy(eval_pred) -> dict:
    """`compute_metrics` for the Trainer: accuracy of the class logits."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    acc = float((np.asarray(logits).argmax(-1) == np.asarray(labels)).mean()) if len(labels) else math.nan
    return {"accuracy": acc}
