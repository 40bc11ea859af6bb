#!/usr/bin/env bash
# The offline demo: the whole ALSACE pipeline on a synthetic parallel task, on a laptop CPU, in about a minute.
#
#   bash run_script/demo.sh                      # everything lands in outputs/demo/, data in data/demo/
#   DISTILL_LR=1e-4 DETACH_TEACHER=false bash run_script/demo.sh   # see the KL loss collapse
#
# 1. src/demo.py prepare: made-up languages sharing 75/50/25/0 % of their words with English (data/demo/),
#    a tokenizer trained on them and a small randomly initialised XLM-R masked LM (outputs/demo/model);
# 2. src/finetune.py: English fine-tuning, then every language evaluated;
# 3. src/distill.py: teacher selection on the unlabeled parallel pool, self-distillation, evaluation;
# 4. src/demo.py report: the per-language, teacher and before -> after tables (outputs/demo/summary.md).
# Steps 2 and 3 are the real entry points with their ordinary flags. Extra arguments ("$@") go to both of
# them (flags both accept, e.g. --per_device_eval_batch_size 64); FINETUNE_EXTRA / DISTILL_EXTRA hold
# stage-specific ones. A rerun overwrites the demo's own outputs. DATA_DIR and OUTPUT_DIR are read from where
# you run the script. DRY_RUN=1 prints the four commands instead of running them.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/launch.sh"

DATA_DIR=${DATA_DIR:-data}
OUTPUT_DIR=${OUTPUT_DIR:-outputs/demo}
SEED=${SEED:-0}
THREADS=${THREADS:-1}  # torch threads per process: a model this small is fastest (and steadiest) on one
# Data and model (src/demo.py prepare).
TRAIN_SIZE=${TRAIN_SIZE:-2000}
VALIDATION_SIZE=${VALIDATION_SIZE:-500}
TEST_SIZE=${TEST_SIZE:-1000}
CORPUS_SIZE=${CORPUS_SIZE:-2000}  # unlabeled sentences per language for the tokenizer
HIDDEN_SIZE=${HIDDEN_SIZE:-64}
NUM_LAYERS=${NUM_LAYERS:-2}
NUM_HEADS=${NUM_HEADS:-4}
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-64}
EVAL_BATCH_SIZE=${EVAL_BATCH_SIZE:-256}
# English fine-tuning. The label-word loss: the faithful whole-vocabulary loss needs about three times the
# steps on this randomly initialised model, and the model it gives collapses under self-distillation
# (measured, and why, in docs/demo.md).
FT_STEPS=${FT_STEPS:-300}
FT_LR=${FT_LR:-1e-3}
FT_BATCH_SIZE=${FT_BATCH_SIZE:-32}
FT_LOSS=${FT_LOSS:-label_words}
# Self-distillation. The teacher side is detached: with both sides trainable the KL loss falls into its
# trivial minimum (every input -> one class) at any learning rate that moves this model in 200 steps.
DISTILL_STEPS=${DISTILL_STEPS:-200}
DISTILL_LR=${DISTILL_LR:-3e-4}
DISTILL_BATCH_SIZE=${DISTILL_BATCH_SIZE:-32}
POOL_SIZE=${POOL_SIZE:-500}
KL_DIRECTION=${KL_DIRECTION:-teacher_target}
DETACH_TEACHER=${DETACH_TEACHER:-true}
FINETUNE_EXTRA=${FINETUNE_EXTRA:-}
DISTILL_EXTRA=${DISTILL_EXTRA:-}

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../src" && pwd)
export OMP_NUM_THREADS=$THREADS HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
START=$SECONDS
COMMON=(--task "$DATA_DIR/demo/task.json" --seed "$SEED" --max_seq_length "$MAX_SEQ_LENGTH"
        --per_device_eval_batch_size "$EVAL_BATCH_SIZE" --eval_strategy no --save_strategy no
        --logging_steps 50 --report_to none --use_cpu --overwrite_output_dir)

echo "== 1/4 synthetic data and a tiny model"
run_or_print python "$SRC/demo.py" prepare --data_dir "$DATA_DIR" --output_dir "$OUTPUT_DIR" --seed "$SEED" \
    --train_size "$TRAIN_SIZE" --validation_size "$VALIDATION_SIZE" --test_size "$TEST_SIZE" --corpus_size "$CORPUS_SIZE" \
    --hidden_size "$HIDDEN_SIZE" --num_layers "$NUM_LAYERS" --num_heads "$NUM_HEADS"

echo "== 2/4 English fine-tuning (src/finetune.py)"
# shellcheck disable=SC2086  # *_EXTRA are word lists on purpose
run_or_print python "$SRC/finetune.py" "${COMMON[@]}" \
    --model_name_or_path "$OUTPUT_DIR/model" --output_dir "$OUTPUT_DIR/finetune" \
    --max_steps "$FT_STEPS" --learning_rate "$FT_LR" --per_device_train_batch_size "$FT_BATCH_SIZE" \
    --warmup_steps 0.1 --finetune_loss "$FT_LOSS" $FINETUNE_EXTRA "$@"

echo "== 3/4 teacher selection and self-distillation (src/distill.py)"
# shellcheck disable=SC2086
run_or_print python "$SRC/distill.py" "${COMMON[@]}" \
    --model_name_or_path "$OUTPUT_DIR/finetune" --output_dir "$OUTPUT_DIR/distill" \
    --max_steps "$DISTILL_STEPS" --learning_rate "$DISTILL_LR" --per_device_train_batch_size "$DISTILL_BATCH_SIZE" \
    --pool_size "$POOL_SIZE" --kl_direction "$KL_DIRECTION" --detach_teacher "$DETACH_TEACHER" $DISTILL_EXTRA "$@"

echo "== 4/4 summary"
run_or_print python "$SRC/demo.py" report --output_dir "$OUTPUT_DIR" --wall_time_s $((SECONDS - START))
[[ -n "${DRY_RUN:-}" ]] && exit 0
echo "demo finished in $((SECONDS - START)) s; everything is in $OUTPUT_DIR/ (summary.md, finetune/, distill/)"
