#!/usr/bin/env bash
# Stages 1-2 of ALSACE: teacher language selection, cross-lingual self-distillation, evaluation.
# MODEL_DIR must be a checkpoint written by run_script/finetuning.sh. Every variable can be overridden from the
# environment; extra flags after the script name go to src/distill.py. DRY_RUN=1 prints the command.
set -euo pipefail
source "$(dirname "$0")/launch.sh"
# Paths you give are read from where you run the script; its own defaults (outputs/...) are in the repository.
model_from_caller MODEL_DIR; task_from_caller TASK; paths_from_caller DATA_DIR OUTPUT_DIR DEEPSPEED_CONFIG

MODEL_DIR=${MODEL_DIR:-}                    # required: a checkpoint written by run_script/finetuning.sh
if [[ -z "$MODEL_DIR" ]]; then
  echo "error: MODEL_DIR is not set: set it to a checkpoint written by run_script/finetuning.sh, e.g." \
       "MODEL_DIR=outputs/ft_xnli_... bash run_script/distillation.sh" >&2; exit 2
fi
MODEL_DIR_NOTE=
if [[ ! -d "$MODEL_DIR" ]] && ! has_flag --allow_untuned_checkpoint "$@"; then
  if [[ -n "${DRY_RUN:-}" ]]; then  # a dry run may print the command for a checkpoint still to be written
    MODEL_DIR_NOTE="note: MODEL_DIR=$MODEL_DIR does not exist (yet)"
  else
    echo "error: MODEL_DIR=$MODEL_DIR: no such folder (paths are read from $CALLER_DIR); set MODEL_DIR to the" \
         "OUTPUT_DIR of a finished run_script/finetuning.sh run" >&2; exit 2
  fi
fi
cd "$(dirname "$0")/.."
TASK=${TASK:-}                              # empty = the checkpoint's (alsace_task.json); a restated TASK must match it
DATA_DIR=${DATA_DIR:-}                      # holds <task>/<split>/<lang>.jsonl; empty = download from the Hub
HEAD=${HEAD:-}                              # empty = the checkpoint's; a restated HEAD must match it
SEED=${SEED:-100}                           # original
NUM_GPUS=${NUM_GPUS:-1}                     # >1 launches torchrun
DEEPSPEED_CONFIG=${DEEPSPEED_CONFIG:-}      # the original used ZeRO-2: run_script/ds_zero2_bf16.json (optional install)
RECIPE=${RECIPE:-original}                  # original: the paper's settings | recommended: ours, measured (README)
if [[ "$RECIPE" == original ]]; then
  LR=${LR:-3e-8}                            # original; larger rates collapse predictions (see README)
  EPOCHS=${EPOCHS:-100}                     # original: 100 epochs over 77 pairs x 500 items
  MAX_STEPS=${MAX_STEPS:--1}                # >0 overrides EPOCHS
  POOL_PASSES=${POOL_PASSES:-0}             # original: EPOCHS decide
  FROZEN_TEACHER=${FROZEN_TEACHER:-false}   # original: the teacher side is the same, moving network
  ANCHOR_WEIGHT=${ANCHOR_WEIGHT:-0}         # original: no supervised anchor
  ANCHOR_TARGET=${ANCHOR_TARGET:-labels}    # (only with ANCHOR_WEIGHT > 0)
  ANCHOR_FEATURES_WEIGHT=${ANCHOR_FEATURES_WEIGHT:-0} # (only with ANCHOR_WEIGHT > 0)
  ANCHOR_TRAIN_ROWS=${ANCHOR_TRAIN_ROWS:-false} # (only with ANCHOR_TARGET=self)
  MIN_TEACHER_CONFIDENCE=${MIN_TEACHER_CONFIDENCE:-0} # original: every pair counts
  TEACHER_TEMPERATURE=${TEACHER_TEMPERATURE:-}  # original: the same temperature on both sides
  SELECTION_METHOD=${SELECTION_METHOD:-paper} # original: confidence in the majority-vote pseudo label
  SOURCE_GUARD=${SOURCE_GUARD:-false}       # original: the source language is ranked like any other
  SKIP_UNREADABLE=${SKIP_UNREADABLE:-false} # original: every language is trained
  TEACHER_TARGETS=${TEACHER_TARGETS:-mixture} # (only with FROZEN_TEACHER=true)
