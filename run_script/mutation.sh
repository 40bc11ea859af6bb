#!/usr/bin/env bash
# Mutation testing of the method's core (development only: pip install -r requirements-dev.txt).
#   bash run_script/mutation.sh                  # every module listed in pyproject.toml [tool.alsace.mutation]
#   bash run_script/mutation.sh losses pairs     # only these modules
# Each module is mutated alone in a fresh mutants/ copy and tested by its own fast test files; the script
# prints every surviving mutant's diff and then the score per module (killed / total). MAX_CHILDREN
# parallel workers (default 1), run at low priority: a few minutes per module on 2 cores.
# Remaining survivors are explained in tests/mutation_equivalents.md.
# DRY_RUN=1 prints the command instead of running it.
set -euo pipefail
source "$(dirname "$0")/launch.sh"
cd "$(dirname "$0")/.."
MAX_CHILDREN=${MAX_CHILDREN:-1}             # parallel mutmut workers
run_or_print nice -n 10 python src/mutation.py --max_children "$MAX_CHILDREN" "$@"
