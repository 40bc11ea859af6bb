"""The README's variable tables and the scripts say the same thing, in both directions; code cites no
document that is not in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (ROOT / "run_script").glob("*.sh") if p.name != "launch.sh")
COMMON = "every run script"  # the README table of variables every script reads (through launch.sh)


def variables_read(script: Path) -> set[str]:
    """Variables a script takes from the environment: every `${VAR:-...}`, `${VAR-...}` or `${VAR:?...}`."""
    code = "\n".join(line for line in script.read_text("utf-8").splitlines() if not line.lstrip().startswith("#"))
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):?[-?=]", code))


def readme_tables() -> dict[str, set[str]]:
    """`<!-- variables: X -->` -> the backticked names in the first column of the table below it."""
    tables: dict[str, set[str]] = {}
    lines = (ROOT / "README.md").read_text("utf-8").splitlines()
    for i, line in enumerate(lines):
        match = re.fullmatch(r"<!-- variables: (.+) -->", line.strip())
        if not match:
            continue
        assert match.group(1) not in tables, f"two tables for {match.group(1)}"
        names = set()
        for row in lines[i + 3:]:  # after the header and the |---| line
            if not row.startswith("|"):
                break
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", row.split("|")[1]))
        tables[match.group(1)] = names
    return tables


def test_every_script_sources_launch_sh_which_reads_dry_run():
    assert "DRY_RUN" in variables_read(ROOT / "run_script" / "launch.sh")
    for script in SCRIPTS:
        assert re.search(r"^source .*launch\.sh", script.read_text("utf-8"), flags=re.M), script.name
    assert readme_tables()[COMMON] == {"DRY_RUN"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_readme_table_lists_exactly_the_variables_the_script_reads(script):
    tables = readme_tables()
    key = f"run_script/{script.name}"
    assert key in tables, f"README has no <!-- variables: {key} --> table"
    read = variables_read(script) - tables[COMMON]
    assert read - tables[key] == set(), f"{script.name} reads variables the README does not list"
    assert tables[key] - read == set(), f"the README lists variables {script.name} does not read"


def test_the_table_check_sees_what_it_claims_to():
    """The extraction itself: a read in a comment does not count, `${VAR-x}` and `${VAR:?x}` do."""
    tables = readme_tables()
    assert {"EVAL_BS", "MODEL_DIR"} <= tables["run_script/finetuning.sh"]
    assert "BATCH_SIZE" in tables["run_script/predict.sh"]
    assert {"FINETUNE_VARS", "DISTILL_VARS", "DISTILL_NAME", "OUTPUT_ROOT", "SEEDS"} <= variables_read(
        ROOT / "run_script" / "multiseed.sh")
    assert {"TASKS", "SPLITS", "TRAIN_LANGUAGES"} <= variables_read(ROOT / "run_script" / "prepare_data.sh")


def test_code_cites_only_documents_in_the_repository():
    names = {p.name for p in ROOT.rglob("*.md") if ".git" not in p.parts}
    names |= {"README.md", "results.md", "comparison.md", "summary.md", "aggregate.md", "benchmark.md"}  # run outputs
    missing = []
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "run_script").glob("*")]:  # tests name fixtures
        for name in set(re.findall(r"[\w/-]*[A-Za-z_]\.md\b", path.read_text("utf-8"))):
            if Path(name).name not in names:
                missing.append(f"{path.relative_to(ROOT)}: {name}")
    assert not missing, missing


def markdown_headings(text: str) -> list[str]:
    """The heading lines of a Markdown text, leaving out fenced code (where `#` starts a shell comment)."""
    headings, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            headings.append(line)
    return headings


def test_no_heading_swallowed_a_table_or_a_code_block():
    # A paste into the middle of a heading once turned a section title into a 2,000-character line holding a
    # table row; the heading's anchor and the table were both lost.
    assert markdown_headings("# a\n```bash\n# not a heading\n```\n## b | c |\n") == ["# a", "## b | c |"]
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for heading in markdown_headings(path.read_text(encoding="utf-8")):
            assert " | " not in heading and "```" not in heading and len(heading) < 250, (path.name, heading[:120])
