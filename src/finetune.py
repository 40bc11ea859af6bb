r"""Stage 0 of ALSACE: fine-tune a multilingual LM on English, then evaluate every language.

    python src/finetune.py --model_name_or_path xlm-roberta-base --task xnli --data_dir data \
        --output_dir outputs/xnli-ft --learning_rate 1e-6 ...

Writes to --output_dir: the checkpoint (safetensors), results.json / results.md (per-language accuracy,
average, transfer gap), predictions/<lang>_<split>_{logits,labels}.npy, run_args.json, environment.json.
With --skip_training (zero-shot probing, e.g. GeoMLAMA) the model is evaluated and saved unchanged.
"""

from __future__ import annotations

import logging

from transformers import TrainingArguments, set_seed

from alsace.arguments import DataArguments, FinetuneArguments, ModelArguments, PromptArguments, parse
from alsace.checkpoint import CheckpointInfo, placeholder_count
from alsace.data import first_n, load_split
from alsace.distributed import is_main_process
from alsace.features import Collator, Featurizer, encode_cached, split_features
from alsace.modeling import load_tokenizer_and_model
from alsace.report.results import save_results
from alsace.report.run_report import write_run_report
from alsace.run_dir import (RunStages, prepare_output_dir, remove_checkpoints, restores_output_dir, run_cli,
                            stored_config)
from alsace.runs import check_training_numbers, evaluate, run_configuration, setup_logging, train
from alsace.tasks import get_task
from alsace.tracking import LanguageDevMetrics, quiet_evaluation_logs
from alsace.trainer import AlsaceTrainer, compute_accuracy

logger = logging.getLogger("alsace.finetune")


@restores_output_dir  # whatever fails, nothing half-written is left
def main(argv=None) -> dict:
    model_args, data_args, prompt_args, ft_args, training_args = parse(
        (ModelArguments, DataArguments, PromptArguments, FinetuneArguments, TrainingArguments), argv, __doc__)
    setup_logging(training_args)
    set_seed(training_args.seed)
    data_args.task = data_args.task or "xnli"  # a model to fine-tune records no task of its own
    model_args.head = model_args.head or "prompt"

    task = get_task(data_args.task)
    run = ft_args.resolve(task, data_args, training_args)  # every flag checked and resolved before any work
    languages, dev = run.languages, run.dev
    if not ft_args.skip_training:
        check_training_numbers(training_args)
    num_placeholders = placeholder_count(CheckpointInfo.read(model_args.model_name_or_path), task,
                                         prompt_args.num_placeholder_tokens)
    config = run_configuration(
        {"model_args": model_args, "data_args": data_args, "prompt_args": prompt_args, "finetune_args": ft_args},
        training_args, data_args.task, model_args.model_name_or_path,
        num_placeholder_tokens=num_placeholders, languages=languages)
    resume_from = prepare_output_dir(training_args.output_dir, ft_args.overwrite_output_dir,
                                     training_args.resume_from_checkpoint, config)

    tokenizer, model = load_tokenizer_and_model(model_args.model_name_or_path, model_args.head, task,
                                                num_placeholders, model_args.trust_remote_code)
    featurizer = Featurizer(tokenizer, task, model_args.head, data_args.max_seq_length, num_placeholders,
                            prompt_args.prompt_language, is_seq2seq=model.config.is_encoder_decoder,
                            languages=tuple(dict.fromkeys([task.source_language, ft_args.selection_language, *languages])))
    collator = Collator(tokenizer.pad_token_id)
    cache = {"cache_dir": data_args.cache_dir, "overwrite_cache": data_args.overwrite_cache}  # tokenised once

    train_features = None if ft_args.skip_training else training_features(task, featurizer, data_args, ft_args,
                                                                          training_args.seed)
    dev_by_lang, dev_features = None, None
    if dev.checkpoint_language:  # read once: the checkpoint language's dev set (+ per-language dev scalars)
        dev_by_lang = split_features(task, featurizer, data_args.data_dir, "validation", list(dev.languages),
                                     dev.max_rows, **cache)
        dev_features = dev_by_lang[dev.checkpoint_language]
    # Read every evaluation file now: a bad test file must fail before hours of training, not after.
    eval_features = split_features(task, featurizer, data_args.data_dir, data_args.eval_split, languages,
                                   data_args.max_eval_samples, **cache)
    if train_features is not None and dev_features is not None:
        logger.info("training on %d %s rows; selecting on %s dev (%d rows)", len(train_features),
                    task.source_language, dev.checkpoint_language, len(dev_features))
    elif train_features is not None:  # --eval_strategy no: nothing to select on
        logger.info("training on %d %s rows; no dev evaluation (--eval_strategy no): the last step is kept",
                    len(train_features), task.source_language)

    trainer = AlsaceTrainer(
        model=model, args=training_args, train_dataset=train_features, eval_dataset=dev_features,
        data_collator=collator, processing_class=tokenizer, compute_metrics=compute_accuracy,
        finetune_loss=ft_args.finetune_loss,
    )
    if dev.per_language:  # every language's dev accuracy
        trainer.add_callback(LanguageDevMetrics({lang: dev_by_lang[lang] for lang in languages},
                                                collator, task.source_language, trainer.log))
        quiet_evaluation_logs(trainer)  # the per-language table replaces the Trainer's eval dict
    if train_features is not None:
        train(trainer, resume_from)
    trainer.save_model(training_args.output_dir)  # best model when --load_best_model_at_end
    if is_main_process():
        CheckpointInfo.write(training_args.output_dir, task, model_args.head, featurizer, data_args.task)

    evaluation = evaluate(model, eval_features, collator, training_args)
    title = ("Zero-shot evaluation (--skip_training): per-language accuracy" if ft_args.skip_training
             else "English fine-tuning: per-language accuracy")
    results = save_results(training_args.output_dir, task, data_args.eval_split, model_args.model_name_or_path,
                           evaluation, title, markdown=False)
    if is_main_process():  # every report file once, from these results; the configuration stored first: what ran
        write_run_report(training_args.output_dir, stored_config(training_args.output_dir), results, evaluation,
                         title, task.source_language)
    RunStages(training_args.output_dir, config).mark("run")
    remove_checkpoints(training_args.output_dir, ft_args.keep_checkpoints)
    return results


def training_features(task, featurizer, data_args, ft_args, seed: int):
    """English training rows: all, the first N (the original's k-shot) or a stratified sample.

    Tokenised once and cached (`alsace.features.encode_cached`); a memory-mapped `datasets.Dataset`.
    """
    train_rows = load_split(task, "train", task.source_language, data_args.data_dir)
    train_rows = first_n(train_rows, ft_args.max_train_samples, seed,
                         stratified=ft_args.train_sampling == "stratified")
    return encode_cached(featurizer, train_rows, task.source_language, data_args.cache_dir, data_args.overwrite_cache)


if __name__ == "__main__":
    run_cli(main)
