"""The repository itself: portable file names, and docs whose links and cited files exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Characters Windows (or a shell) cannot take in a file name, plus control characters and spaces.
NOT_PORTABLE = re.compile(r'[<>:"|?*\\\x00-\x1f ]')
# File names the docs cite that runs write (they exist under outputs/<run>/, not in the repository).
RUN_OUTPUT_NAMES = {
    "results.md", "comparison.md", "summary.md", "aggregate.md", "benchmark.md", "README.md",
}


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [p for p in out.decode("utf-8").split("\0") if p]


def test_every_tracked_path_is_portable():
    bad = [p for p in tracked_files() if any(NOT_PORTABLE.search(part) or part.endswith(".")
                                             for part in p.split("/"))]
    assert not bad, f"file names that cannot be checked out everywhere: {bad}"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "data" / "README.md",
            ROOT / "outputs" / "README.md"]


def cited_paths(text: str) -> list[str]:
    """Markdown link targets and `backticked` repository paths (no placeholders) in `text`."""
    links = [m for m in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:|#", m)]
    quoted = [m for m in re.findall(r"`([^`\s]+)`", text)
              if re.fullmatch(r"(src|run_script|docs|tests)/[\w./-]+\.\w+", m)  # data/ is generated
              and not re.search(r"[<>*${}]|path/to", m)]
    return [link.split("#")[0] for link in links] + quoted


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_cited_files_exist(doc):
    text = doc.read_text("utf-8")
    missing = []
    for target in cited_paths(text):
        base = doc.parent if not re.match(r"(src|run_script|docs|tests)/", target) else ROOT
        if not (base / target).exists() and not (ROOT / target).exists():
            missing.append(target)
    # Markdown files named anywhere in the text (e.g. "see DESIGN.md") must be in the repository.
    names = {p.name for p in ROOT.rglob("*.md") if ".git" not in p.parts}
    for name in set(re.findall(r"[\w/-]*[A-Za-z_]\.md\b", text)):
        if Path(name).name not in names | RUN_OUTPUT_NAMES:
            missing.append(name)
    assert not missing, f"{doc.relative_to(ROOT)} cites files that do not exist: {sorted(set(missing))}"


def test_package_builds_with_its_resources(tmp_path):
    """`pip install -e .` needs a build system and package discovery under src/ (built here offline)."""
    pytest.importorskip("setuptools")
    import shutil
    import sys
    import zipfile

    copy = tmp_path / "repo"
    for name in tracked_files():
        if name.startswith(("src/", "pyproject.toml", "README.md", "LICENSE")):
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, copy / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q", ".",
                           "-w", str(tmp_path / "wheel")], cwd=copy, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = zipfile.ZipFile(next((tmp_path / "wheel").glob("alsace-*.whl"))).namelist()
    assert "alsace/__init__.py" in names and "alsace/resources/prompts_original.json" in names
