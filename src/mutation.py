"""Mutation testing of the method's core with mutmut 3.8.1, one module at a time; prints the score per module.

    bash run_script/mutation.sh                     # every module in pyproject.toml [tool.alsace.mutation]
    bash run_script/mutation.sh losses pairs        # only these

For each module: a fresh `mutants/` copy of the project in which only that module is mutated, the module's
own fast test files (pyproject.toml [tool.alsace.mutation]) as mutmut's test selection, then `mutmut run`.
Prints killed / total per module (a timeout counts as killed: the mutant changed behaviour), and each
surviving mutant's diff. Development only (`pip install -r requirements-dev.txt`); not part of the test suite.
Survivors that no input can tell apart from the original are listed in tests/mutation_equivalents.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTMUT_VERSION = "3.8.1"  # requirements-dev.txt


def module_table() -> dict[str, list[str]]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["alsace"]["mutation"]


def run_one(module: str, tests: list[str], max_children: int) -> None:
    """In this process: mutate only `module`, select only `tests`, run mutmut (called in a fresh process)."""
    from mutmut import configuration

    cfg = configuration.config()  # pyproject.toml [tool.mutmut]; the module and its tests replace the lists
    cfg.only_mutate = [f"src/alsace/{module}.py"]
    cfg.pytest_add_cli_args_test_selection = list(tests)
    from mutmut.__main__ import _run
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    _run([], max_children)
    for name in score(module)["others"]:  # the survivors' changed lines, while mutmut's config is this module's
        diff = get_diff_for_mutant(name, path=f"src/alsace/{module}.py").splitlines()
        changed = [line for line in diff[2:] if line[:1] in "+-"]
        print(f"survived: {name}\n" + "\n".join(changed), flush=True)


def score(module: str) -> dict:
    """Counts by status and the survivors' names, from mutmut's record of the module's mutants."""
    from mutmut.stats import status_by_exit_code

    meta = json.loads((ROOT / "mutants" / "src" / "alsace" / f"{module}.py.meta").read_text("utf-8"))
    statuses = {name: status_by_exit_code[code] for name, code in meta["exit_code_by_key"].items()}
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    return {"module": module, "total": len(statuses), "killed": killed, "counts": counts,
            "others": sorted(name for name, status in statuses.items() if status not in ("killed", "timeout"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mutation", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help="modules as in [tool.alsace.mutation] (default: all)")
    parser.add_argument("--max_children", type=int, default=1, help="parallel mutant workers (default 1)")
    parser.add_argument("--_one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    table = module_table()
    try:
        import mutmut
    except ImportError:
        print("error: mutmut is not installed; pip install -r requirements-dev.txt", file=sys.stderr)
        return 2
    if mutmut.__version__ != MUTMUT_VERSION:  # run_one sets mutmut's configuration through its internals
        print(f"error: mutmut {mutmut.__version__} is installed, this script drives {MUTMUT_VERSION}; "
              "pip install -r requirements-dev.txt", file=sys.stderr)
        return 2
    if args._one:
        run_one(args._one, table[args._one], args.max_children)
        return 0
    unknown = [m for m in args.modules if m not in table]
    if unknown:
        print(f"error: unknown module(s) {unknown}; choose from {list(table)} (pyproject.toml "
              "[tool.alsace.mutation])", file=sys.stderr)
        return 2
    rows, failed = [], []
    for module in args.modules or list(table):
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
        start = time.monotonic()
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_one", module,
                               "--max_children", str(args.max_children)], cwd=ROOT)
        minutes = (time.monotonic() - start) / 60
        if proc.returncode != 0:
            print(f"error: mutmut failed on {module} (exit {proc.returncode}); see its output above", file=sys.stderr)
            failed.append(module)
            continue
        rows.append({**score(module), "minutes": minutes})
    print("\n| module | killed / total | score | other statuses | wall time |\n|---|---:|---:|---|---:|")
    for r in rows:
        other = ", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items()) if k not in ("killed", "timeout"))
        print(f"| {r['module']} | {r['killed']} / {r['total']} | {100 * r['killed'] / max(r['total'], 1):.1f} % "
              f"| {other or '-'} | {r['minutes']:.1f} min |")
    for module in failed:
        print(f"| {module} | mutmut failed: see above | | | |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
