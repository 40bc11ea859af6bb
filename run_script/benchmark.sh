#!/usr/bin/env bash
# Speed benchmark: our evaluation / fine-tuning / distillation steps against the stock way, in one run
# on this machine (random XLM-R-base-shaped weights built from a config; nothing is downloaded).
# Prints a table and writes $OUTPUT_DIR/benchmark.json and benchmark.md. Every variable below can be
# overridden from the environment, e.g.  NUM_LAYERS=4 REPEATS=5 bash run_script/benchmark.sh
# Extra flags after the script name are passed to src/benchmark.py ("$@" comes last and wins).
# DRY_RUN=1 prints the command instead of running it. About 5-8 minutes on 2 CPU cores.
set -euo pipefail
source "$(dirname "$0")/launch.sh"
paths_from_caller OUTPUT_DIR  # read from where you run the script; the default is in the repository
cd "$(dirname "$0")/.."

NUM_LAYERS=${NUM_LAYERS:-12}                # XLM-R base: 12 (vocabulary 250,002 and hidden 768 are the defaults)
EVAL_POOL=${EVAL_POOL:-128}                 # examples our evaluation scores per pass (XNLI-like lengths, sorted)
NAIVE_EXAMPLES=${NAIVE_EXAMPLES:-32}        # the first N of them, scored in file order by the naive baseline
EVAL_BS=${EVAL_BS:-16}                      # evaluation batch size, ours and the naive baseline alike
TRAIN_BS=${TRAIN_BS:-20}                    # fine-tuning batch size (the original preset's)
DISTILL_PAIRS=${DISTILL_PAIRS:-8}           # pairs per distillation batch
TRAIN_BATCHES=${TRAIN_BATCHES:-1}           # batches per timed training pass
WARMUP=${WARMUP:-1}                         # untimed training warm-up calls per method (small batch)
REPEATS=${REPEATS:-3}                       # timed passes per method; medians are reported
SEED=${SEED:-0}
OUTPUT_DIR=${OUTPUT_DIR:-outputs/benchmark}

args=(
  --num_layers "$NUM_LAYERS" --eval_pool "$EVAL_POOL" --naive_examples "$NAIVE_EXAMPLES" --eval_batch_size "$EVAL_BS"
  --train_batch_size "$TRAIN_BS" --distill_pairs "$DISTILL_PAIRS" --train_batches "$TRAIN_BATCHES"
  --warmup "$WARMUP" --repeats "$REPEATS" --seed "$SEED" --output_dir "$OUTPUT_DIR"
)

NUM_GPUS=1 launch src/benchmark.py "${args[@]}" "$@"
