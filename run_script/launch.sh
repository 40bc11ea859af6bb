# Sourced by the run scripts. `task_name TASK` is the task's own name: TASK itself for a registry task, the
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
  if [[ -n "${DRY_RUN:-}" ]]; then
    printf '%q ' "${cmd[@]}"; echo
    return 0
  fi
  "${cmd[@]}"
}
