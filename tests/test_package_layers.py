"""The package's layers: the report side imports no model side, and no module imports itself round a cycle."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "alsace"

REPORT_MODULES = ("alsace.report.results", "alsace.report.aggregation", "alsace.report.plots",
                  "alsace.report.significance")
HEAVY = ("torch", "transformers", "datasets")
# alsace modules that import torch or transformers when imported (directly or through another one).
MODEL_SIDE = ("alsace.modeling", "alsace.trainer", "alsace.features", "alsace.evaluation", "alsace.scoring",
              "alsace.losses", "alsace.pairs", "alsace.tracking", "alsace.runs", "alsace.arguments")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    """Modules `path` imports when it is imported: every import outside a function (and outside
    `if TYPE_CHECKING:`), with `from package import module` counted as the module."""
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    found = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                visit_list(child.orelse)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                found.add(child.module)
                found.update(f"{child.module}.{a.name}" for a in child.names if f"{child.module}.{a.name}" in modules)
            visit(child)

    def visit_list(nodes):
        for node in nodes:
            visit(ast.Module(body=[node], type_ignores=[]))

    visit(ast.parse(path.read_text("utf-8")))
    return found


def test_report_modules_import_neither_torch_nor_transformers():
    code = ("import json, sys\n" + "".join(f"import {m}\n" for m in REPORT_MODULES)
            + f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} "
            + f"or m in {MODEL_SIDE!r})))")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_report_package_imports_no_model_side_module():
    for path in sorted((PACKAGE / "report").glob("*.py")):
        heavy = {m for m in top_level_imports(path) if m.split(".")[0] in HEAVY or m in MODEL_SIDE}
        assert not heavy, f"{path.relative_to(ROOT)} imports {sorted(heavy)} when imported"


def test_package_has_no_import_cycle():
    graph = {module_name(p): {m for m in top_level_imports(p) if m.startswith("alsace")} for p in PACKAGE.rglob("*.py")}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module, path):
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if dep not in graph:
                continue
            assert state.get(dep) != 1, f"import cycle: {' -> '.join(path[path.index(dep):] + [dep])}"
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_one_numpy_softmax():
    """`alsace.selection.softmax` is the package's one numpy softmax: no other source file exponentiates."""
    sources = [*PACKAGE.rglob("*.py"), *SRC.glob("*.py")]
    exps = [str(p.relative_to(ROOT)) for p in sources if "np.exp(" in p.read_text("utf-8")]
    assert exps == ["src/alsace/selection.py"]


def test_one_logging_setup():
    """Entry points configure logging through `alsace.logs.configure_logging` only (one format, one place)."""
    sources = [*PACKAGE.rglob("*.py"), *SRC.glob("*.py")]
    calls = ("logging.basicConfig(", ".addHandler(", ".setFormatter(")
    setups = sorted(str(p.relative_to(ROOT)) for p in sources if any(call in p.read_text("utf-8") for call in calls))
    assert setups == ["src/alsace/logs.py"]
