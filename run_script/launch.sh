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

# `launch ENTRY ARGS...` runs a Python entry point, through torchrun when
# NUM_GPUS > 1, or only prints the command when DRY_RUN is set.
launch() {
  local entry=$1; shift
  local cmd
  if [[ "${NUM_GPUS:-1}" -gt 1 ]]; then
    cmd=(torchrun --nproc_per_node "$NUM_GPUS" "$entry" "$@")
  else
    cmd=(python "$entry" "$@")
  fi
  run_or_print "${cmd[@]}"
}
