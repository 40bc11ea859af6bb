#!/usr/bin/env bash
# Fine-tuning then self-distillation for several seeds, then mean ± std over the seeds.
#
#   SEEDS="13 21 42" MODEL_DIR=xlm-roberta-base TASK=xnli DATA_DIR=data bash run_script/multiseed.sh
#
# Every seed runs run_script/finetuning.sh (OUTPUT_DIR=$OUTPUT_ROOT/seed-$SEED/finetune) and then
# run_script/distillation.sh from that checkpoint (MODEL_DIR=.../finetune, OUTPUT_DIR=.../distill);
# all other settings come from the environment exactly as for those scripts (TASK, DATA_DIR, HEAD,
# learning rates, ...), and extra flags ("$@") go to both stages, so pass only flags both accept.
# FINETUNE_VARS / DISTILL_VARS hold VAR=VALUE settings for one stage only (e.g. FINETUNE_VARS="LR=1e-4
# EPOCHS=10" DISTILL_VARS="RECIPE=recommended"), since both scripts read LR, BS, EPOCHS, ... .
# The default OUTPUT_ROOT is outputs/multiseed-<task>-<hash of every result-changing setting of both
# stages>, so that two configurations never share folders. DISTILL_NAME names the distillation folder, so
# that several recipes reuse one fine-tuned checkpoint per seed under one explicit OUTPUT_ROOT
# (DISTILL_NAME=distill-recommended, then DISTILL_NAME=distill-original: fine-tuning is not redone).
# Rerunning continues: each entry point says "nothing to do" for a finished run of the same settings,
# continues an interrupted one, and refuses a folder that holds a run of other settings.
# Finally src/aggregate.py writes $OUTPUT_ROOT/aggregate.{md,json}; it refuses runs whose settings
# differ in anything but the seed.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$SCRIPT_DIR/launch.sh"
SEEDS=${SEEDS:-"13 21 42"}
DISTILL=${DISTILL:-1}          # 0: fine-tune only and aggregate the fine-tuning runs
DISTILL_NAME=${DISTILL_NAME:-distill}
FINETUNE_VARS=${FINETUNE_VARS:-}
DISTILL_VARS=${DISTILL_VARS:-}
if [[ -z "${OUTPUT_ROOT:-}" ]]; then
    # Each script's own default folder name (seed fixed) carries a hash of its result-changing settings.
    names=$(env $FINETUNE_VARS SEED=0 OUTPUT_DIR= DRY_RUN=1 bash "$SCRIPT_DIR/finetuning.sh" "$@")
    if [[ $DISTILL == 1 ]]; then
        names+=$(env $DISTILL_VARS SEED=0 MODEL_DIR=finetune OUTPUT_DIR= DRY_RUN=1 bash "$SCRIPT_DIR/distillation.sh" "$@")
    fi
    names=$(grep -o -- '--output_dir [^ ]*' <<<"$names")
    OUTPUT_ROOT=outputs/multiseed-$(task_name "${TASK:-xnli}")-$(config_hash "$names")
fi
AGGREGATE_DIR=${AGGREGATE_DIR:-$OUTPUT_ROOT}  # where aggregate.md / aggregate.json go
PYTHON=${PYTHON:-python}
REPO_DIR=$(dirname "$SCRIPT_DIR")

run_dirs=()
for seed in $SEEDS; do
    finetune_dir=$OUTPUT_ROOT/seed-$seed/finetune
    distill_dir=$OUTPUT_ROOT/seed-$seed/$DISTILL_NAME
    # A finished run of the same settings is not redone (the entry point says so); other settings are refused.
    env $FINETUNE_VARS SEED=$seed OUTPUT_DIR=$finetune_dir bash "$SCRIPT_DIR/finetuning.sh" "$@"
    if [[ $DISTILL == 1 ]]; then
        env $DISTILL_VARS SEED=$seed MODEL_DIR=$finetune_dir OUTPUT_DIR=$distill_dir bash "$SCRIPT_DIR/distillation.sh" "$@"
        run_dirs+=("$distill_dir")
    else
        run_dirs+=("$finetune_dir")
    fi
done

aggregate=("$PYTHON" "$REPO_DIR/src/aggregate.py" --run_dirs "${run_dirs[@]}" --output_dir "$AGGREGATE_DIR")
if [[ -n "${DRY_RUN:-}" ]]; then  # the stages only printed their commands: print this one too
    printf '%q ' "${aggregate[@]}"; echo
else
    "${aggregate[@]}"
fi
