"""The offline demo's two bookends around the real entry points (run_script/demo.sh runs all four steps).

    python src/demo.py prepare --data_dir data --output_dir outputs/demo    # data + tiny model
    python src/finetune.py ... ; python src/distill.py ...                   # the real pipeline
    python src/demo.py report --output_dir outputs/demo                      # the three tables

`prepare` writes the synthetic parallel task to <data_dir>/demo/ (see alsace.prepare.demo_data), trains a
tokenizer on an unlabeled corpus of every demo language, builds a small randomly initialised XLM-R
masked LM from a config into <output_dir>/model, and records each language's measured token overlap
with English in <output_dir>/languages.json. `report` reads the runs' JSON files and prints (and
writes to <output_dir>/summary.md) the per-language table, the teacher table and the before -> after
table.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from alsace.arguments import parse
from alsace.errors import UserError
from alsace.run_dir import run_cli


@dataclass
class PrepareArguments:
    data_dir: str = field(default="data", metadata={"help": "Writes <data_dir>/demo/<split>/<lang>.jsonl."})
    output_dir: str = field(default="outputs/demo", metadata={
        "help": "Writes the tiny model to <output_dir>/model and languages.json beside it."})
    seed: int = field(default=0, metadata={"help": "Seed of the data, the tokenizer corpus and the model init."})
    train_size: int = field(default=2000, metadata={"help": "English labelled training rows."})
    validation_size: int = field(default=500, metadata={
        "help": "Dev rows per language (the unlabeled parallel pool is taken from here)."})
    test_size: int = field(default=1000, metadata={"help": "Test rows per language."})
    corpus_size: int = field(default=2000, metadata={"help": "Unlabeled sentences per language for the tokenizer."})
    vocab_size: int = field(default=2000, metadata={"help": "Tokenizer vocabulary size (an upper bound)."})
    hidden_size: int = field(default=64, metadata={"help": "Model width."})
    num_layers: int = field(default=2, metadata={"help": "Transformer layers."})
    num_heads: int = field(default=4, metadata={"help": "Attention heads."})

    def __post_init__(self):
        for name in ("train_size", "validation_size", "test_size", "corpus_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be >= 1")
        if self.hidden_size % self.num_heads:
            raise UserError(f"--hidden_size {self.hidden_size} must be a multiple of --num_heads {self.num_heads}")


@dataclass
class ReportArguments:
    output_dir: str = field(default="outputs/demo", metadata={
        "help": "Holds model/, languages.json, finetune/ and distill/ (as run_script/demo.sh lays them out)."})
    wall_time_s: float | None = field(default=None, metadata={"help": "The demo's wall time, recorded in summary.md."})


def prepare(args: PrepareArguments) -> None:
    from alsace.files import write_json
    from alsace.prepare.demo_data import LANGUAGES, token_overlap, tokenizer_corpus, write_demo_data
    from alsace.prepare.tiny import build_tiny_model

    sizes = {"train": args.train_size, "validation": args.validation_size, "test": args.test_size}
    task_dir = write_demo_data(args.data_dir, sizes, args.seed)
    model_dir = build_tiny_model(Path(args.output_dir) / "model", tokenizer_corpus(args.corpus_size, args.seed),
                                 "xlm-roberta", vocab_size=args.vocab_size, hidden_size=args.hidden_size,
                                 num_layers=args.num_layers, num_heads=args.num_heads, seed=args.seed,
                                 tokenizer_algorithm="bpe")
    languages = token_overlap(model_dir, task_dir, LANGUAGES)
    write_json(Path(args.output_dir) / "languages.json", languages)
    print(f"demo data: {task_dir} ({', '.join(f'{k} {v}' for k, v in sizes.items())} rows per language)")
    print(f"tiny model: {model_dir}")


def report(args: ReportArguments) -> str:
    from alsace.files import write_text

    text = summary(Path(args.output_dir))
    if args.wall_time_s is not None:
        text += f"\nWall time of the whole demo: {args.wall_time_s:.0f} s.\n"
    write_text(Path(args.output_dir) / "summary.md", text)
    print(text)
    return text


def summary(output_dir: Path) -> str:
    """The three tables of a finished demo, as markdown."""
    from alsace.report.results import comparison_markdown

    def load(relative):
        path = output_dir / relative
        if not path.is_file():
            raise UserError(f"{path}: not found; run the whole demo first (bash run_script/demo.sh)")
        return json.loads(path.read_text("utf-8"))

    languages, finetuned = load("languages.json"), load("finetune/results.json")
    selection, comparison = load("distill/teacher_selection.json"), load("distill/comparison.json")
    lines = ["# ALSACE offline demo (synthetic languages)", "",
             f"## 1. After English fine-tuning: accuracy per language ({finetuned['split']} split)", "",
             "| language | script | words shared with English | test tokens seen in English training | "
             "accuracy | majority-class share |", "|---|---|---:|---:|---:|---:|"]
    for lang, r in finetuned["per_language"].items():
        info = languages[lang]
        lines.append(f"| {lang} | {info['script']} | {100 * info['shared_words']:.0f}% | "
                     f"{100 * info['token_overlap']:.1f}% | {100 * r['accuracy']:.2f} | "
                     f"{100 * r['majority_share']:.0f}% |")
    lines += ["", f"Average {100 * finetuned['average']:.2f}, transfer gap (en minus the mean of the others) "
              f"{100 * finetuned['transfer_gap']:.2f} points.", ""]
    lines += teacher_table(selection) + [""]
    lines += ["## 3. " + comparison_markdown(comparison).removeprefix("# ")]
    return "\n".join(lines)


def teacher_table(saved: dict) -> list[str]:
    """Markdown lines: ranked languages with s, normalised s, agreement with the pseudo labels, role."""
    sel = saved["selection"]
    lines = [f"## 2. Teacher selection on the unlabeled parallel pool ({sel['num_items']} items per language)", "",
             "| rank | language | confidence s | softmax ŝ | agreement with pseudo labels | role |",
             "|---:|---|---:|---:|---:|---|"]
    for rank, lang in enumerate(sel["ranking"], start=1):
        t = sel["languages"].index(lang)
        role = "teacher" if lang in sel["teachers"] else "student"
        lines.append(f"| {rank} | {lang} | {sel['scores'][t]:.4f} | {sel['normalized_scores'][t]:.4f} | "
                     f"{100 * sel['agreement'][lang]:.1f}% | {role} |")
    threshold = f"θ = {sel['threshold']:.4f}; " if sel["threshold"] is not None else ""
    pairs = ", ".join(f"{a}-{b}" for a, b in saved["pairs"])
    return lines + ["", f"{threshold}{saved['num_pairs']} distillation pairs: {pairs}."]


COMMANDS = {"prepare": (PrepareArguments, prepare), "report": (ReportArguments, report)}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: demo.py {{{','.join(COMMANDS)}}} [--flag value ...]  (demo.py COMMAND --help: its flags)\n")
        print(__doc__.strip())
        sys.exit(0)
    if not argv or argv[0] not in COMMANDS:
        raise UserError(f"first argument: choose {' or '.join(COMMANDS)} (then --help for its flags)")
    arguments, command = COMMANDS[argv[0]]
    (args,) = parse((arguments,), argv[1:])
    return command(args)


if __name__ == "__main__":
    run_cli(main)
