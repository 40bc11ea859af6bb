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

import logging
import os

import numpy as np
import torch
from transformers import Trainer

from alsace.features import BatchKind, batch_kind
from alsace.files import write_text
from alsace.losses import LossConfig, pair_loss, supervised_loss
from alsace.metrics import accuracy
from alsace.scoring import as_scorer

logger = logging.getLogger("alsace.trainer")


class AlsaceTrainer(Trainer):
    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean

    def __init__(self, *args, finetune_loss: str, loss_config: LossConfig = LossConfig(), train_collator=None,
                 reference_model=None, **kwargs):
        # The stock column filter keeps only the forward's named parameters; the scorer takes `**batch`.
        kwargs["args"].remove_unused_columns = False
        kwargs["model"] = as_scorer(kwargs["model"])  # the module whose forward is class scoring
        self.finetune_loss = finetune_loss
        self.loss_config = loss_config  # the consistency loss's options (pair batches)
        self.reference_model = reference_model  # the frozen starting model (--anchor_features_weight), or None
        # The training batches' collator when it differs from the evaluation one (`data_collator`): pairs.
        self.train_collator = train_collator or kwargs.get("data_collator")
        self._decide_unused_parameter_search(kwargs)  # before the accelerator (and its DDP settings) exists
        super().__init__(*args, **kwargs)

    def _decide_unused_parameter_search(self, kwargs) -> None:
        """DDP's `find_unused_parameters` only when this configuration leaves a parameter without a gradient.

        The stock Trainer turns the search on for any module that is not a `PreTrainedModel` (the scorer
        is not), costing every step an extra autograd traversal and every rank a warning. One loss on the
        first two training items, before training (RNG state restored), says whether any trainable
        parameter gets no gradient; all ranks take rank 0's answer. An explicit
        `--ddp_find_unused_parameters` wins.
        """
        from transformers.training_args import ParallelMode

        from alsace.distributed import broadcast_from_main

        args, data = kwargs["args"], kwargs.get("train_dataset")
        if (args.ddp_find_unused_parameters is not None or args.parallel_mode != ParallelMode.DISTRIBUTED
                or args.deepspeed or data is None or len(data) == 0):
            return
        scorer, device = kwargs["model"], args.device
        scorer.to(device)
        batch = self.train_collator([data[i] for i in range(min(2, len(data)))])
        batch = type(batch)({k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()})
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            self._loss(scorer, batch)[0].backward()
        unused = [n for n, p in scorer.named_parameters() if p.requires_grad and p.grad is None]
        scorer.zero_grad(set_to_none=True)
        args.ddp_find_unused_parameters = bool(broadcast_from_main(unused))
        logger.info("DDP: %s", f"{len(unused)} trainable parameters get no gradient (e.g. {unused[0]}): "
                    "searching for unused parameters every step" if unused else
                    "every trainable parameter gets a gradient: no unused-parameter search")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, logits = self._loss(model, inputs)
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

    def _issue_warnings_after_load(self, load_result):
        # A resumed checkpoint lacks tied weights by design (XLM-R's lm_head.decoder.* are the input
        # embeddings and lm_head.bias, saved once under those names): not worth an alarming warning.
        state = self.model.state_dict()
        missing = set(load_result.missing_keys)
        by_storage = {}
        for name, tensor in state.items():
            by_storage.setdefault(tensor.data_ptr(), []).append(name)
        real = [k for k in load_result.missing_keys
                if k not in state or all(other in missing for other in by_storage[state[k].data_ptr()])]
        super()._issue_warnings_after_load(load_result._replace(missing_keys=real))

    def get_train_dataloader(self):
        # The stock Trainer has one collator for every split; training batches may be pairs.
        eval_collator, self.data_collator = self.data_collator, self.train_collator
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = eval_collator

    def _loss(self, model, inputs):
        """The loss of the batch's kind: supervised for plain batches, the consistency loss for pairs."""
        if batch_kind(inputs) is BatchKind.PLAIN:
            return self._supervised_loss(model, inputs)
        return self._pair_loss(model, inputs)

    def _supervised_loss(self, model, inputs):
        return supervised_loss(model, inputs, self.finetune_loss)

    def _pair_loss(self, model, inputs):
        return pair_loss(model, inputs, self.loss_config, reference=self.reference_model)


def compute_accuracy(eval_pred) -> dict:
    """`compute_metrics` for the Trainer: accuracy of the class logits."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    return {"accuracy": accuracy(np.asarray(logits), np.asarray(labels))}
