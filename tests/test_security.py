"""Security hygiene: no pickle loading in the package, remote code only on the user's request.

A checkpoint directory is something people download and share. Loading a pickle from it runs
whatever code the pickle names, and so does `trust_remote_code`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from alsace.arguments import ModelArguments
from alsace.modeling import load_tokenizer_and_model
from alsace.tasks import get_task

SRC = Path(__file__).resolve().parents[1] / "src"
FORBIDDEN = {
    r"\bimport pickle\b|\bfrom pickle\b|\bpickle\.load|\bcPickle\b": "pickle",
    r"\bimport (dill|joblib|cloudpickle)\b|\bfrom (dill|joblib|cloudpickle)\b": "pickle-based serialiser",
    r"allow_pickle\s*=\s*True": "numpy pickle loading",
    r"trust_remote_code\s*=\s*True": "remote code without the user's --trust_remote_code",
    r"\byaml\.load\(|\bmarshal\.loads?\(": "unsafe deserialiser",
    r"(?<![\w.])(eval|exec)\(": "eval/exec",
}


def _calls(text: str, name: str) -> list[str]:
    """Every `name(...)` call in `text`, with its balanced argument list."""
    calls = []
    for match in re.finditer(re.escape(name) + r"\(", text):
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(text)):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            if depth == 0:
                break
        calls.append(text[match.start() : end + 1])
    return calls


def _sources() -> list[tuple[Path, str]]:
    return [(path, path.read_text("utf-8")) for path in sorted(SRC.rglob("*.py"))]


@pytest.mark.parametrize("pattern", FORBIDDEN, ids=list(FORBIDDEN.values()))
def test_no_unsafe_deserialisation_in_src(pattern):
    hits = [f"{path.relative_to(SRC)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
            for path, text in _sources() for m in re.finditer(pattern, text)]
    assert hits == []


def test_torch_load_and_np_load_are_restricted():
    loose = [call for _, text in _sources() for call in _calls(text, "torch.load")
             if not re.search(r"weights_only\s*=\s*True", call)]
    loose += [call for _, text in _sources() for call in _calls(text, "np.load")
              if not re.search(r"allow_pickle\s*=\s*False", call)]
    assert loose == []


def test_the_scanner_finds_what_it_looks_for():
    bad = "x = torch.load(f, map_location=(1, 2))\ny = np.load(p)\nz = torch.load(g, weights_only=True)"
    assert _calls(bad, "torch.load") == ["torch.load(f, map_location=(1, 2))", "torch.load(g, weights_only=True)"]
    assert all(re.search(pattern, sample) for pattern, sample in zip(FORBIDDEN, (
        "import pickle", "import joblib", "np.load(p, allow_pickle=True)", "trust_remote_code=True",
        "yaml.load(s)", "eval(s)")))


def test_remote_code_runs_only_with_trust_remote_code(tmp_path, tiny_mlm):
    """A checkpoint whose config names custom code: ignored by default, imported only on request."""
    assert ModelArguments(model_name_or_path="m").trust_remote_code is False
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for item in tiny_mlm.iterdir():
        (shipped / item.name).write_bytes(item.read_bytes())
    marker = tmp_path / "code_ran"
    (shipped / "custom_config.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from transformers import XLMRobertaConfig\n"
        "class CustomConfig(XLMRobertaConfig):\n    pass\n")
    config = json.loads((shipped / "config.json").read_text("utf-8"))
    config["auto_map"] = {"AutoConfig": "custom_config.CustomConfig"}
    (shipped / "config.json").write_text(json.dumps(config), "utf-8")

    load_tokenizer_and_model(str(shipped), "prompt", get_task("xnli"), 0)
    assert not marker.exists()
    try:  # the user's explicit choice: now the shipped code is imported (whatever happens next)
        load_tokenizer_and_model(str(shipped), "prompt", get_task("xnli"), 0, trust_remote_code=True)
    except Exception:  # noqa: BLE001 - only whether the code ran matters here
        pass
    assert marker.exists()
