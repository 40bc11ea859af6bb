"""src/predict.py and run_script/predict.sh: classify new text with a saved checkpoint."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import finetune
import predict
from conftest import run_argv

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tiny_mlm, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("predict") / "run"
    finetune.main(run_argv(tiny_mlm, data_dir, out, task="xnli", languages="en,fr", max_seq_length=128, max_steps=2,
                           per_device_train_batch_size=8, max_train_samples=16, save_strategy="no",
                           report_to="none", use_cpu=True, disable_tqdm="true"))
    return out


def _predict(argv, stdin=None):
    return subprocess.run([sys.executable, str(REPO / "src" / "predict.py"), *argv], cwd=REPO, input=stdin,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_predictions_match_the_evaluation_logits(checkpoint, data_dir, tmp_path):
    """The same rows score as finetune.py's own evaluation did: same argmax, softmax of the same logits."""
    rows = [json.loads(line) for line in (data_dir / "xnli" / "test" / "fr.jsonl").read_text().splitlines()[:5]]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({**r, "lang": "fr"}) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    proc = _predict(["--model_name_or_path", str(checkpoint), "--input", str(source), "--output", str(out),
                     "--max_seq_length", "128", "--use_cpu"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    predictions = [json.loads(line) for line in out.read_text().splitlines()]
    logits = np.load(checkpoint / "predictions" / "fr_test_logits.npy")[:5]
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    names = ["entailment", "neutral", "contradiction"]
    for p, row, probs in zip(predictions, rows, expected):
        assert p["premise"] == row["premise"] and p["lang"] == "fr"
        assert p["predicted_label_id"] == int(probs.argmax())
        assert p["predicted_label"] == names[p["predicted_label_id"]]
        np.testing.assert_allclose([p["probabilities"][n] for n in names], probs, atol=1e-4)


def test_stdin_to_stdout_in_process(checkpoint, monkeypatch, capsys):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO('{"premise": "chat assis", "hypothesis": "le chien"}\n'))
    predictions = predict.main(["--model_name_or_path", str(checkpoint), "--use_cpu"])
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == predictions and len(printed) == 1
    assert sum(printed[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_bad_input_is_one_line_and_writes_nothing(checkpoint, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"premise": "a cat"}\n', encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    proc = _predict(["--model_name_or_path", str(checkpoint), "--input", str(source), "--output", str(out)])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {source}:1: field(s) hypothesis missing")
    assert not out.exists()


def test_a_directory_without_checkpoint_info_is_refused(tiny_mlm):
    from alsace.errors import UserError

    with pytest.raises(UserError, match="no alsace_task.json"):
        predict.main(["--model_name_or_path", str(tiny_mlm)])


def test_script_command_line_parses():
    from alsace.arguments import parse

    words = subprocess.run(["bash", str(REPO / "run_script" / "predict.sh")], capture_output=True, text=True,
                           env={**os.environ, "DRY_RUN": "1", "MODEL_DIR": "outputs/ft", "INPUT": "new.jsonl"},
                           cwd=REPO, check=True).stdout.split()
    (args,) = parse((predict.PredictArguments,), words[words.index("src/predict.py") + 1:])
    # INPUT is read from where the script is run (here the repository root), so it arrives absolute.
    assert args.model_name_or_path == "outputs/ft" and args.input == str(REPO / "new.jsonl") and args.output == "-"
    missing = subprocess.run(["bash", str(REPO / "run_script" / "predict.sh")], capture_output=True, text=True,
                             env={**os.environ, "DRY_RUN": "1", "MODEL_DIR": ""})
    assert missing.returncode == 2 and missing.stderr.startswith("error: MODEL_DIR is not set")
