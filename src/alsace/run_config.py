"""A run is its configuration: the resolved settings stored in the run directory before any work.

`run_config.json` holds every setting of a run after presets, recipes, argument files and defaults,
nested by section as `run_args.json` (which is the same record, copied at the end). A rerun into the
same directory compares its own configuration with the stored one (`config_differences`), ignoring
only `RESULT_NEUTRAL_FIELDS`: equal settings resume the run, any other difference is refused.
This module is light (no torch) so that the report tools can share the list.
"""

from __future__ import annotations

import hashlib
import json

from alsace.files import jsonable

CONFIG_FILE = "run_config.json"

# Settings (leaf names, in any section) that cannot change a run's numbers: where the output goes, how it is
# logged and reported, how data is loaded, how often and how many checkpoints are kept, the evaluation batch
# size (length-sorted, padded batches: the scores are the same up to float rounding) and the per-language dev
# logging. One list: the rerun check (`config_differences`) and src/aggregate.py both use it.
RESULT_NEUTRAL_FIELDS = frozenset({
    "output_dir", "run_name", "logging_dir", "overwrite_output_dir", "resume_from_checkpoint", "keep_checkpoints",
    "report_to", "project", "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id",
    "push_to_hub", "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo", "hub_always_push", "hub_revision",
    "logging_strategy", "logging_steps", "logging_first_step", "logging_nan_inf_filter", "log_level",
    "log_level_replica", "log_on_each_node", "disable_tqdm", "save_total_limit",
    "save_on_each_node", "dataloader_num_workers", "dataloader_pin_memory",
    "dataloader_persistent_workers", "dataloader_prefetch_factor", "dataloader_multiprocessing_context",
    "local_rank", "ddp_timeout", "ddp_backend", "skip_memory_metrics", "per_device_eval_batch_size",
    "eval_accumulation_steps", "cache_dir", "overwrite_cache", "eval_all_dev_languages", "ddp_find_unused_parameters",
})

# What a command asks to do with its directory, not how the run is configured: never stored, so that a
# replayed record cannot overwrite the run it came from.
ACTION_FIELDS = ("overwrite_output_dir", "resume_from_checkpoint")


def build_config(sections: dict, resolved: dict) -> dict:
    """The run's configuration as stored: JSON values, sections in order, `resolved` last, no action flags."""
    config = json.loads(json.dumps({**sections, "resolved": resolved}, default=jsonable))
    for name, section in config.items():
        if name.endswith("_args") and isinstance(section, dict):
            for field in ACTION_FIELDS:
                section.pop(field, None)
    return config


def comparable(config: dict) -> dict[str, str]:
    """`{setting: canonical JSON value}` of everything that can change results (`--flag` names; values derived
    at run time as `resolved.<name>`)."""
    out = {}
    for section, values in config.items():
        if not isinstance(values, dict):
            out[section] = json.dumps(values, sort_keys=True)
            continue
        for key, value in values.items():
            if key not in RESULT_NEUTRAL_FIELDS:
                out[f"resolved.{key}" if section == "resolved" else f"--{key}"] = json.dumps(value, sort_keys=True)
    return out


def config_differences(stored: dict, current: dict) -> list[str]:
    """One line per result-changing setting that differs: `--flag: old → new` (empty: the same run)."""
    old, new = comparable(stored), comparable(current)
    lines = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            lines.append(f"{key}: {old.get(key, '(not set)')} → {new.get(key, '(not set)')}")
    return lines


def config_digest(config: dict) -> str:
    """A short fingerprint of the result-changing settings (stage markers carry it)."""
    return hashlib.sha256(json.dumps(comparable(config), sort_keys=True).encode()).hexdigest()[:16]


def flatten_run_args(values: dict) -> dict:
    """run_args.json's sections (`model_args`, ..., `training_args`) merged into one flat mapping.

    `resolved` records values derived at run time, not flags, and is left out. A flat mapping is
    returned unchanged.
    """
    sections = [k for k, v in values.items() if k.endswith("_args") and isinstance(v, dict)]
    if not sections:
        return values
    flat = {}
    for key in sections:
        flat.update(values[key])
    flat.update({k: v for k, v in values.items() if k not in sections and k != "resolved"})
    return flat
