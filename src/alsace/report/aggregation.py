"""Mean ± std over runs that differ only in their seed (fine-tuning or distillation run directories).

Runs are compared on their `run_args.json`, flattened to `section.field` keys. Fields that name a run
rather than change its numbers (seed, output_dir, run_name, logging and saving cadence, ...) are
ignored; every other difference is refused, naming the field and the runs. A distillation run's
starting checkpoint is compared through its own `run_args.json` (as `init.*`), so runs distilled from
per-seed fine-tuned checkpoints aggregate, but not runs distilled from differently fine-tuned ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from alsace.errors import UserError
from alsace.run_config import RESULT_NEUTRAL_FIELDS

# Fields (leaf names, in any section) left out of the same-configuration check: those that cannot change a
# run's numbers (one list, shared with the rerun check: alsace.run_config), those that differ from seed to seed
# (the seed; `init_config`, the fingerprint of a per-seed starting checkpoint, compared as `init.*` below),
# and the saving cadence and device, which change no number beyond float rounding.
IGNORED_FIELDS = RESULT_NEUTRAL_FIELDS | {"seed", "data_seed", "init_config", "save_strategy", "save_steps",
                                         "save_only_model", "use_cpu"}
SUMMARY_KEYS = ("average", "transfer_gap", "spread", "teacher_average", "student_average")
MAX_INIT_DEPTH = 3  # distill <- finetune <- (a pretrained model); deeper chains are compared by path


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: missing; pass finished run directories (results.json, run_args.json)") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err.msg}); the run did not finish writing it") from None


def flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    """{'a': {'b': 1}} -> {'a.b': '1'}; leaves as canonical JSON so lists and dicts compare by value."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = json.dumps(value, sort_keys=True)
    return out


def run_config(run_dir, ignore: frozenset[str] = frozenset(), depth: int = 0) -> dict[str, str]:
    """The settings of a run that must match across seeds: flattened run_args minus ignored fields."""
    args = _read_json(Path(run_dir) / "run_args.json")
    config = {k: v for k, v in flatten(args).items()
              if k.rsplit(".", 1)[-1] not in IGNORED_FIELDS | ignore and k not in ignore}
    if "resolved.task_file_sha256" in config:  # a task file: its content counts, not where it lies (a
        config.pop("data_args.task", None)      # distillation reads its checkpoint's copy, one per seed)
    init = args.get("model_args", {}).get("model_name_or_path")
    if init and depth < MAX_INIT_DEPTH and (Path(init) / "run_args.json").is_file():
        # A run's own checkpoint path differs per seed; what it was trained with must not.
        config.pop("model_args.model_name_or_path", None)
        config.update({f"init.{k}": v for k, v in run_config(init, ignore, depth + 1).items()})
    return config


def load_run(run_dir, ignore: frozenset[str] = frozenset()) -> dict:
    """Everything aggregation needs from one run directory."""
    run_dir = Path(run_dir)
    comparison_path = run_dir / "comparison.json"
    args = _read_json(run_dir / "run_args.json")
    init = args.get("model_args", {}).get("model_name_or_path")  # a checkpoint folder, or a Hub name
    init_args = _read_json(Path(init) / "run_args.json") if init and (Path(init) / "run_args.json").is_file() else {}
    return {"dir": str(run_dir), "results": _read_json(run_dir / "results.json"),
            "comparison": _read_json(comparison_path) if comparison_path.is_file() else None,
            "seed": args.get("training_args", {}).get("seed"), "config": run_config(run_dir, ignore),
            # the fine-tuning seed of the checkpoint a distillation run started from (None: not a run folder)
            "init_seed": init_args.get("training_args", {}).get("seed")}


