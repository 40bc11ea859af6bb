r"""Stages 1-2 of ALSACE: teacher language selection and cross-lingual self-distillation.

    python src/distill.py --model_name_or_path outputs/xnli-ft --task xnli --data_dir data \
        --output_dir outputs/xnli-distill --learning_rate 3e-8 ...

Starts from a fine-tuned checkpoint; evaluates every language (baseline/), scores languages on the
unlabeled parallel pool and splits them into teachers and students (teacher_selection.json), trains on
teacher-teacher and teacher-student pairs with the KL consistency loss (no gold labels), evaluates again
(results.json) and writes the before -> after comparison (comparison.json / comparison.md).
The resolved configuration is stored first (run_config.json); a rerun with the same configuration in the
same directory continues the run (from the last complete checkpoint, or training from step 0) and reuses
the stages it completed (stages/*.done); a rerun with another configuration is refused.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
from transformers import TrainingArguments, set_seed

from alsace.arguments import (POOL_SIZE_WARNING, DataArguments, DistillArguments, ModelArguments, PromptArguments,
                              Resolved, parse)
from alsace.checkpoint import CheckpointInfo, placeholder_count, settings_from_checkpoint
from alsace.data import load_pool, load_split, pool_labels
from alsace.distributed import broadcast_from_main, is_main_process
from alsace.errors import UserError
from alsace.evaluation import distinct_inputs, eval_bf16, pooled_features, score_languages
from alsace.features import Collator, Featurizer, encode_cached, split_features
from alsace.metrics import accuracy
from alsace.modeling import load_tokenizer_and_model, train_only_new_token_embeddings
from alsace.pairs import RECOMMENDED_PASSES, PairDataset, all_pairs, build_pairs, pool_passes, steps_for_passes
from alsace.report.results import collapse_warning, comparison_for_terminal, is_unreadable, save_results
from alsace.report.run_report import comparison_report, write_run_report
from alsace.run_dir import (RunStages, prepare_output_dir, remove_checkpoints, restores_output_dir, run_cli,
                            stored_config)
from alsace.runs import check_training_numbers, evaluate, run_configuration, setup_logging, stop_cleanly, train
from alsace.selection import (Selection, fixed_rank, frozen_targets, guard_source, leave_out, score_spread_warning,
                              select_teachers, selection_table, softmax, target_accuracy)
from alsace.tasks import get_task
from alsace.tracking import LanguageDevMetrics, quiet_evaluation_logs
from alsace.trainer import AlsaceTrainer, compute_accuracy

logger = logging.getLogger("alsace.distill")


@restores_output_dir  # whatever fails, nothing half-written is left
def main(argv=None) -> dict:
    model_args, data_args, prompt_args, d_args, training_args = parse(
        (ModelArguments, DataArguments, PromptArguments, DistillArguments, TrainingArguments), argv, __doc__)
    setup_logging(training_args)
    set_seed(training_args.seed)
    check_training_numbers(training_args)
    for warning in d_args.warnings(training_args.learning_rate):
        logger.warning(warning)
    info = settings_from_checkpoint(model_args, data_args, prompt_args)  # --task/--head: the checkpoint's
    task = get_task(data_args.task)
    run = d_args.resolve(task, data_args, training_args, model_args, info)  # every flag checked before any work
    languages, output_dir = run.languages, Path(training_args.output_dir)
    num_placeholders = placeholder_count(info, task, prompt_args.num_placeholder_tokens)
    config = run_configuration(
        {"model_args": model_args, "data_args": data_args, "prompt_args": prompt_args, "distill_args": d_args},
        training_args, data_args.task, model_args.model_name_or_path,
        num_placeholder_tokens=num_placeholders, languages=languages)
    resume_from = prepare_output_dir(training_args.output_dir, d_args.overwrite_output_dir,
                                     training_args.resume_from_checkpoint, config)
    stages = RunStages(output_dir, config)  # a stage's outputs are reused only when complete

    tokenizer, model = load_tokenizer_and_model(model_args.model_name_or_path, model_args.head, task,
                                                num_placeholders, model_args.trust_remote_code, check_task=True)
    if d_args.source_alignment_weight > 0 and model.config.is_encoder_decoder:
        raise UserError(f"--source_alignment_weight aligns an encoder's hidden states: {model_args.model_name_or_path} "
                        "is an encoder-decoder model, not supported yet; pass --source_alignment_weight 0")
    featurizer = Featurizer(tokenizer, task, model_args.head, data_args.max_seq_length, num_placeholders,
                            prompt_args.prompt_language, is_seq2seq=model.config.is_encoder_decoder,
                            languages=tuple(dict.fromkeys([*languages, d_args.dev_language, task.source_language])))
    collator = Collator(tokenizer.pad_token_id)
    cache = {"cache_dir": data_args.cache_dir, "overwrite_cache": data_args.overwrite_cache}  # tokenised once
    eval_features = split_features(task, featurizer, data_args.data_dir, data_args.eval_split, languages,
                                   data_args.max_eval_samples, **cache)

    # Stage 1: teacher selection on the unlabeled parallel pool (reused when resuming).
    pool_features, pool_logits, selection, pairs = select_stage(model, featurizer, collator, task, d_args, run,
                                                                training_args, data_args, stages, cache)
    # The starting checkpoint's evaluation (reused when resuming).
    baseline_dir = output_dir / "baseline"
    if stages.done("baseline"):
        before = json.loads((baseline_dir / "results.json").read_text("utf-8"))
    else:
        before = save_results(baseline_dir, task, data_args.eval_split, model_args.model_name_or_path,
                              evaluate(model, eval_features, collator, training_args),
                              "Before self-distillation", selection.teachers, selection.students)
        stages.mark("baseline")

    # Stage 2: self-distillation on parallel pairs; the loss never sees a gold label.
    dev_by_lang = (split_features(task, featurizer, data_args.data_dir, "validation", list(run.dev.languages),
                                  run.dev.max_rows, **cache) if run.dev.checkpoint_language else None)  # read once
    score = (lambda rows: score_languages(  # the starting checkpoint's logits on more anchor rows (before training)
        model, {"rows": rows}, collator, training_args.per_device_eval_batch_size, training_args.device,
        bf16=eval_bf16(training_args), desc="anchor rows")["rows"])
    source_features = None  # the starting checkpoint's pooled hidden states on the source's pool items
    if d_args.source_alignment_weight > 0:
        source_features = pooled_features(model, pool_features[task.source_language], collator,
                                          training_args.per_device_eval_batch_size, training_args.device,
                                          bf16=eval_bf16(training_args))
    train_dataset = training_pairs(pool_features, pool_logits, pairs, featurizer, task, d_args, languages,
                                   data_args.data_dir, training_args.seed, cache, score, source_features)
    if d_args.train_only_embeddings:  # the source language's tokens (pool items, training rows) and specials stay put
        source_rows = [*pool_features[task.source_language],
                       *(source_train_rows(featurizer, task, data_args.data_dir, cache) if task.has_train else [])]
        trainable, rows = train_only_new_token_embeddings(model, source_rows, tokenizer.all_special_ids)
        logger.info("--train_only_embeddings: %d of %d embedding rows train (the %d tokens of the %s rows and the "
                    "special tokens, and every other weight, frozen)", trainable, rows, rows - trainable,
                    task.source_language)
    num_items = len(next(iter(pool_features.values())))
    if note := steps_from_passes(training_args, d_args.pool_passes, len(languages), num_items):
        logger.info(note)
    if warning := exposure_warning(training_args, len(languages), num_items):
        logger.warning(warning)
    reference = None  # a frozen copy of the starting model, for --anchor_features_weight
    if d_args.anchor_features_weight > 0:
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    trainer = AlsaceTrainer(
        model=model, args=training_args, train_dataset=train_dataset,
        eval_dataset=dev_by_lang and dev_by_lang[run.dev.checkpoint_language], data_collator=collator,
        train_collator=train_dataset.collator(tokenizer.pad_token_id), processing_class=tokenizer,
        compute_metrics=compute_accuracy, finetune_loss="label_words",  # dev evaluation loss only
        loss_config=d_args.loss_config(), reference_model=reference)
    if run.dev.per_language:  # every language's dev accuracy, over the same rows as the checkpoint language's
        trainer.add_callback(LanguageDevMetrics({lang: dev_by_lang[lang] for lang in languages},
                                                collator, task.source_language, trainer.log))
        quiet_evaluation_logs(trainer)  # the per-language table replaces the Trainer's eval dict
    train(trainer, resume_from)
    trainer.save_model(training_args.output_dir)
    if is_main_process():
        CheckpointInfo.write(training_args.output_dir, task, model_args.head, featurizer, data_args.task)

    # Stage 3: evaluate every language again and compare; every report file written once, from these results.
    evaluation = evaluate(model, eval_features, collator, training_args)
    after = save_results(output_dir, task, data_args.eval_split, model_args.model_name_or_path,  # the starting model
                         evaluation, "After self-distillation", selection.teachers, selection.students, markdown=False)
    if is_main_process():
        comparison = comparison_report(before, after, selection, task.source_language, baseline_dir, output_dir,
                                       data_args.eval_split, languages, d_args.frozen_teacher, d_args.teacher_targets)
        write_run_report(output_dir, stored_config(output_dir), after, evaluation, "After self-distillation",
                         task.source_language, before, comparison, selection)  # the config stored before any work
        report_outcome(comparison, d_args.frozen_teacher)
    stages.mark("run")
    remove_checkpoints(output_dir, d_args.keep_checkpoints)
    return after


def select_stage(model, featurizer, collator, task, d_args, run, training_args, data_args, stages, cache):
    """Stage 1: the pool's features and the starting checkpoint's class logits on it (for selection and a frozen
    teacher), the teacher selection (saved, or reused when resuming) and the language pairs trained on."""
    pool = load_pool(task, run.languages, data_args.data_dir, d_args.pool_size or task.pool_size, d_args.pool_file,
                     d_args.pool_rows_parallel)
    pool_features = {lang: encode_cached(featurizer, rows, lang, **cache).to_list()  # indexed per pair item
                     for lang, rows in pool.items()}
    if (pool_items := len(next(iter(pool.values())))) < POOL_SIZE_WARNING:
        logger.warning("the unlabeled pool has only %d items per language: teacher scores from fewer than %d are "
                       "noisy (the paper used 100-500); raise --pool_size (POOL_SIZE) if the data allow",
                       pool_items, POOL_SIZE_WARNING)
    selection_path = Path(training_args.output_dir) / "teacher_selection.json"
    reuse_selection = stages.done("teacher_selection")
    pool_logits = None  # the starting checkpoint's class logits on the pool (selection; frozen teacher)
    if not reuse_selection or d_args.frozen_teacher or d_args.anchors_on_pool:
        with stop_cleanly(training_args, "teacher selection"):
            pool_logits = score_languages(model, pool_features, collator, training_args.per_device_eval_batch_size,
                                          training_args.device, bf16=eval_bf16(training_args),
                                          desc="selecting teachers")
    if reuse_selection:
        selection = Selection.load(selection_path)
        logger.info("reusing the saved teacher selection from %s", selection_path)
    else:
        selection = choose_teachers(pool_logits, task, run, d_args)
        if d_args.skip_unreadable and not run.pair_languages:
            unreadable = [lang for lang, feats in pool_features.items()
                          if is_unreadable({"distinct_inputs": distinct_inputs(feats), "n": len(feats)})]
            selection = leave_out(selection, unreadable, task.source_language)
            if selection.left_out:
                logger.warning("--skip_unreadable: %s left out of the training pairs (their pool rows tokenise "
                               "to fewer distinct inputs than half the items); still evaluated",
                               ", ".join(selection.left_out))
        labels = pool_labels(task, run.languages, data_args.data_dir, d_args.pool_size or task.pool_size,
                             d_args.pool_file)
        if labels is not None:  # evaluation only: what a ranking by the pool's own accuracy would give
            selection = replace(selection, pool_accuracy={
                lang: accuracy(pool_logits[lang], np.asarray(labels[lang])) for lang in run.languages},
                target_accuracy=target_accuracy(pool_logits, run.languages, task.source_language,
                                                labels.get(task.source_language, labels[run.languages[0]])))
    # Every rank scored the same all-gathered logits; taking rank 0's answer makes "same teachers,
    # same pairs on every rank" a guarantee rather than a consequence of identical arithmetic.
    selection = broadcast_from_main(selection)
    pairs = (all_pairs(run.pair_languages) if run.pair_languages
             else build_pairs(selection.ranking, selection.teachers, selection.students))
    if is_main_process():
        selection.save(selection_path, pairs)
    stages.mark("teacher_selection")
    logger.info("teacher selection\n%s\n%d language pairs x %d items", selection_table(selection), len(pairs),
                len(next(iter(pool_features.values()))))
    return pool_features, pool_logits, selection, pairs


def source_train_rows(featurizer, task, data_dir, cache) -> list[dict]:
    """The source language's training rows as features (tokenised once: cached)."""
    return encode_cached(featurizer, load_split(task, "train", task.source_language, data_dir), task.source_language,
                         **cache).to_list()


