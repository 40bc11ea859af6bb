r"""Classify new text with a checkpoint written by finetune.py or distill.py, in any language.

    python src/predict.py --model_name_or_path outputs/xnli-distill --input new.jsonl --output predictions.jsonl
    echo '{"premise": "Il pleut.", "hypothesis": "Le sol est sec.", "lang": "fr"}' | \
        python src/predict.py --model_name_or_path outputs/xnli-distill

Each input line is a JSON object with the task's text fields (XNLI: premise, hypothesis) and an optional
`lang`. The checkpoint's `alsace_task.json` says which task (a task file is copied into the checkpoint),
head, prompt and maximum length it was trained with, so the text is scored exactly as evaluation scores
it. Each output line is the input object plus `predicted_label` (label name), `predicted_label_id` and
`probabilities` (label name -> probability).
The output file is written atomically: all of it, or nothing.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alsace.arguments import parse
from alsace.data import json_objects
from alsace.errors import UserError
from alsace.run_dir import run_cli
from alsace.evaluation import predict_logits
from alsace.features import Collator, Featurizer
from alsace.files import write_text
from alsace.checkpoint import CHECKPOINT_INFO, DEFAULT_MAX_SEQ_LENGTH, CheckpointInfo, placeholder_count
from alsace.modeling import load_tokenizer_and_model
from alsace.selection import softmax
from alsace.tasks import get_task


@dataclass
class PredictArguments:
    model_name_or_path: str = field(metadata={
        "help": "A checkpoint directory written by finetune.py or distill.py (it holds alsace_task.json)."})
    input: str = field(default="-", metadata={
        "help": "JSONL file of rows with the task's text fields and an optional 'lang'; '-' reads stdin."})
    output: str = field(default="-", metadata={"help": "JSONL file for the predictions; '-' writes stdout."})
    task: str | None = field(default=None, metadata={
        "help": "Task name or task file; default (recommended): the task recorded in the checkpoint, task "
                "files included (the checkpoint keeps a copy). Restating it is allowed when it is the same task."})
    max_seq_length: int | None = field(default=None, metadata={
        "help": "Maximum tokens per input; default: the checkpoint's (512 for checkpoints that do not record it)."})
    batch_size: int = field(default=32, metadata={"help": "Rows scored per forward pass."})
    use_cpu: bool = field(default=False, metadata={"help": "Score on the CPU even when a GPU is available."})

    def __post_init__(self):
        if self.batch_size < 1:
            raise UserError("--batch_size must be >= 1")


def main(argv=None) -> list[dict]:
    (args,) = parse((PredictArguments,), argv, __doc__)
    info = checkpoint_info(args.model_name_or_path)
    task = get_task(info.resolve_task(args.task), check_files=False)
    info.check(task, info.head)
    rows = read_rows(args.input, task)
    max_seq_length = args.max_seq_length or info.max_seq_length or DEFAULT_MAX_SEQ_LENGTH

    import torch

    head, num_placeholders = info.head, placeholder_count(info, task, None)
    setting = info.prompt_language or "en"  # older records without it: the default
    tokenizer, model = load_tokenizer_and_model(args.model_name_or_path, head, task, num_placeholders)
    languages = [prompt_language(row, task, setting) for row in rows]
    featurizer = Featurizer(tokenizer, task, head, max_seq_length, num_placeholders, setting,
                            is_seq2seq=model.config.is_encoder_decoder, languages=tuple(dict.fromkeys(languages)))
    features = [featurizer.encode_row(row, lang) for row, lang in zip(rows, languages)]
    device = "cpu" if args.use_cpu or not torch.cuda.is_available() else "cuda"
    logits = predict_logits(model, features, Collator(tokenizer.pad_token_id), args.batch_size, device,
                            desc="predicting")  # (N, C)
    predictions = prediction_rows(rows, logits, task.label_names)
    text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        write_text(args.output, text)
        print(f"done: {len(predictions)} predictions in {args.output}", file=sys.stderr)
    return predictions


def checkpoint_info(path: str) -> CheckpointInfo:
    """The task/head/prompt settings saved beside the checkpoint (`alsace_task.json`)."""
    if not Path(path).expanduser().is_dir():
        raise UserError(f"--model_name_or_path {path}: directory not found; pass the --output_dir of a "
                        "finetune.py or distill.py run")
    info = CheckpointInfo.read(path)
    if info is None:
        raise UserError(f"--model_name_or_path {path}: no {CHECKPOINT_INFO}, so not a checkpoint written by "
                        "finetune.py or distill.py; pass the --output_dir of such a run")
    return info


def read_rows(source: str, task) -> list[dict]:
    """Input rows as JSON objects, each checked for the task's text fields (one-line error otherwise)."""
    name = "stdin" if source == "-" else source
    if source != "-" and not Path(source).is_file():
        raise UserError(f"--input {source}: file not found")
    text = sys.stdin.read() if source == "-" else Path(source).read_text("utf-8")
    needed = [f for f in (*task.text_fields, task.candidate_field) if f]
    rows = []
    for line_no, row in json_objects(text.splitlines(), name):
        missing = [f for f in needed if not row.get(f)]
        if missing:
            raise UserError(f"{name}:{line_no}: field(s) {', '.join(missing)} missing or empty; task {task.name} "
                            f"needs {', '.join(needed)}")
        rows.append(row)
    if not rows:
        raise UserError(f"{name}: no rows to classify")
    return rows


def prompt_language(row: dict, task, setting: str) -> str:
    """Whose prompt a row uses: the source language's for `en` (any input language), its own for `native`."""
    if setting != "native":
        return task.source_language
    lang = row.get("lang")
    if lang not in task.templates:
        raise UserError(f"'lang' {lang!r}: the checkpoint uses native prompts, so each row needs a 'lang' among "
                        f"{', '.join(task.templates)}")
    return lang


def prediction_rows(rows: list[dict], logits: np.ndarray, label_names) -> list[dict]:
    """Each row plus its predicted label name, label id and per-class probabilities (softmax of `(N, C)`)."""
    probs = softmax(logits.astype(np.float64))
    out = []
    for row, p in zip(rows, probs):
        best = int(p.argmax())
        out.append({**row, "predicted_label": label_names[best], "predicted_label_id": best,
                    "probabilities": {name: round(float(q), 6) for name, q in zip(label_names, p)}})
    return out


if __name__ == "__main__":
    run_cli(main)