def check_compatible(runs: list[dict], max_listed: int = 4) -> None:
    """Refuse runs of different kinds, tasks, languages, seeds reused, or any differing setting."""
    if len({r["comparison"] is None for r in runs}) > 1:
        kinds = ", ".join(f"{r['dir']} ({'fine-tuning' if r['comparison'] is None else 'distillation'})" for r in runs)
        raise UserError(f"refusing to mix fine-tuning and distillation runs: {kinds}")
    for key in ("task", "split"):
        values = {r["results"][key] for r in runs}
        if len(values) > 1:
            listed = _by_run(runs, lambda r: r["results"][key])
            raise UserError(f"refusing to aggregate runs of different {key}s: {listed}")
    if len({tuple(r["results"]["per_language"]) for r in runs}) > 1:
        raise UserError("refusing to aggregate runs evaluated on different languages: "
                        + _by_run(runs, lambda r: ",".join(r["results"]["per_language"])))
    seeds = [_seed_label(r) for r in runs]  # a distillation run: its checkpoint's seed and its own
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise UserError(f"seed {repeated[0]} appears in several runs ({_by_run(runs, _seed_label)}): "
                        "the same run twice would understate the spread; pass each seed once")
    keys = sorted(set().union(*(r["config"] for r in runs)))
    differing = [k for k in keys if len({r["config"].get(k, "<absent>") for r in runs}) > 1]
    if differing:
        listed = "; ".join(f"{k} ({_by_run(runs, lambda r, k=k: r['config'].get(k, '<absent>'))})"
                           for k in differing[:max_listed])
        more = f"; and {len(differing) - max_listed} more" if len(differing) > max_listed else ""
        raise UserError(f"refusing to aggregate runs whose settings differ: {listed}{more}. "
                        "Aggregate only seeds of one configuration, or pass --ignore_fields "
                        f"{','.join(d.rsplit('.', 1)[-1] for d in differing[:max_listed])} if the difference "
                        "does not change the numbers")


def _seed_label(run: dict) -> str:
    """`seed`, or `fine-tuning seed/distillation seed` for a run distilled from a seeded run's checkpoint."""
    return str(run["seed"]) if run.get("init_seed") is None else f"{run['init_seed']}/{run['seed']}"


def _by_run(runs: list[dict], value) -> str:
    return ", ".join(f"{r['dir']}: {value(r)}" for r in runs)


def mean_std(values: list[float]) -> dict:
    """Mean and sample standard deviation (ddof=1; None for one run) of `values`, plus the values."""
    array = np.array(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else None,
            "values": [float(v) for v in array]}


def aggregate(runs: list[dict]) -> dict:
    """Mean ± std per language and for the summary metrics; before / after / Δ for distillation runs."""
    first = runs[0]["results"]
    langs = list(first["per_language"])
    distill = runs[0]["comparison"] is not None
    out = {"task": first["task"], "split": first["split"], "kind": "distillation" if distill else "fine-tuning",
           "num_runs": len(runs), "seeds": [r["seed"] for r in runs], "run_dirs": [r["dir"] for r in runs]}
    if any(r.get("init_seed") is not None for r in runs):  # distilled from per-seed fine-tuned checkpoints
        out["fine_tuning_seeds"] = [r.get("init_seed") for r in runs]
    if not distill:
        out["per_language"] = {lang: mean_std([r["results"]["per_language"][lang]["accuracy"] for r in runs])
                               for lang in langs}
        out["summary"] = {key: mean_std([r["results"][key] for r in runs])
                          for key in SUMMARY_KEYS if all(r["results"].get(key) is not None for r in runs)}
        return out
    out["per_language"] = {lang: {**_before_after([r["comparison"]["per_language"][lang] for r in runs]),
                                  "roles": _roles([r["comparison"]["per_language"][lang]["role"] for r in runs]),
                                  **_significant([_sig(r, lang) for r in runs])}
                           for lang in langs}
    out["summary"] = {key: {**_before_after([r["comparison"]["summary"][key] for r in runs]),
                            **_significant([_sig(r, key) for r in runs])}
                      for key in SUMMARY_KEYS if all(key in r["comparison"]["summary"] for r in runs)}
    out["health"] = _health(runs, langs)
    return out


