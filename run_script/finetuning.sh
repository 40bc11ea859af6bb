#!/usr/bin/env bash
# Stage 0 of ALSACE: fine-tune on English, then evaluate every language of the task.
# Every variable below can be overridden from the environment, e.g.
#   MODEL_DIR=xlm-roberta-base DATA_DIR=data bash run_script/finetuning.sh
# Extra flags after the script name are passed to src/finetune.py ("$@" comes last and wins).
# DRY_RUN=1 prints the command instead of running it.
set -euo pipefail
source "$(dirname "$0")/launch.sh"
# Paths you give are read from where you run the script; its own defaults (outputs/...) are in the repository.
model_from_caller MODEL_DIR; task_from_caller TASK; paths_from_caller DATA_DIR OUTPUT_DIR DEEPSPEED_CONFIG
cd "$(dirname "$0")/.."

MODEL_DIR=${MODEL_DIR:-xlm-roberta-large}   # the model to load: local dir (prepare_data.sh's models/<id>) or, online, a Hub id
TASK=${TASK:-xnli}                          # xnli | pawsx | xcopa | geomlama (+ --skip_training) | path/to/task.json
DATA_DIR=${DATA_DIR:-}                      # holds <task>/<split>/<lang>.jsonl; empty = download from the Hub
HEAD=${HEAD:-prompt}                        # prompt (cloze, the original) | classification
PRESET=${PRESET:-original}                  # original: the authors' settings | xtreme: full-data XTREME-style baseline
SEED=${SEED:-100}                           # the original scripts' seed
NUM_GPUS=${NUM_GPUS:-1}                     # >1 launches torchrun with that many processes
DEEPSPEED_CONFIG=${DEEPSPEED_CONFIG:-}      # optional DeepSpeed JSON (needs `pip install deepspeed`)
LOSS=${LOSS:-full_vocab}                    # full_vocab (original: CE over the vocabulary at the mask) | label_words
SELECTION_LANGUAGE=${SELECTION_LANGUAGE:-en} # dev language for checkpoint selection (original: ar)
EVAL_BS=${EVAL_BS:-64}                      # evaluation batch size (length-sorted batches)
REPORT_TO=${REPORT_TO:-none}                # none | tensorboard | wandb | all (integrations are optional installs)
if [[ "$PRESET" == original ]]; then
  LR=${LR:-1e-6}                            # original finetuning.sh
  BS=${BS:-20}                              # original per-device batch size
  EPOCHS=${EPOCHS:-100}                     # original; with 128 rows that is 700 steps
  TRAIN_SAMPLES=${TRAIN_SAMPLES:-128}       # the paper's distillation init was a 128-shot fine-tune (first 128 rows)
  MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-512}     # original
  EVAL_STEPS=${EVAL_STEPS:-50}              # original: evaluate and save every 50 steps
elif [[ "$PRESET" == xtreme ]]; then
  LR=${LR:-7e-6}                            # XTREME: 7e-6 for large, 2e-5 for base
  BS=${BS:-32}
  EPOCHS=${EPOCHS:-5}
  TRAIN_SAMPLES=${TRAIN_SAMPLES:-}          # all 392,702 MNLI rows
  MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-128}
  EVAL_STEPS=${EVAL_STEPS:-2000}
else
  echo "error: PRESET=$PRESET: choose original or xtreme" >&2; exit 2
fi
WARMUP=${WARMUP:-0.2}                       # original warmup ratio
WEIGHT_DECAY=${WEIGHT_DECAY:-5e-4}          # original
MAX_STEPS=${MAX_STEPS:--1}                  # >0 overrides EPOCHS

args=(  # every flag that changes results (the default OUTPUT_DIR hashes them)
  --model_name_or_path "$MODEL_DIR" --task "$TASK" --head "$HEAD" --finetune_loss "$LOSS" --seed "$SEED"
  --learning_rate "$LR" --per_device_train_batch_size "$BS"
  --num_train_epochs "$EPOCHS" --max_steps "$MAX_STEPS" --warmup_steps "$WARMUP" --weight_decay "$WEIGHT_DECAY"
  --max_seq_length "$MAX_SEQ_LENGTH" --selection_language "$SELECTION_LANGUAGE"
  --eval_strategy steps --eval_steps "$EVAL_STEPS" --save_strategy steps --save_steps "$EVAL_STEPS"
  --load_best_model_at_end --metric_for_best_model accuracy
)
[[ -n "$DATA_DIR" ]] && args+=(--data_dir "$DATA_DIR")
[[ -n "$TRAIN_SAMPLES" ]] && args+=(--max_train_samples "$TRAIN_SAMPLES")
[[ -n "$DEEPSPEED_CONFIG" ]] && args+=(--deepspeed "$DEEPSPEED_CONFIG")
# Default folder: a readable prefix + a hash of every result-changing setting, extra flags included.
OUTPUT_DIR=${OUTPUT_DIR:-outputs/ft_$(task_name "$TASK")_$(basename "$MODEL_DIR")_${HEAD}_lr${LR}_seed${SEED}_$(config_hash "${args[@]}" "$@")}
script_variables run_script/finetuning.sh "model_name_or_path=MODEL_DIR task=TASK head=HEAD finetune_loss=LOSS
  seed=SEED learning_rate=LR per_device_train_batch_size=BS per_device_eval_batch_size=EVAL_BS
  num_train_epochs=EPOCHS max_steps=MAX_STEPS warmup_steps=WARMUP weight_decay=WEIGHT_DECAY
  max_seq_length=MAX_SEQ_LENGTH selection_language=SELECTION_LANGUAGE eval_steps=EVAL_STEPS save_steps=EVAL_STEPS
  data_dir=DATA_DIR max_train_samples=TRAIN_SAMPLES output_dir=OUTPUT_DIR report_to=REPORT_TO
  deepspeed=DEEPSPEED_CONFIG" "$@"

launch src/finetune.py "${args[@]}" --output_dir "$OUTPUT_DIR" --per_device_eval_batch_size "$EVAL_BS" \
  --save_total_limit 2 --logging_steps 20 --report_to "$REPORT_TO" "$@"
