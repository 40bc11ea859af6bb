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
# DISTILL_NAME names the distillation folder, so that several recipes reuse one fine-tuned checkpoint
# per seed (DISTILL_NAME=distill-recommended, then DISTILL_NAME=distill-original: fine-tuning is skipped).
# A stage whose results already exist is skipped, so rerunning after an interruption continues.
# Finally src/aggregate.py writes $OUTPUT_ROOT/aggregate.{md,json}; it refuses runs whose settings
# differ in anything but the seed.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$SCRIPT_DIR/launch.sh"
SEEDS=${SEEDS:-"13 21 42"}
OUTPUT_ROOT=${OUTPUT_ROOT:-outputs/multiseed-$(task_name "${TASK:-xnli}")}
DISTILL=${DISTILL:-1}          # 0: fine-tune only and aggregate the fine-tuning runs
DISTILL_NAME=${DISTILL_NAME:-distill}
FINETUNE_VARS=${FINETUNE_VARS:-}
DISTILL_VARS=${DISTILL_VARS:-}
AGGREGATE_DIR=${AGGREGATE_DIR:-$OUTPUT_ROOT}  # where aggregate.md / aggregate.json go
PYTHON=${PYTHON:-python}
REPO_DIR=$(dirname "$SCRIPT_DIR")

run_dirs=()
for seed in $SEEDS; do
    finetune_dir=$OUTPUT_ROOT/seed-$seed/finetune
    distill_dir=$OUTPUT_ROOT/seed-$seed/$DISTILL_NAME
    if [[ -f $finetune_dir/results.json ]]; then
        echo "multiseed: $finetune_dir is finished, skipping fine-tuning for seed $seed"
    else
        env $FINETUNE_VARS SEED=$seed OUTPUT_DIR=$finetune_dir bash "$SCRIPT_DIR/finetuning.sh" "$@"
    fi
    if [[ $DISTILL == 1 ]]; then
        if [[ -f $distill_dir/comparison.json ]]; then
            echo "multiseed: $distill_dir is finished, skipping distillation for seed $seed"
        else
            env $DISTILL_VARS SEED=$seed MODEL_DIR=$finetune_dir OUTPUT_DIR=$distill_dir bash "$SCRIPT_DIR/distillation.sh" "$@"
        fi
        run_dirs+=("$distill_dir")
    else
        run_dirs+=("$finetune_dir")
    fi
done

"$PYTHON" "$REPO_DIR/src/aggregate.py" --run_dirs "${run_dirs[@]}" --output_dir "$AGGREGATE_DIR"
