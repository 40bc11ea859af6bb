"""The stock Hugging Face `Trainer`; the loss is `compute_loss` (the other overrides: see below).

The Trainer trains `ClassScorer(model)`, whose `forward` is `class_logits`; supervised batches
(English fine-tuning, dev evaluation) and pair batches (self-distillation) both go through it; the loss
differs (`alsace.losses`): cross-entropy for labelled batches, the consistency KL for pair batches.
The returned outputs carry `logits` = class logits, so the stock evaluation loop and
`compute_metrics` work unchanged.

Scale-out: scoring is the forward of the module the Trainer wraps, so DDP's gradient all-reduce,
accelerate's bf16/fp16 autocast and `torch.compile` apply to it unchanged. `_save` writes the inner
Hugging Face model with `save_pretrained` (the stock Trainer would write a bare state dict for a module
that is not a `PreTrainedModel`) and keeps the training arguments as JSON (`training_args.json`), not
the pickled `training_args.bin` the stock Trainer writes.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from transformers import Trainer

from alsace.files import write_text
from alsace.losses import pair_loss, supervised_loss
from alsace.metrics import accuracy
from alsace.scoring import as_scorer


class AlsaceTrainer(Trainer):
    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean

    def __init__(self, *args, finetune_loss: str, kl_direction: str = "teacher_target",
                 detach_teacher: bool = False, temperature: float = 1.0, min_teacher_confidence: float = 0.0,
                 anchor_weight: float = 0.0, teacher_temperature: float | None = None, **kwargs):
        # The stock column filter keeps only the forward's named parameters; the scorer takes `**batch`.
        kwargs["args"].remove_unused_columns = False
        kwargs["model"] = as_scorer(kwargs["model"])  # the module whose forward is class scoring
        super().__init__(*args, **kwargs)
        self.finetune_loss = finetune_loss
        self.kl_direction = kl_direction
        self.detach_teacher = detach_teacher
        self.temperature = temperature
        self.min_teacher_confidence = min_teacher_confidence
        self.anchor_weight = anchor_weight
        self.teacher_temperature = teacher_temperature

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "num_pairs" in inputs:
            loss, logits = self._pair_loss(model, inputs)
        else:
            loss, logits = self._supervised_loss(model, inputs)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss ({loss.item()}) at optimizer step {self.state.global_step + 1}; likely causes: "
                "a learning rate too high for this model (lower --learning_rate), fp16 overflow (use --bf16), "
                "gradient clipping off (--max_grad_norm 0)"
            )
        return (loss, {"logits": logits}) if return_outputs else loss

    def _save(self, output_dir=None, state_dict=None):
        # The inner Hugging Face model, so that the checkpoint loads with `from_pretrained` (the stock
        # `_save` writes only a state dict for a module that is not a `PreTrainedModel`).
        if not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        scorer = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        scorer.model.save_pretrained(output_dir, state_dict=state_dict)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        # The stock Trainer pickles the arguments (`training_args.bin`); keep them as JSON instead.
        write_text(os.path.join(output_dir, "training_args.json"), self.args.to_json_string())

    def _supervised_loss(self, model, inputs):
        return supervised_loss(model, inputs, self.finetune_loss)

    def _pair_loss(self, model, inputs):
        return pair_loss(model, inputs, self.kl_direction, self.detach_teacher, self.temperature,
                         self.min_teacher_confidence, self.anchor_weight, self.teacher_temperature)


def compute_accuracy(eval_pred) -> dict:
    """`compute_metrics` for the Trainer: accuracy of the class logits."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    return {"accuracy": accuracy(np.asarray(logits), np.asarray(labels))}
