#!/usr/bin/env bash
# Fine-tuning then self-distillation for several seeds, then mean ± std over the seeds.
#
#   SEEDS="13 21 42" MODEL_DIR=xlm-roberta-base TASK=xnli DATA_DIR=data RECIPE=recommended bash run_script/multiseed.sh
#
# Every seed runs run_script/finetuning.sh (OUTPUT_DIR=$OUTPUT_ROOT/seed-$SEED/finetune) and then
# run_script/distillation.sh from that checkpoint (MODEL_DIR=.../finetune, OUTPUT_DIR=.../distill);
# all other settings come from the environment exactly as for those scripts (TASK, DATA_DIR, HEAD, RECIPE,
# PRESET, ...), and extra flags ("$@") go to both stages, so pass only flags both accept.
# The training hyperparameters both scripts read with different meanings (STAGE_VARS below: LR, BS, EPOCHS,
# MAX_STEPS, WARMUP, WEIGHT_DECAY) are refused in the environment, so that a fine-tuning rate never reaches
# distillation silently: give them per stage in FINETUNE_VARS / DISTILL_VARS, VAR=VALUE words for one stage
# only (e.g. FINETUNE_VARS="LR=1e-5 EPOCHS=10" DISTILL_VARS="LR=1e-5"; the same value in both is fine).
# DISTILL_SEEDS distils every fine-tuned checkpoint once per listed seed (only the pair order and the other seeded
# draws of distillation differ), into .../<DISTILL_NAME>-d<distillation seed>; empty (the default): once, with the
# fine-tuning seed, into .../<DISTILL_NAME>. The aggregate then covers every (fine-tuning, distillation) seed pair.
# DISTILL_NAME names the distillation folder, so that several recipes reuse one fine-tuned checkpoint
# per seed under one explicit OUTPUT_ROOT (DISTILL_NAME=distill-recommended, then
# DISTILL_NAME=distill-original: fine-tuning is not redone).
# The default OUTPUT_ROOT is outputs/multiseed-<task>-<hash of every result-changing setting of both
# stages>, so that two configurations never share folders.
# Rerunning continues: each entry point says "nothing to do" for a finished run of the same settings,
# continues an interrupted one, and refuses a folder that holds a run of other settings.
# Finally src/aggregate.py writes $OUTPUT_ROOT/aggregate.{md,json}; it refuses runs whose settings
# differ in anything but the seed. Paths are read from where you run the script (the default OUTPUT_ROOT is
# in the repository's outputs/). DRY_RUN=1 prints every stage's command and the aggregation, running nothing.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$SCRIPT_DIR/launch.sh"
REPO_DIR=$(dirname "$SCRIPT_DIR")
paths_from_caller OUTPUT_ROOT AGGREGATE_DIR
SEEDS=${SEEDS-13 21 42}                     # unset: 13 21 42; set, it must hold integers
DISTILL=${DISTILL:-1}          # 0: fine-tune only and aggregate the fine-tuning runs
DISTILL_NAME=${DISTILL_NAME:-distill}
DISTILL_SEEDS=${DISTILL_SEEDS:-}   # empty: each checkpoint distilled once, with its fine-tuning seed
read -ra distill_seeds <<<"${DISTILL_SEEDS:-}"; DISTILL_SEEDS="${distill_seeds[*]}"  # blanks alone = empty
FINETUNE_VARS=${FINETUNE_VARS:-}
DISTILL_VARS=${DISTILL_VARS:-}
PYTHON=${PYTHON:-python}
STAGE_VARS=(LR BS EPOCHS MAX_STEPS WARMUP WEIGHT_DECAY)  # read by both stage scripts, with different meanings

if [[ -z "${SEEDS// /}" ]]; then
  echo "error: SEEDS is empty: give the seeds to run, e.g. SEEDS=\"13 21 42\" (or unset SEEDS for these three)" >&2
  exit 2
