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

import json
import logging
from pathlib import Path

import numpy as np
from transformers import TrainingArguments, set_seed

from alsace.arguments import (POOL_SIZE_WARNING, DataArguments, DistillArguments, ModelArguments, PromptArguments,
                              parse, split_list)
from alsace.data import load_pool, load_split
from alsace.distributed import broadcast_from_main, is_main_process
from alsace.errors import UserError, restores_output_dir, run_cli
from alsace.evaluation import eval_bf16, score_languages
from alsace.features import Collator, Featurizer, encode_cached, split_features
from alsace.files import write_json, write_text
from alsace.metrics import selection_quality
from alsace.modeling import (CHECKPOINT_INFO, load_tokenizer_and_model, placeholder_count, read_checkpoint_info,
                             settings_from_checkpoint, write_checkpoint_info)
from alsace.pairs import PairDataset, all_pairs, build_pairs
from alsace.report.plots import plot_run
from alsace.report.results import (collapse_warning, compare, comparison_for_terminal, comparison_markdown,
                                   results_markdown, save_results, top_fell)
from alsace.report.run_record import write_run_record
from alsace.report.significance import significance_between_runs
from alsace.report.tracking import LanguageDevMetrics, quiet_evaluation_logs
from alsace.runs import (RunStages, check_training_numbers, evaluate, prepare_output_dir, remove_checkpoints,
                         resolve_languages, run_configuration, setup_logging, stop_cleanly, stored_config, train)
from alsace.selection import (Selection, fixed_rank, frozen_targets, guard_source, max_normalized_score,
                              min_normalized_score, score_spread_warning, select_teachers, selection_table, softmax)
from alsace.tasks import get_task
from alsace.trainer import AlsaceTrainer, compute_accuracy

logger = logging.getLogger("alsace.distill")


