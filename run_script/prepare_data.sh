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
set -euo pipefail

DATA_DIR=${DATA_DIR:-data}
TASKS=${TASKS:-xnli,pawsx,xcopa}
SPLITS=${SPLITS:-train,validation,test}
TRAIN_LANGUAGES=${TRAIN_LANGUAGES:-en}  # en: English train only (what ALSACE trains on); all: every language
MODEL=${MODEL:-}                        # e.g. xlm-roberta-large; empty: no model snapshot
MODEL_DIR=${MODEL_DIR:-models/${MODEL}}

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../src" && pwd)
ARGS=(--data_dir "$DATA_DIR" --tasks "$TASKS" --splits "$SPLITS" --train_languages "$TRAIN_LANGUAGES")
if [[ -n "$MODEL" ]]; then
    ARGS+=(--model "$MODEL" --model_dir "$MODEL_DIR")
fi
python "$SRC/prepare_data.py" "${ARGS[@]}" "$@"