fi
for seed in $SEEDS; do
  if [[ ! "$seed" =~ ^[0-9]+$ ]]; then
    echo "error: SEEDS=\"$SEEDS\": $seed is not a whole number; give integers separated by spaces, e.g. SEEDS=\"13 21 42\"" >&2
    exit 2
  fi
done
for seed in "${distill_seeds[@]}"; do
  if [[ ! "$seed" =~ ^[0-9]+$ ]]; then
    echo "error: DISTILL_SEEDS=\"$DISTILL_SEEDS\": $seed is not a whole number; give integers separated by spaces," \
         "e.g. DISTILL_SEEDS=\"1 11\" (or leave it empty to distil each checkpoint with its fine-tuning seed)" >&2
    exit 2
  fi
done
for var in "${STAGE_VARS[@]}"; do
  if [[ -n "${!var+set}" ]]; then
    echo "error: $var=${!var} is set in the environment, and both finetuning.sh and distillation.sh read $var" \
         "with different meanings; give it per stage: FINETUNE_VARS=\"$var=${!var}\" and/or DISTILL_VARS=\"$var=${!var}\"," \
         "then unset $var" >&2
    exit 2
  fi
done
for assignment in $FINETUNE_VARS $DISTILL_VARS; do
  if [[ ! "$assignment" =~ ^[A-Z_][A-Z0-9_]*= ]]; then
    echo "error: FINETUNE_VARS/DISTILL_VARS: \"$assignment\" is not VAR=VALUE; write e.g. FINETUNE_VARS=\"LR=1e-5 EPOCHS=10\"" >&2
    exit 2
  fi
done

if [[ -z "${OUTPUT_ROOT:-}" ]]; then
    # Each script's own default folder name (seed fixed) carries a hash of its result-changing settings.
    names=$(env $FINETUNE_VARS SEED=0 OUTPUT_DIR= DRY_RUN=1 bash "$SCRIPT_DIR/finetuning.sh" "$@")
    if [[ $DISTILL == 1 ]]; then
        names+=$(env $DISTILL_VARS SEED=0 MODEL_DIR=finetune OUTPUT_DIR= DRY_RUN=1 bash "$SCRIPT_DIR/distillation.sh" "$@")
    fi
    names=$(grep -o -- '--output_dir [^ ]*' <<<"$names")
    OUTPUT_ROOT=outputs/multiseed-$(task_name "${TASK:-xnli}")-$(config_hash "$names")
fi
[[ "$OUTPUT_ROOT" == /* ]] || OUTPUT_ROOT=$REPO_DIR/$OUTPUT_ROOT  # the default: in the repository, as the others'
AGGREGATE_DIR=${AGGREGATE_DIR:-$OUTPUT_ROOT}  # where aggregate.md / aggregate.json go

run_dirs=()
for seed in $SEEDS; do
    finetune_dir=$OUTPUT_ROOT/seed-$seed/finetune
    # A finished run of the same settings is not redone (the entry point says so); other settings are refused.
    # shellcheck disable=SC2086  # *_VARS are word lists on purpose
    env $FINETUNE_VARS SEED="$seed" OUTPUT_DIR="$finetune_dir" bash "$SCRIPT_DIR/finetuning.sh" "$@"
    if [[ $DISTILL == 1 ]]; then
        for distill_seed in ${DISTILL_SEEDS:-$seed}; do
            distill_dir=$OUTPUT_ROOT/seed-$seed/$DISTILL_NAME${DISTILL_SEEDS:+-d$distill_seed}
            # shellcheck disable=SC2086
            env $DISTILL_VARS SEED="$distill_seed" MODEL_DIR="$finetune_dir" OUTPUT_DIR="$distill_dir" \
                bash "$SCRIPT_DIR/distillation.sh" "$@"
            run_dirs+=("$distill_dir")
        done
    else
        run_dirs+=("$finetune_dir")
    fi
done

run_or_print "$PYTHON" "$REPO_DIR/src/aggregate.py" --run_dirs "${run_dirs[@]}" --output_dir "$AGGREGATE_DIR"