@restores_output_dir  # whatever fails, nothing half-written is left
def main(argv=None) -> dict:
    model_args, data_args, prompt_args, d_args, training_args = parse(
        (ModelArguments, DataArguments, PromptArguments, DistillArguments, TrainingArguments), argv, __doc__)
    setup_logging(training_args)
    set_seed(training_args.seed)

    check_training_numbers(training_args)
    if d_args.frozen_teacher and d_args.detach_teacher:
        logger.warning("--detach_teacher has no effect with --frozen_teacher: the frozen teacher's targets are "
                       "computed once, before training, so no gradient flows through the teacher side anyway")
    settings_from_checkpoint(model_args, data_args)  # --task / --head: the checkpoint's, or restated equal
    task = get_task(data_args.task)
    languages = resolve_languages(task, data_args.languages)
    if len(languages) < 2:
        raise UserError(f"--languages {','.join(languages)}: self-distillation needs at least two languages (a "
                        "teacher and a student); list two or more, or omit the flag for all of the task's")
    threshold = d_args.threshold(task)  # θ; None = the mean of the normalised scores
    if d_args.anchor_weight > 0 and not task.has_train:
        raise UserError(f"--anchor_weight: task {task.name} has no labelled training rows to anchor on; "
                        "pass --anchor_weight 0")
    if d_args.teacher_threshold == "paper" and threshold > max_normalized_score(len(languages)):
        raise UserError(
            f"--teacher_threshold paper: θ = {task.paper_threshold} for {task.name} can leave no teacher with "
            f"{len(languages)} languages: ŝ = softmax(s) with s in [0, 1] is at most e/(e+T−1) = "
            f"{max_normalized_score(len(languages)):.3f}; use mean (the default) or a float near 1/T = "
            f"{1 / len(languages):.3f}")
    if threshold is not None and d_args.lang_rank is None and not (
            min_normalized_score(len(languages)) < threshold <= max_normalized_score(len(languages))):
        raise UserError(
            f"--teacher_threshold {d_args.teacher_threshold}: no scores can split {len(languages)} languages at it: "
            f"ŝ = softmax(s) with s in [0, 1] lies in [{min_normalized_score(len(languages)):.4f}, "
            f"{max_normalized_score(len(languages)):.4f}] (a θ at or below the lower end makes every language a "
            f"teacher); use mean (the default) or a float inside that range, near 1/T = {1 / len(languages):.3f}")
    pair_languages = check_pair_languages(d_args.pair_languages, languages)  # before any work
    if warning := recipe_warning(d_args, training_args.learning_rate):
        logger.warning(warning)
    if d_args.select_best_on_dev:
        task.check_languages([d_args.dev_language], "--dev_language")
        if training_args.eval_strategy == "no" or training_args.save_strategy != training_args.eval_strategy:
            raise UserError("--select_best_on_dev needs --eval_strategy steps (or epoch) and the same "
                            "--save_strategy, so that evaluated checkpoints are saved")
    if not d_args.allow_untuned_checkpoint and read_checkpoint_info(model_args.model_name_or_path) is None:
        raise UserError(f"--model_name_or_path {model_args.model_name_or_path}: no {CHECKPOINT_INFO}, so not a "
                        f"checkpoint fine-tuned for a task by src/finetune.py (an untuned model picks teachers by "
                        f"noise); fine-tune it first (run_script/finetuning.sh) or pass --allow_untuned_checkpoint")
    output_dir = Path(training_args.output_dir)
    num_placeholders = placeholder_count(model_args.model_name_or_path, task, prompt_args.num_placeholder_tokens)
    config = run_configuration(
        {"model_args": model_args, "data_args": data_args, "prompt_args": prompt_args, "distill_args": d_args},
        training_args, data_args.task, model_args.model_name_or_path,
        num_placeholder_tokens=num_placeholders, languages=languages)
    resume_from = prepare_output_dir(training_args.output_dir, d_args.overwrite_output_dir,
                                     training_args.resume_from_checkpoint, config)
    stages = RunStages(output_dir, config)  # a stage's outputs are reused only when complete

    tokenizer, model = load_tokenizer_and_model(model_args.model_name_or_path, model_args.head, task,
                                                num_placeholders, model_args.trust_remote_code, check_task=True)
    featurizer = Featurizer(tokenizer, task, model_args.head, data_args.max_seq_length, num_placeholders,
                            prompt_args.prompt_language, is_seq2seq=model.config.is_encoder_decoder,
                            languages=tuple(dict.fromkeys([*languages, d_args.dev_language, task.source_language])))
    collator = Collator(tokenizer.pad_token_id)
    cache = {"cache_dir": data_args.cache_dir, "overwrite_cache": data_args.overwrite_cache}  # tokenised once
    eval_features = split_features(task, featurizer, data_args.data_dir, data_args.eval_split, languages,
                                   data_args.max_eval_samples, **cache)

    # Stage 1: teacher selection on the unlabeled parallel pool (reused when resuming).
    pool = load_pool(task, languages, data_args.data_dir, d_args.pool_size or task.pool_size, d_args.pool_file,
                     d_args.pool_rows_parallel)
    pool_features = {lang: encode_cached(featurizer, rows, lang, **cache).to_list()  # indexed per pair item
                     for lang, rows in pool.items()}
    if (pool_items := len(next(iter(pool.values())))) < POOL_SIZE_WARNING:
        logger.warning("the unlabeled pool has only %d items per language: teacher scores from fewer than %d are "
                       "noisy (the paper used 100-500); raise --pool_size (POOL_SIZE) if the data allow",
                       pool_items, POOL_SIZE_WARNING)
    selection_path = output_dir / "teacher_selection.json"
    reuse_selection = stages.done("teacher_selection")
    pool_logits = None  # the starting checkpoint's class logits on the pool (selection; frozen teacher)
    if not reuse_selection or d_args.frozen_teacher:
        with stop_cleanly(training_args, "teacher selection"):
            pool_logits = score_languages(model, pool_features, collator, training_args.per_device_eval_batch_size,
                                          training_args.device, bf16=eval_bf16(training_args),
                                          desc="selecting teachers")
    if reuse_selection:
        selection = Selection(**json.loads(selection_path.read_text("utf-8"))["selection"])
        logger.info("reusing the saved teacher selection from %s", selection_path)
    else:
        selection = choose_teachers(pool_logits, task, languages, d_args, threshold)
    # Every rank scored the same all-gathered logits; taking rank 0's answer makes "same teachers,
    # same pairs on every rank" a guarantee rather than a consequence of identical arithmetic.
    selection = broadcast_from_main(selection)
    pairs = (all_pairs(pair_languages) if pair_languages
             else build_pairs(selection.ranking, selection.teachers, selection.students))
    if is_main_process():
        write_json(selection_path, {"selection": selection.to_dict(), "pairs": pairs, "num_pairs": len(pairs)})
    stages.mark("teacher_selection")
    logger.info("teacher selection\n%s\n%d language pairs x %d items", selection_table(selection), len(pairs),
                len(next(iter(pool_features.values()))))

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
    dev_by_lang, dev_features = None, None
    if d_args.select_best_on_dev:
        # Read once: the selection language's dev set (+ every language's, for the per-language dev scalars).
        dev_language = d_args.dev_language
        dev_languages = languages if data_args.eval_all_dev_languages else []
        dev_by_lang = split_features(task, featurizer, data_args.data_dir, "validation",
                                     list(dict.fromkeys([dev_language, *dev_languages])), **cache)
        dev_features = dev_by_lang[dev_language]  # the flags it stands for were set in `parse`
    anchor_features = None
    if d_args.anchor_weight > 0:  # labelled source-language training rows (this project's extension)
        anchor_features = encode_cached(featurizer, load_split(task, "train", task.source_language, data_args.data_dir),
                                        task.source_language, **cache).to_list()
    teacher_logits = None
    if d_args.frozen_teacher:  # the targets, fixed from the starting checkpoint's pool predictions
        teacher_logits = frozen_targets(pool_logits, languages, d_args.teacher_targets)
    train_dataset = PairDataset(pool_features, pairs, training_args.seed, teacher_logits=teacher_logits,
                                anchor_features=anchor_features)
    trainer = AlsaceTrainer(
        model=model, args=training_args, train_dataset=train_dataset,
        eval_dataset=dev_features, data_collator=collator, train_collator=train_dataset.collator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        compute_metrics=compute_accuracy, finetune_loss="label_words",  # dev evaluation loss only
        loss_config=d_args.loss_config(),
    )
    if dev_by_lang is not None and data_args.eval_all_dev_languages:  # every language's dev accuracy
        limit = data_args.max_eval_samples
        trainer.add_callback(LanguageDevMetrics({lang: dev_by_lang[lang][:limit] for lang in languages},
                                                collator, task.source_language, trainer.log))
        quiet_evaluation_logs(trainer)  # the per-language table replaces the Trainer's eval dict
    train(trainer, resume_from)
    trainer.save_model(training_args.output_dir)
    if is_main_process():
        write_checkpoint_info(training_args.output_dir, task, model_args.head, featurizer, data_args.task)

    # Stage 3: evaluate every language again and compare.
    after = save_results(output_dir, task, data_args.eval_split, model_args.model_name_or_path,  # the starting model
                         evaluate(model, eval_features, collator, training_args),
                         "After self-distillation", selection.teachers, selection.students)
    comparison = compare(before, after, selection.teachers, selection.students, task.source_language)
    if selection.normalized_scores:  # how well label-free scoring ranked the languages (reported, never used)
        # The deciding score: the chosen method's ŝ, or for a fixed ranking its order (best first).
        deciding = (selection.normalized_scores if selection.method == "scores"
                    else [-selection.ranking.index(lang) for lang in selection.languages])
        comparison["selection_quality"] = {**selection_quality(
            selection.languages, deciding, {lang: r["accuracy"] for lang, r in before["per_language"].items()},
            selection.estimates), "method": selection.selection_method}
    if is_main_process():
        # Paired bootstrap on the saved per-row predictions of the same test rows, before vs after.
        comparison["significance"] = significance_between_runs(baseline_dir, output_dir, data_args.eval_split,
                                                               languages, task.source_language,
                                                               teachers=selection.teachers)
        comparison["top_fell"] = top_fell(comparison, task.source_language)
        comparison["frozen_teacher"] = d_args.frozen_teacher
        write_json(output_dir / "comparison.json", comparison)
        write_text(output_dir / "comparison.md", comparison_markdown(comparison))
        if comparison["collapsed_languages"]:  # results.md is read on its own too
            write_text(output_dir / "results.md", results_markdown(
                after, "After self-distillation",
                collapse_warning(comparison["collapsed_languages"], d_args.frozen_teacher)))
        write_run_record(output_dir, stored_config(output_dir))  # stored before any work: what ran
        plot_run(output_dir, task.source_language)
    stages.mark("run")
    remove_checkpoints(output_dir, d_args.keep_checkpoints)
    logger.info("before -> after\n%s", comparison_for_terminal(comparison))
    if comparison["collapsed_languages"] and is_main_process():
        advice = ("the teacher was frozen already: lower --learning_rate or --max_steps, and check the selection "
                  "quality in comparison.md" if d_args.frozen_teacher else
                  "a moving teacher cannot anchor the student: try RECIPE=recommended, i.e. --frozen_teacher, or "
                  "a lower --learning_rate")
        logger.warning("PREDICTIONS COLLAPSED in %s: the distilled model predicts one class for most rows; "
                       "a narrower gap from collapsed predictions is not a result (%s)",
                       ", ".join(comparison["collapsed_languages"]), advice)
    if comparison.get("top_fell"):
        logger.warning("THE TOP FELL: %s fell significantly (paired-bootstrap CI below 0): a narrower gap from the "
                       "top falling is not a result", ", ".join(f["name"] for f in comparison["top_fell"]))
    return after


