# Sourced by the run scripts, before they change to the repository root.

# Where the user ran the script: paths they give are read from here, not from the repository root.
CALLER_DIR=$PWD

# `caller_path PATH`: PATH as an absolute path from CALLER_DIR (empty, "-" and absolute paths unchanged).
caller_path() {
  local p=$1
  if [[ -z "$p" || "$p" == - || "$p" == /* ]]; then
    printf '%s\n' "$p"
  else
    p=${p#./}
    printf '%s\n' "$CALLER_DIR/${p:-.}"
  fi
}

# `paths_from_caller VAR...`: every such variable the user set to a relative path becomes absolute from
# CALLER_DIR. Called before the script's defaults, so its own defaults stay relative to the repository.
paths_from_caller() {
  local var
  for var in "$@"; do
    [[ -n "${!var:-}" ]] && printf -v "$var" '%s' "$(caller_path "${!var}")"
  done
  return 0
}

# `model_from_caller VAR`: a model variable (MODEL_DIR) is a local folder or a Hub id: it is made absolute
# when it names something that exists from CALLER_DIR or starts with ./ or ../; a Hub id is left alone.
model_from_caller() {
  local value=${!1:-}
  if [[ -n "$value" && "$value" != /* ]] && [[ -e "$CALLER_DIR/$value" || "$value" == ./* || "$value" == ../* ]]; then
    printf -v "$1" '%s' "$(caller_path "$value")"
  fi
  return 0
}

# `task_from_caller VAR`: TASK is a registry name (xnli) or a task file (*.json), a path from CALLER_DIR.
task_from_caller() {
  if [[ "${!1:-}" == *.json ]]; then
    printf -v "$1" '%s' "$(caller_path "${!1}")"
  fi
  return 0
}

# `has_flag FLAG ARGS...`: whether FLAG (or FLAG=...) is among ARGS.
has_flag() {
  local flag=$1 arg; shift
  for arg in "$@"; do
    [[ "$arg" == "$flag" || "$arg" == "$flag="* ]] && return 0
  done
  return 1
}

# `run_or_print CMD...` runs CMD, or only prints it (shell-quoted, one line) when DRY_RUN is set.
run_or_print() {
  if [[ -n "${DRY_RUN:-}" ]]; then
    printf '%q ' "$@"; echo
    return 0
  fi
  "$@"
}

# `task_name TASK` is the task's own name: TASK itself for a registry task, the
# "name" of a task file (path/to/task.json), so that run folders are named after the task, not its path.
task_name() {
  if [[ "$1" == *.json ]]; then
    python -c 'import json, sys; print(json.load(open(sys.argv[1], encoding="utf-8"))["name"])' "$1" 2>/dev/null \
      || basename "$1" .json
  else
    echo "$1"
  fi
}

# `checkpoint_task DIR`: the task a checkpoint records (its alsace_task.json), for folder names; "task" if none.
checkpoint_task() {
  python -c 'import json, sys; print(json.load(open(sys.argv[1], encoding="utf-8"))["task"])' \
    "$1/alsace_task.json" 2>/dev/null || echo task
}

# `config_hash ARGS...`: 8 hex digits of the result-changing arguments and NUM_GPUS (the effective batch size),
# so that default run folders of different configurations cannot collide.
config_hash() {
  printf '%s\0' "NUM_GPUS=${NUM_GPUS:-1}" "$@" \
    | python -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:8])'
}

# `script_variables SCRIPT "flag=VAR ..." EXTRA_ARGS...`: tell the entry point which variable set each flag, so
# that its error names the variable (`--learning_rate -0.001: must be > 0 (set by LR= in ...)`); a flag
# given again after the script name is the user's own and is left out.
script_variables() {
  local script=$1 pairs=$2 kept=() pair; shift 2
  for pair in $pairs; do
    [[ " $* " == *" --${pair%%=*} "* || " $* " == *" --${pair%%=*}="* ]] || kept+=("$pair")
  done
  export ALSACE_SCRIPT=$script ALSACE_SCRIPT_VARIABLES="${kept[*]}"
}

# `launch ENTRY ARGS...` runs a Python entry point, through torchrun when
# NUM_GPUS > 1, or only prints the command when DRY_RUN is set. It replaces the shell (`exec`, the scripts'
# last command), so that SIGTERM from `kill`, `timeout` or a scheduler reaches the entry point itself.
launch() {
  local entry=$1; shift
  local cmd
  if [[ "${NUM_GPUS:-1}" -gt 1 ]]; then
    cmd=(torchrun --nproc_per_node "$NUM_GPUS" "$entry" "$@")
  else
    cmd=(python "$entry" "$@")
  fi
  if [[ -n "${DRY_RUN:-}" ]]; then
    run_or_print "${cmd[@]}"
    return 0
  fi
  exec "${cmd[@]}"
}