elif [[ "$RECIPE" == recommended ]]; then
  LR=${LR:-2e-5}                            # with a frozen teacher, a normal fine-tuning rate is safe
  EPOCHS=${EPOCHS:-1}
  MAX_STEPS=${MAX_STEPS:--1}                # >0 overrides POOL_PASSES and EPOCHS
  POOL_PASSES=${POOL_PASSES:-3.69}          # ours: steps = 3.69 x languages x pool items / (2 x BS): 332 on 28 languages, 750 on 71 (README)
  FROZEN_TEACHER=${FROZEN_TEACHER:-true}    # ours: targets fixed at the fine-tuned checkpoint's predictions
  ANCHOR_WEIGHT=${ANCHOR_WEIGHT:-1.0}       # ours: keeps English from falling when most languages are weak (docs/real_encoder.md)
  ANCHOR_TARGET=${ANCHOR_TARGET:-self}      # self: the start's own English pool predictions | labels: English training rows' gold labels
  ANCHOR_FEATURES_WEIGHT=${ANCHOR_FEATURES_WEIGHT:-30} # ours: also holds the anchor rows' hidden states (English within a point at these steps; docs/real_encoder.md)
  ANCHOR_TRAIN_ROWS=${ANCHOR_TRAIN_ROWS:-false} # true: the self-anchor covers English's training rows too, not only its pool items
  MIN_TEACHER_CONFIDENCE=${MIN_TEACHER_CONFIDENCE:-0} # ours: drop pairs whose teacher is less sure than this
  TEACHER_TEMPERATURE=${TEACHER_TEMPERATURE:-}  # ours: < 1 sharpens the teacher's targets; empty = TEMPERATURE
  SELECTION_METHOD=${SELECTION_METHOD:-dawid_skene} # ours: robust when most languages are weak (README)
  SOURCE_GUARD=${SOURCE_GUARD:-true}        # ours: English first in the ranking, never the learning side
  SKIP_UNREADABLE=${SKIP_UNREADABLE:-true}  # ours: no pairs for languages whose pool rows are mostly identical inputs
  TEACHER_TARGETS=${TEACHER_TARGETS:-dawid_skene} # ours: one Dawid-Skene posterior per item (mixture: each teacher's own)
else
  echo "error: RECIPE=$RECIPE: choose original or recommended" >&2; exit 2
fi
BS=${BS:-40}                                # original: 40 language pairs per batch (80 sequences)
EVAL_BS=${EVAL_BS:-64}
REPORT_TO=${REPORT_TO:-none}                # none | tensorboard | wandb | all (integrations are optional installs)
WARMUP=${WARMUP:-0.2}                       # original: 20% warmup ...
SCHEDULER=${SCHEDULER:-constant_with_warmup} # ... then constant (the original's DeepSpeed WarmupLR)
TRAIN_ONLY_EMBEDDINGS=${TRAIN_ONLY_EMBEDDINGS:-false} # ours: true trains only the embeddings of tokens English never uses (English cannot change)
SOURCE_ALIGNMENT_WEIGHT=${SOURCE_ALIGNMENT_WEIGHT:-0} # ours: > 0 also pulls each trained row's pooled hidden states to the start's on its English translation
WEIGHT_DECAY=${WEIGHT_DECAY:-$([[ "$TRAIN_ONLY_EMBEDDINGS" == true ]] && echo 0 || echo 5e-4)}  # original: 5e-4 (0 with TRAIN_ONLY_EMBEDDINGS)
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-512}       # original
BF16=${BF16:-auto}                          # original trained in bf16; auto = where the GPU supports it
POOL_SIZE=${POOL_SIZE:-}                    # unlabeled parallel items; empty = the task's default (500; XCOPA 100); >= 5
TEACHER_THRESHOLD=${TEACHER_THRESHOLD:-mean} # mean | paper (0.06 XNLI; PAWS-X/XCOPA's 0.2 leaves no teacher) | a float
LANG_RANK=${LANG_RANK:-}                    # fixed ranking instead of scoring: original | en,fr,... (needs NUM_STUDENTS)
NUM_STUDENTS=${NUM_STUDENTS:-}              # with LANG_RANK: the last N are students (original XNLI: 8)
KL_DIRECTION=${KL_DIRECTION:-teacher_target} # teacher_target (paper) | student_target (released code) | symmetric
DETACH_TEACHER=${DETACH_TEACHER:-false}     # true: no gradient through the teacher side (original: false)
TEMPERATURE=${TEMPERATURE:-1.0}
SAVE_STEPS=${SAVE_STEPS:-$([[ "$RECIPE" == recommended ]] && echo 100 || echo 500)}  # checkpoint interval (recommended: a kill loses <= 100 steps); with --select_best_on_dev a multiple of --eval_steps

if [[ "$BF16" == auto ]]; then
  BF16=$(python -c 'import torch; print(str(torch.cuda.is_available() and torch.cuda.is_bf16_supported()).lower())')