def _health(runs: list[dict], langs: list[str]) -> dict:
    """What a narrower gap must be read with: collapse flags, majority shares, entropy, the relative gap
    change, English's change, and how well the teacher scores ranked the languages."""
    comps = [r["comparison"] for r in runs]
    per_lang = {lang: {"majority_share_after": mean_std([c["per_language"][lang]["majority_share_after"]
                                                         for c in comps]),
                       "runs_collapsed": sum(c["per_language"][lang]["collapsed"] for c in comps)}
                for lang in langs}
    gap = [c["summary"]["transfer_gap"] for c in comps if "transfer_gap" in c["summary"]]
    health = {
        "per_language": per_lang,
        "collapsed_languages_per_run": [len(c["collapsed_languages"]) for c in comps],
        "max_majority_share_after": mean_std([max(c["per_language"][lang]["majority_share_after"] for lang in langs)
                                              for c in comps]),
        "mean_entropy_before": mean_std([np.mean([c["per_language"][lang]["entropy_before"] for lang in langs])
                                         for c in comps]),
        "mean_entropy_after": mean_std([np.mean([c["per_language"][lang]["entropy_after"] for lang in langs])
                                        for c in comps]),
    }
    if len(gap) == len(comps) and all(g["before"] for g in gap):
        health["transfer_gap_relative_change"] = mean_std([g["delta"] / g["before"] for g in gap])
    source = comps[0].get("source_language")
    if source in langs:  # the top: a gap that narrows because English fell is not a result
        health["source_language"] = source
        health["source_delta"] = mean_std([c["per_language"][source]["delta"] for c in comps])
    health["skewed_languages_per_run"] = [len(c.get("skewed_languages", [])) for c in comps]
    health["runs_top_fell"] = [[f["name"] for f in c.get("top_fell", [])] for c in comps]
    if all(c.get("calibration") for c in comps):
        health["calibration"] = {key: _before_after([c["calibration"][key] for c in comps])
                                 for key in comps[0]["calibration"]}
    quality = [c.get("selection_quality") for c in comps]
    if all(quality):
        health["selection_spearman"] = mean_std([q["spearman_score_vs_accuracy"] for q in quality])
        if all(q.get("by_method") for q in quality):
            health["selection_spearman_by_method"] = {
                method: mean_std([q["by_method"][method] for q in quality])
                for method in quality[0]["by_method"] if all(method in q["by_method"] for q in quality)}
        if all("pool_accuracy_reference" in q for q in quality):
            health["selection_spearman_pool_accuracy"] = mean_std([q["pool_accuracy_reference"] for q in quality])
    return health


def _before_after(entries: list[dict]) -> dict:
    return {side: mean_std([e[side] for e in entries]) for side in ("before", "after", "delta")}


def _roles(roles: list[str]) -> dict[str, int]:
    return {role: roles.count(role) for role in sorted(set(roles))}


def _sig(run: dict, key: str) -> dict | None:
    sig = run["comparison"].get("significance")
    if not sig:
        return None
    return sig["per_language"].get(key) if key in sig["per_language"] else sig.get(key)


def _significant(stats: list[dict | None]) -> dict:
    """How many runs' own bootstrap CI lay above / below 0 (absent when the runs have no test)."""
    if any(s is None for s in stats):
        return {}
    return {"runs_ci_above_0": sum(s["ci_low"] > 0 for s in stats),
            "runs_ci_below_0": sum(s["ci_high"] < 0 for s in stats)}


def _pm(stats: dict, signed: bool = False) -> str:
    mean = f"{100 * stats['mean']:+.2f}" if signed else f"{100 * stats['mean']:.2f}"
    return mean + (f" ± {100 * stats['std']:.2f}" if stats["std"] is not None else " ± n/a")


