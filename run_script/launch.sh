# Sourced by the run scripts: `launch ENTRY ARGS...` runs a Python entry point, through torchrun when
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