fi
args=(  # every flag that changes results (the default OUTPUT_DIR hashes them)
  --model_name_or_path "$MODEL_DIR" --seed "$SEED"
  --learning_rate "$LR" --per_device_train_batch_size "$BS"
  --num_train_epochs "$EPOCHS" --max_steps "$MAX_STEPS" --pool_passes "$POOL_PASSES" --warmup_steps "$WARMUP" --lr_scheduler_type "$SCHEDULER"
  --weight_decay "$WEIGHT_DECAY" --max_seq_length "$MAX_SEQ_LENGTH" --bf16 "$BF16"
  --teacher_threshold "$TEACHER_THRESHOLD" --kl_direction "$KL_DIRECTION" --detach_teacher "$DETACH_TEACHER"
  --temperature "$TEMPERATURE" --frozen_teacher "$FROZEN_TEACHER" --anchor_weight "$ANCHOR_WEIGHT"
  --anchor_target "$ANCHOR_TARGET" --anchor_features_weight "$ANCHOR_FEATURES_WEIGHT" --anchor_train_rows "$ANCHOR_TRAIN_ROWS" --train_only_embeddings "$TRAIN_ONLY_EMBEDDINGS"
  --source_alignment_weight "$SOURCE_ALIGNMENT_WEIGHT" --min_teacher_confidence "$MIN_TEACHER_CONFIDENCE" --selection_method "$SELECTION_METHOD"
  --source_guard "$SOURCE_GUARD" --skip_unreadable "$SKIP_UNREADABLE" --teacher_targets "$TEACHER_TARGETS" --save_strategy steps --save_steps "$SAVE_STEPS"
)
[[ -n "$TASK" ]] && args+=(--task "$TASK")
[[ -n "$HEAD" ]] && args+=(--head "$HEAD")
[[ -n "$DATA_DIR" ]] && args+=(--data_dir "$DATA_DIR")
[[ -n "$POOL_SIZE" ]] && args+=(--pool_size "$POOL_SIZE")
[[ -n "$TEACHER_TEMPERATURE" ]] && args+=(--teacher_temperature "$TEACHER_TEMPERATURE")
[[ -n "$LANG_RANK" ]] && args+=(--lang_rank "$LANG_RANK" --num_students "${NUM_STUDENTS:?LANG_RANK needs NUM_STUDENTS}")
[[ -n "$DEEPSPEED_CONFIG" ]] && args+=(--deepspeed "$DEEPSPEED_CONFIG")
# Default folder: a readable prefix + a hash of every result-changing setting, extra flags included.
OUTPUT_DIR=${OUTPUT_DIR:-outputs/distill_$(task_name "${TASK:-$(checkpoint_task "$MODEL_DIR")}")_$(basename "$MODEL_DIR")_${RECIPE}_lr${LR}_seed${SEED}_$(config_hash "${args[@]}" "$@")}
script_variables run_script/distillation.sh "model_name_or_path=MODEL_DIR task=TASK head=HEAD seed=SEED
  learning_rate=LR per_device_train_batch_size=BS per_device_eval_batch_size=EVAL_BS num_train_epochs=EPOCHS
  max_steps=MAX_STEPS pool_passes=POOL_PASSES warmup_steps=WARMUP lr_scheduler_type=SCHEDULER weight_decay=WEIGHT_DECAY
  max_seq_length=MAX_SEQ_LENGTH bf16=BF16 teacher_threshold=TEACHER_THRESHOLD kl_direction=KL_DIRECTION
  detach_teacher=DETACH_TEACHER temperature=TEMPERATURE frozen_teacher=FROZEN_TEACHER anchor_weight=ANCHOR_WEIGHT anchor_target=ANCHOR_TARGET
  anchor_features_weight=ANCHOR_FEATURES_WEIGHT anchor_train_rows=ANCHOR_TRAIN_ROWS train_only_embeddings=TRAIN_ONLY_EMBEDDINGS
  source_alignment_weight=SOURCE_ALIGNMENT_WEIGHT min_teacher_confidence=MIN_TEACHER_CONFIDENCE selection_method=SELECTION_METHOD source_guard=SOURCE_GUARD skip_unreadable=SKIP_UNREADABLE
  teacher_targets=TEACHER_TARGETS save_steps=SAVE_STEPS data_dir=DATA_DIR pool_size=POOL_SIZE
  teacher_temperature=TEACHER_TEMPERATURE lang_rank=LANG_RANK num_students=NUM_STUDENTS output_dir=OUTPUT_DIR
  report_to=REPORT_TO deepspeed=DEEPSPEED_CONFIG" "$@"

[[ -n "$MODEL_DIR_NOTE" ]] && echo "$MODEL_DIR_NOTE" >&2
launch src/distill.py "${args[@]}" --output_dir "$OUTPUT_DIR" --per_device_eval_batch_size "$EVAL_BS" \
  --save_total_limit 2 --logging_steps 20 --report_to "$REPORT_TO" "$@"