def training_pairs(pool_features, pool_logits, pairs, featurizer, task, d_args, languages, data_dir, seed: int,
                   cache, score=None, source_features=None) -> PairDataset:
    """The pair dataset: with --frozen_teacher the starting checkpoint's targets, with --anchor_weight the
    labelled source-language training rows, or with --anchor_target self its pool items (and, with
    --anchor_train_rows, its training rows without their labels) and the starting checkpoint's logits on them,
    which `score(rows)` computes; with --source_alignment_weight the source language's pooled features per
    item, `source_features` (this project's extensions)."""
    anchor_features = anchor_logits = None
    if d_args.anchors_on_pool:
        anchor_features = pool_features[task.source_language]
        anchor_logits = pool_logits[task.source_language]
        if d_args.anchor_train_rows:  # the anchor never sees a gold label: the start's own distribution instead
            rows = [{k: v for k, v in f.items() if k != "labels"}
                    for f in source_train_rows(featurizer, task, data_dir, cache)]
            anchor_features = [*anchor_features, *rows]
            anchor_logits = np.concatenate([anchor_logits, score(rows)])
    elif d_args.anchor_weight > 0:
        anchor_features = source_train_rows(featurizer, task, data_dir, cache)
    teacher_logits = None
    if d_args.frozen_teacher:  # the targets, fixed from the starting checkpoint's pool predictions
        teacher_logits = frozen_targets(pool_logits, languages, d_args.teacher_targets, task.source_language)
    return PairDataset(pool_features, pairs, seed, teacher_logits=teacher_logits, anchor_features=anchor_features,
                       anchor_logits=anchor_logits, source_features=source_features)


