#!/usr/bin/env bash
# Export XNLI, PAWS-X and XCOPA (+ COPA) from the Hugging Face Hub into data/ for machines without internet.
#
#   bash run_script/prepare_data.sh                                    # where the Hub is reachable
#   MODEL=xlm-roberta-large bash run_script/prepare_data.sh            # also snapshot a model into models/
#   TASKS=none MODEL=xlm-roberta-large bash run_script/prepare_data.sh # only the model
#   bash run_script/prepare_data.sh --verify                           # on the cluster, after copying data/
#
# Writes data/<task>/<split>/<lang>.jsonl and data/manifest.json (Hub revision, row counts, sha256 per file).
# Extra arguments ("$@") go to src/prepare_data.py last (e.g. --languages en,fr --hub_revisions xnli=<commit>).
# Paths are read from where you run the script. DRY_RUN=1 prints the command instead of running it (no network).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/launch.sh"

DATA_DIR=${DATA_DIR:-data}
TASKS=${TASKS:-xnli,pawsx,xcopa}
SPLITS=${SPLITS:-train,validation,test}
TRAIN_LANGUAGES=${TRAIN_LANGUAGES:-en}  # en: English train only (what ALSACE trains on); all: every language
# Names as in every run script: MODEL is a Hub id to snapshot (here only); MODEL_DIR is the model the training
# scripts load, so the folder written here is exactly what to pass later as MODEL_DIR=models/<id>.
MODEL=${MODEL:-}                        # Hub id, e.g. xlm-roberta-large; empty: no model snapshot
MODEL_DIR=${MODEL_DIR:-models/${MODEL}} # where the snapshot goes = MODEL_DIR for finetuning.sh

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../src" && pwd)
ARGS=(--data_dir "$DATA_DIR" --tasks "$TASKS" --splits "$SPLITS" --train_languages "$TRAIN_LANGUAGES")
if [[ -n "$MODEL" ]]; then
    ARGS+=(--model "$MODEL" --model_dir "$MODEL_DIR")
fi
run_or_print python "$SRC/prepare_data.py" "${ARGS[@]}" "$@"
if [[ -n "$MODEL" && -z "${DRY_RUN:-}" ]]; then
    echo "model snapshot in $MODEL_DIR: run MODEL_DIR=$MODEL_DIR bash run_script/finetuning.sh"
fi
