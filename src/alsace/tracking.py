"""Experiment tracking: `--report_to` checks and per-language dev metrics during training (the Trainer side;
the scalars and their table are results-side, in `alsace.report.results`).

`--report_to` is the stock TrainingArguments flag and passes straight to the Trainer (tensorboard,
wandb, mlflow, ...). Its default in transformers 5 is "none", so nothing has to be installed; asking
for an integration that is not installed is caught before any model is loaded, as a one-line error.

`LanguageDevMetrics` adds, at every evaluation during training, each language's dev accuracy and
their average and transfer gap as scalars (`eval/<lang>_accuracy`, `eval/average_accuracy`,
`eval/transfer_gap` in TensorBoard / W&B, and in trainer_state.json's log history).
"""

from __future__ import annotations

import logging

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from alsace.errors import UserError
from alsace.evaluation import eval_bf16, evaluate_languages
from alsace.report.results import dev_table, language_scalars

logger = logging.getLogger("alsace.report.tracking")  # its name before the move: the log lines stay the same

# report_to names whose pip package differs from the name.
_PACKAGES = {"azure_ml": "azureml-core", "comet_ml": "comet-ml", "neptune": "neptune"}


def check_report_to(report_to: list[str] | None) -> None:
    """Fail early, in one line, when `--report_to` names an integration whose package is missing."""
    from transformers.integrations import get_available_reporting_integrations
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    available = set(get_available_reporting_integrations())
    # flyte has no availability probe in transformers; azure_ml is hidden when mlflow is installed.
    missing = [name for name in report_to or []
               if name in INTEGRATION_TO_CALLBACK and name not in available and name not in ("flyte", "azure_ml")]
    if missing:
        packages = " ".join(_PACKAGES.get(name, name) for name in missing)
        raise UserError(f"--report_to {','.join(missing)}: not installed; pip install {packages}, "
                        "or pass --report_to none")


class LanguageDevMetrics(TrainerCallback):
    """After each Trainer evaluation, score every language's dev rows and log them as scalars.

    `log` is the trainer's `log` method, so the values reach every `--report_to` integration at the
    current step. They are also added to the evaluation's metrics, where `--metric_for_best_model`
    can use them (e.g. `ar_accuracy` or `average_accuracy`).
    """

    def __init__(self, features_by_lang: dict[str, list[dict]], collator, source_language: str, log):
        self.features_by_lang = features_by_lang
        self.collator = collator
        self.source_language = source_language
        self.log = log

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        # Every rank scores its share of the batches (exactly once); only rank 0's reporters write.
        evaluation = evaluate_languages(model, self.features_by_lang, self.collator, args.per_device_eval_batch_size,
                                        args.device, bf16=eval_bf16(args))
        scalars = language_scalars({lang: r["accuracy"] for lang, r in evaluation.items()}, self.source_language)
        if metrics is not None:
            metrics.update(scalars)
        self.log(scalars)
        if state.is_world_process_zero:
            logger.info("dev accuracy at step %d\n%s", state.global_step, dev_table(scalars))


def quiet_evaluation_logs(trainer) -> None:
    """Stop the Trainer's console printer from writing evaluation dicts ({'eval_loss': ..., 'eval_accuracy': ...},
    and the per-language scalars as a dict): with `LanguageDevMetrics` the per-language table says it all. Only
    the console changes; every value still reaches trainer_state.json and the `--report_to` integrations."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, (ProgressCallback, PrinterCallback)):
            print_logs = callback.on_log

            def on_log(args, state, control, logs=None, _print_logs=print_logs, **kwargs):
                if logs and any(key.startswith("eval_") for key in logs):
                    return None
                return _print_logs(args, state, control, logs=logs, **kwargs)

            callback.on_log = on_log