def report_outcome(comparison: dict, frozen_teacher: bool) -> None:
    """The before -> after table in the log, and the two outcomes that are not a result, loudly."""
    logger.info("before -> after\n%s", comparison_for_terminal(comparison))
    if comparison["collapsed_languages"]:  # the comparison's own warning, with the advice that fits each language
        logger.warning(collapse_warning(comparison["collapsed_languages"], frozen_teacher,
                                        comparison["unreadable_languages"], comparison.get("left_out"))
                       .replace("**", "").replace("WARNING: predictions collapsed", "PREDICTIONS COLLAPSED"))
    if comparison.get("top_fell"):
        logger.warning("THE TOP FELL: %s fell significantly (paired-bootstrap CI below 0): a narrower gap from the "
                       "top falling is not a result", ", ".join(f["name"] for f in comparison["top_fell"]))


def pairs_per_step(training_args) -> int:
    """Language pairs per optimizer step, over every process and accumulation step."""
    return (training_args.per_device_train_batch_size * training_args.world_size
            * training_args.gradient_accumulation_steps)


def steps_from_passes(training_args, passes: float, num_languages: int, num_items: int) -> str | None:
    """`--pool_passes P`: set `training_args.max_steps` to the steps that show each language's pool items P
    times on average; an explicit `--max_steps > 0` wins. Returns the line to log (None when off)."""
    if passes <= 0:
        return None
    per_step = pairs_per_step(training_args)
    if training_args.max_steps > 0:
        return (f"--max_steps {training_args.max_steps} given: --pool_passes {passes:g} is not used "
                f"({pool_passes(training_args.max_steps, per_step, num_languages, num_items):.2f} passes)")
    training_args.max_steps = steps_for_passes(passes, per_step, num_languages, num_items)
    return (f"--pool_passes {passes:g}: {training_args.max_steps} steps x {per_step} pairs per step over "
            f"{num_languages} languages x {num_items} pool items")


