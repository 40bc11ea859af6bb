#!/usr/bin/env bash
# Classify new text with a checkpoint written by finetuning.sh or distillation.sh, in any language.
#   MODEL_DIR=outputs/<run> INPUT=new.jsonl OUTPUT=predictions.jsonl bash run_script/predict.sh
# INPUT rows: one JSON object per line with the task's text fields (XNLI: premise, hypothesis) and an
# optional "lang". Extra flags after the script name are passed to src/predict.py ("$@" comes last).
# DRY_RUN=1 prints the command instead of running it.
set -euo pipefail
source "$(dirname "$0")/launch.sh"
# Paths you give are read from where you run the script.
model_from_caller MODEL_DIR; task_from_caller TASK; paths_from_caller INPUT OUTPUT
cd "$(dirname "$0")/.."

MODEL_DIR=${MODEL_DIR:-}                    # a run's --output_dir (holds alsace_task.json)
INPUT=${INPUT:--}                           # JSONL file; - reads stdin
OUTPUT=${OUTPUT:--}                         # JSONL file; - writes stdout
TASK=${TASK:-}                              # empty: the task recorded in the checkpoint (task files included)
BATCH_SIZE=${BATCH_SIZE:-32}                # rows scored per forward pass
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-}          # empty = the checkpoint's (alsace_task.json)
if [[ -z "$MODEL_DIR" ]]; then
  echo "error: MODEL_DIR is not set: pass the output directory of a finetuning.sh or distillation.sh run, e.g. MODEL_DIR=outputs/ft_xnli_... bash run_script/predict.sh" >&2
  exit 2
fi

args=(--model_name_or_path "$MODEL_DIR" --input "$INPUT" --output "$OUTPUT" --batch_size "$BATCH_SIZE")
[[ -n "$MAX_SEQ_LENGTH" ]] && args+=(--max_seq_length "$MAX_SEQ_LENGTH")
[[ -n "$TASK" ]] && args+=(--task "$TASK")
script_variables run_script/predict.sh "model_name_or_path=MODEL_DIR input=INPUT output=OUTPUT batch_size=BATCH_SIZE
  max_seq_length=MAX_SEQ_LENGTH task=TASK" "$@"
NUM_GPUS=1 launch src/predict.py "${args[@]}" "$@"