# Above this learning rate a moving teacher (neither --frozen_teacher nor --detach_teacher) is in neither
# recipe: RECIPE=original keeps the paper's 3e-8, RECIPE=recommended freezes the teacher.
MOVING_TEACHER_MAX_LR = 1e-6


def recipe_warning(d_args: DistillArguments, learning_rate: float) -> str | None:
    """A warning for settings in neither recipe that are known to collapse predictions; None otherwise."""
    if d_args.frozen_teacher or d_args.detach_teacher or learning_rate <= MOVING_TEACHER_MAX_LR:
        return None
    return (f"--learning_rate {learning_rate:g} with a moving teacher (no --frozen_teacher) is neither recipe: the "
            f"KL loss tends to collapse every language to one class at such rates (README, docs/real_encoder.md); "
            f"use RECIPE=recommended in run_script/distillation.sh (--frozen_teacher, lr 2e-5) or the paper's "
            f"lr 3e-8 (RECIPE=original)")


def check_pair_languages(value: str | None, languages: list[str]) -> list[str] | None:
    """`--pair_languages` as a list, each one among `--languages` (the pool is read for those only)."""
    chosen = split_list(value)
    if chosen is None:
        return None
    outside = [lang for lang in chosen if lang not in languages]
    if outside:
        raise UserError(f"--pair_languages: {', '.join(outside)} not among --languages ({', '.join(languages)}); "
                        "add them to --languages or drop them from --pair_languages")
    if len(set(chosen)) < 2 or len(set(chosen)) != len(chosen):
        raise UserError(f"--pair_languages {value}: give at least two different languages, each once")
    return chosen


def choose_teachers(logits: dict[str, np.ndarray], task, languages, d_args, threshold: float | None) -> Selection:
    """Split teachers from students from every language's class logits on the pool."""
    probs = np.stack([softmax(logits[lang]) for lang in languages])  # (T, N, C)
    if d_args.lang_rank is not None:
        ranking = list(task.lang_rank) if d_args.lang_rank == "original" else split_list(d_args.lang_rank)
        selection = fixed_rank(ranking, d_args.num_students, languages, probs, task.source_language)
    else:
        selection = select_teachers(probs, languages, threshold, d_args.selection_method, task.source_language)
        if warning := score_spread_warning(selection.normalized_scores):
            logger.warning(warning)
    return guard_source(selection, task.source_language) if d_args.source_guard else selection


if __name__ == "__main__":
    run_cli(main)