def exposure_warning(training_args, num_languages: int, num_items: int) -> str | None:
    """A fixed --max_steps that trains each language's pool items fewer than 2 times on average (the
    recommended recipe trains RECOMMENDED_PASSES); None when epochs decide or the steps suffice."""
    if training_args.max_steps <= 0:
        return None
    per_step = pairs_per_step(training_args)
    passes = pool_passes(training_args.max_steps, per_step, num_languages, num_items)
    if passes >= 2:
        return None
    return (f"--max_steps {training_args.max_steps} x {per_step} pairs per step shows each of the {num_languages} "
            f"languages' {num_items} pool items only {passes:.1f} times on average (fewer with more languages); "
            f"the recommended recipe trains {RECOMMENDED_PASSES} passes: unset MAX_STEPS and keep POOL_PASSES "
            f"(--pool_passes {RECOMMENDED_PASSES}), or raise MAX_STEPS (--max_steps) to about "
            f"{steps_for_passes(RECOMMENDED_PASSES, per_step, num_languages, num_items)}")


def choose_teachers(logits: dict[str, np.ndarray], task, run: Resolved, d_args: DistillArguments) -> Selection:
    """Split teachers from students from every language's class logits on the pool."""
    probs = np.stack([softmax(logits[lang]) for lang in run.languages])  # (T, N, C)
    if run.ranking is not None:
        selection = fixed_rank(run.ranking, d_args.num_students, run.languages, probs, task.source_language)
    else:
        selection = select_teachers(probs, run.languages, run.threshold, d_args.selection_method,
                                    task.source_language)
        if warning := score_spread_warning(selection.normalized_scores):
            logger.warning(warning)
    return guard_source(selection, task.source_language) if d_args.source_guard else selection


if __name__ == "__main__":
    run_cli(main)