def aggregate_markdown(agg: dict) -> str:
    """Tables of mean ± std (in points) over the runs."""
    seeds = "seeds " + ", ".join(str(s) for s in agg["seeds"])
    if agg.get("fine_tuning_seeds") and agg["fine_tuning_seeds"] != agg["seeds"]:  # another distillation seed
        seeds = "seeds (fine-tuning/distillation) " + ", ".join(
            f"{f}/{s}" for f, s in zip(agg["fine_tuning_seeds"], agg["seeds"]))
    lines = [f"# Mean ± std over {agg['num_runs']} runs ({agg['kind']})", "",
             f"Task `{agg['task']}`, split `{agg['split']}`, {seeds}. Accuracy in %, std over runs (ddof=1).", ""]
    if agg["kind"] == "fine-tuning":
        lines += ["| language | accuracy |", "|---|---:|"]
        lines += [f"| {lang} | {_pm(s)} |" for lang, s in agg["per_language"].items()]
        lines += ["", "| metric | value |", "|---|---:|"]
        lines += [f"| {key} | {_pm(s)} |" for key, s in agg["summary"].items()]
        return "\n".join(lines) + "\n"
    has_sig = any("runs_ci_above_0" in r for r in agg["per_language"].values())
    sig_head = (" runs with CI > 0 / < 0 |", "---:|") if has_sig else ("", "")
    lines += ["| language | roles | before | after | Δ |" + sig_head[0], "|---|---|---:|---:|---:|" + sig_head[1]]
    for lang, r in agg["per_language"].items():
        roles = ", ".join(f"{role} {n}/{agg['num_runs']}" for role, n in r["roles"].items())
        lines.append(f"| {lang} | {roles} | {_pm(r['before'])} | {_pm(r['after'])} | {_pm(r['delta'], True)} |"
                     + (f" {r['runs_ci_above_0']} / {r['runs_ci_below_0']} |" if has_sig else ""))
    lines += ["", "| metric | before | after | Δ |" + sig_head[0], "|---|---:|---:|---:|" + sig_head[1]]
    for key, r in agg["summary"].items():
        cells = f" {r['runs_ci_above_0']} / {r['runs_ci_below_0']} |" if "runs_ci_above_0" in r else (
            " |" if has_sig else "")
        lines.append(f"| {key} | {_pm(r['before'])} | {_pm(r['after'])} | {_pm(r['delta'], True)} |" + cells)
    health = agg.get("health")
    if health:
        lines += ["", "Collapse indicators and context (read every gap change with these):", ""]
        flagged = {lang: h["runs_collapsed"] for lang, h in health["per_language"].items() if h["runs_collapsed"]}
        lines.append("- languages flagged as collapsed, per run: "
                     + ", ".join(str(n) for n in health["collapsed_languages_per_run"])
                     + (" (" + ", ".join(f"{lang} in {n}" for lang, n in flagged.items()) + ")" if flagged else ""))
        lines.append(f"- largest majority-class share after, over languages: {_pm(health['max_majority_share_after'])} %")
        lines.append(f"- mean prediction entropy over languages: {health['mean_entropy_before']['mean']:.3f} → "
                     f"{health['mean_entropy_after']['mean']:.3f}")
        if "transfer_gap_relative_change" in health:
            lines.append(f"- transfer gap, relative change: {_pm(health['transfer_gap_relative_change'], True)} %")
        if "source_delta" in health:
            sd = health["source_delta"]
            fell = [i for i, names in enumerate(health["runs_top_fell"]) if names]
            lines.append(f"- {health['source_language']} (the source language), Δ per run: "
                         + ", ".join(f"{100 * v:+.2f}" for v in sd["values"])
                         + (f"; the top fell significantly in run(s) "
                            + ", ".join(f"{i + 1} ({', '.join(health['runs_top_fell'][i])})" for i in fell)
                            if fell else "; the top fell significantly in no run"))
        if any(health["skewed_languages_per_run"]):
            lines.append("- languages skewed (share up >= 20 points with accuracy up; not a collapse), per run: "
                         + ", ".join(str(n) for n in health["skewed_languages_per_run"]))
        if "calibration" in health:
            for key, r in health["calibration"].items():
                lines.append(f"- {key} over languages: {r['before']['mean']:.3f} → {r['after']['mean']:.3f} "
                             f"(Δ per run: " + ", ".join(f"{v:+.3f}" for v in r["delta"]["values"]) + ")")
        if "selection_spearman" in health:
            sp = health["selection_spearman"]
            lines.append(f"- selection quality (Spearman ρ of the deciding score vs accuracy before; reported, never "
                         f"used): " + ", ".join(f"{v:.3f}" for v in sp["values"]) + f" (mean {sp['mean']:.3f})")
            for method, q in health.get("selection_spearman_by_method", {}).items():
                lines.append(f"  - {method}: " + ", ".join(f"{v:.3f}" for v in q["values"]))
            if "selection_spearman_pool_accuracy" in health:
                lines.append("  - reference, the pool's labelled accuracy (not label-free): "
                             + ", ".join(f"{v:.3f}" for v in health["selection_spearman_pool_accuracy"]["values"]))
    return "\n".join(lines) + "\n"
