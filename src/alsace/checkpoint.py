"""The record saved beside every checkpoint this project writes (`alsace_task.json`), read in one place.

`CheckpointInfo.write` stores the task (and a copy of its task file, when it came from one), label set, head,
prompt settings and maximum length of a fine-tuned or distilled checkpoint. Later stages read it with
`CheckpointInfo.read` and take those settings from it: `resolve_task` gives the `--task` value (the
checkpoint's own when not given, a restated one only if it is the same task), `check` refuses a label set or
head that differs, and `placeholder_count` gives the number of `歌` tokens. distill.py (`settings_from_checkpoint`), predict.py
and the model card all read the record through this class. No torch here: the reports import it too.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

from alsace.errors import UserError
from alsace.files import write_json

if TYPE_CHECKING:
    from alsace.features import Featurizer
    from alsace.tasks import Task

CHECKPOINT_INFO = "alsace_task.json"  # task/head/prompt settings saved beside every checkpoint
TASK_FILE_COPY = "alsace_task_file.json"  # the task file a checkpoint was trained with (data_dir made absolute)
DEFAULT_MAX_SEQ_LENGTH = 512  # for checkpoints written before the record kept it


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """`alsace_task.json` of the checkpoint in `path` (the folder it was read from; not stored)."""

    path: str
    task: str  # the task's name (a registry name, or the name inside its task file)
    label_names: tuple[str, ...] | None  # None: an older record without them (matches no task)
    head: str | None
    prompt_language: str | None = None
    num_placeholder_tokens: int | None = None
    max_seq_length: int | None = None
    task_file: str | None = None  # TASK_FILE_COPY when the task came from a task file

    @classmethod
    def read(cls, path: str | Path) -> CheckpointInfo | None:
        """The record beside the checkpoint in `path`; None for a stock or foreign model (no record)."""
        info_path = Path(path).expanduser() / CHECKPOINT_INFO
        if not info_path.is_file():
            return None
        raw = json.loads(info_path.read_bytes())  # JSON is UTF-8
        labels = raw.get("label_names")
        return cls(path=str(path), task=raw["task"], label_names=None if labels is None else tuple(labels),
                   head=raw.get("head"), prompt_language=raw.get("prompt_language"),
                   num_placeholder_tokens=raw.get("num_placeholder_tokens"),
                   max_seq_length=raw.get("max_seq_length"), task_file=raw.get("task_file"))

    @staticmethod
    def write(output_dir: str | Path, task: Task, head: str, featurizer: Featurizer,
              task_path: str | None = None) -> None:
        """Save the record of a checkpoint trained on `task` with `head` and `featurizer`'s settings.

        With `task_path` a task file (`.json`), a copy of it (its `data_dir` made absolute) is saved too, so
        that the checkpoint reads the same data wherever it is moved and whether or not the original is kept.
        """
        info = {
            "task": task.name,
            "label_names": list(task.label_names),
            "head": head,
            "prompt_language": featurizer.prompt_language,
            "num_placeholder_tokens": featurizer.num_placeholder_tokens,
            "max_seq_length": featurizer.max_length,
        }
        if task_path and task_path.endswith(".json"):
            spec = json.loads(Path(task_path).read_bytes())
            spec["data_dir"] = task.data_dir
            write_json(Path(output_dir) / TASK_FILE_COPY, spec)
            info["task_file"] = TASK_FILE_COPY
        write_json(Path(output_dir) / CHECKPOINT_INFO, info)

    def to_dict(self) -> dict:
        """The stored fields (what `alsace_task.json` holds, `label_names` as a list)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "path"}
        out["label_names"] = list(self.label_names) if self.label_names is not None else None
        return {k: v for k, v in out.items() if v is not None}

    @property
    def own_task(self) -> str:
        """The `--task` value this checkpoint was trained for: its task-file copy, or the registry name."""
        return str(Path(self.path).expanduser() / self.task_file) if self.task_file else self.task

    def resolve_task(self, given: str | None) -> str:
        """The `--task` to use: the checkpoint's own when `given` is None; a restated task must be the same.

        A task file that names the same task as the copy (equal apart from where its data are), or a registry
        task with the recorded name and labels, counts as the same task; the copy is then used, so that the
        value is one and the same however the task was restated.
        """
        from alsace.tasks import TASKS, get_task

        if given is None:
            if not self.task_file and self.task not in TASKS:  # a task-file checkpoint saved without a copy
                raise UserError(f"--model_name_or_path {self.path}: fine-tuned on task {self.task!r} of a task file; "
                                f"pass that file with --task path/to/{self.task}.json (TASK= in run_script/*.sh)")
            return self.own_task
        if given == self.own_task:
            return given
        restated = get_task(given, check_files=False)
        if self.task_file:
            own = get_task(self.own_task, check_files=False)
            same = dataclasses.replace(restated, data_dir=None) == dataclasses.replace(own, data_dir=None)
        else:
            same = restated.name == self.task and tuple(restated.label_names) == self.label_names
        if not same:
            raise UserError(f"--task {given}: {self.path} was fine-tuned for task {self.task} (labels "
                            f"{', '.join(self.label_names or ())}; its {CHECKPOINT_INFO}"
                            f"{' and ' + TASK_FILE_COPY if self.task_file else ''}); omit --task to use the "
                            "checkpoint's, or start from a checkpoint of this task")
        return self.own_task if self.task_file else given

    def resolve_head(self, given: str | None) -> str:
        """The `--head` to use: the recorded one when not given; a restated head must be the same."""
        if given is None:
            return self.head
        if given != self.head:
            raise UserError(f"--head {given}: {self.path} was trained with --head {self.head} (its "
                            f"{CHECKPOINT_INFO}); omit --head to use the checkpoint's")
        return given

    def check(self, task: Task, head: str) -> None:
        """The task's label set and the head must be those the checkpoint was trained with."""
        recorded = list(self.label_names) if self.label_names is not None else None
        if recorded != list(task.label_names):
            raise UserError(
                f"{self.path}: checkpoint was fine-tuned for labels {recorded} ({self.task}) "
                f"but --task {task.name} has {list(task.label_names)}; pass the task it was fine-tuned for (--task, "
                f"TASK= in run_script/*.sh: {self.task} or its task file) or a checkpoint fine-tuned for {task.name}"
            )
        if self.head != head:
            raise UserError(f"{self.path}: checkpoint was trained with --head {self.head}; pass --head {self.head} "
                            f"(HEAD={self.head} in run_script/*.sh)")

    def check_prompt_language(self, head: str, given: str) -> None:
        """A prompt-head checkpoint reads its label words in the language it was trained with."""
        if head == "prompt" and self.prompt_language is not None and given != self.prompt_language:
            raise UserError(f"--prompt_language {given}: {self.path} was trained with --prompt_language "
                            f"{self.prompt_language} (its {CHECKPOINT_INFO}); pass --prompt_language "
                            f"{self.prompt_language} (run_script/*.sh pass extra flags on)")


def placeholder_count(info: CheckpointInfo | None, task: Task, flag: int | None) -> int:
    """The flag if given, else what the checkpoint was trained with, else the task's default."""
    if flag is not None:
        return flag
    if info is None or info.num_placeholder_tokens is None:
        return task.num_placeholder_tokens
    return int(info.num_placeholder_tokens)


def settings_from_checkpoint(model_args, data_args, prompt_args=None) -> CheckpointInfo | None:
    """`--task` and `--head` from the checkpoint's record when not given; restated values must agree.

    Returns the record (None for a stock model: then the defaults, xnli and prompt, apply).
    """
    info = CheckpointInfo.read(model_args.model_name_or_path)
    if info is None:
        data_args.task = data_args.task or "xnli"
        model_args.head = model_args.head or "prompt"
        return None
    data_args.task = info.resolve_task(data_args.task)
    data_args.check_data_dir()
    model_args.head = info.resolve_head(model_args.head)
    if prompt_args is not None:
        info.check_prompt_language(model_args.head, prompt_args.prompt_language)
    return info
