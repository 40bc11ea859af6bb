"""run_script/ds_zero2_bf16.json: the ZeRO-2 config that `DEEPSPEED_CONFIG` passes as `--deepspeed`.

DeepSpeed itself is an optional GPU install, absent in CI. What can break here is the hand-off from
TrainingArguments: every "auto" must be filled by transformers' own filler, with the values our flags
give and no mismatch, and the fixed choices must stay those of the original recipe.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parents[1] / "run_script" / "ds_zero2_bf16.json"


def _leaves(obj, prefix=""):
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), obj


@pytest.fixture
def filled(tmp_path):
    """The config after transformers' DeepSpeed filler ran with a distillation-like command line.

    Without the package, transformers' `HfTrainerDeepSpeedConfig` derives from `object`; with it, from
    accelerate's `HfDeepSpeedConfig`. The filler's methods are put on that base here, which is the
    class DeepSpeed users get (it needs no DeepSpeed import).
    """
    from accelerate.utils.deepspeed import HfDeepSpeedConfig
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    methods = {k: v for k, v in vars(HfTrainerDeepSpeedConfig).items() if k not in ("__init__", "__dict__")}
    config = type("Filler", (HfDeepSpeedConfig,), methods)(json.loads(CONFIG.read_text("utf-8")))
    config._dtype, config.mismatches = None, []
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, bf16=True, learning_rate=3e-8,
                             weight_decay=5e-4, adam_beta2=0.98, warmup_steps=0.2, max_grad_norm=1.0,
                             per_device_train_batch_size=40, gradient_accumulation_steps=2, report_to="none")
    config.trainer_config_process(args)

    class Model:  # only `config.hidden_size` is read, for the "auto" bucket size
        class config:
            hidden_size = 1024

    config.trainer_config_finalize(args, Model, num_training_steps=100)  # raises on any mismatch
    return config.config


def test_every_auto_is_filled_from_the_training_arguments(filled):
    assert [key for key, value in _leaves(filled) if value == "auto"] == []
    assert filled["optimizer"]["params"] == {"lr": 3e-8, "betas": [0.9, 0.98], "eps": 1e-8, "weight_decay": 5e-4}
    assert filled["scheduler"]["params"] == {"warmup_min_lr": 0, "warmup_max_lr": 3e-8, "warmup_num_steps": 20,
                                             "warmup_type": "log"}  # 0.2 x 100 steps
    assert filled["bf16"]["enabled"] is True
    assert filled["gradient_clipping"] == 1.0
    assert (filled["train_micro_batch_size_per_gpu"], filled["gradient_accumulation_steps"],
            filled["train_batch_size"]) == (40, 2, 80)
    assert filled["zero_optimization"]["reduce_bucket_size"] == 1024 * 1024


def test_recipe_is_zero2_with_cpu_offload_and_warmup_then_constant():
    config = json.loads(CONFIG.read_text("utf-8"))
    zero = config["zero_optimization"]
    assert zero["stage"] == 2
    assert zero["offload_optimizer"] == {"device": "cpu", "pin_memory": True}
    assert zero["overlap_comm"] is True and zero["contiguous_gradients"] is True
    assert config["optimizer"]["type"] == "AdamW"
    # The original's config (reference section 1.4) names WarmupLR without a warmup_type, so DeepSpeed's
    # default "log" ramp applies: lr = max_lr * log(step + 1) / log(warmup_steps), then constant, no decay.
    assert config["scheduler"]["type"] == "WarmupLR" and config["scheduler"]["params"]["warmup_type"] == "log"
    assert config["bf16"]["enabled"] == "auto" and "fp16" not in config


def test_readme_lists_the_schedule_and_weight_decay_deviations_of_the_run_without_deepspeed():
    """Without DeepSpeed the ramp is linear (about 8 % less cumulative lr over the default run) and HF's
    AdamW exempts bias/LayerNorm from weight decay; both must be in the differences table with the switch."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text("utf-8")
    table = readme[readme.index("## Differences from the original code"):readme.index("## Repository layout")]
    warmup = next(line for line in table.splitlines() if line.startswith("| distillation warmup"))
    decay = next(line for line in table.splitlines() if line.startswith("| weight decay"))
    for row in (warmup, decay):
        assert "DEEPSPEED_CONFIG=run_script/ds_zero2_bf16.json" in row, row
    assert "log" in warmup and "linear" in warmup and "8 %" in warmup
    assert "bias" in decay and "LayerNorm" in decay


def test_log_warmup_gives_about_8_percent_more_learning_rate_than_linear_over_the_default_run():
    """The number quoted in the README: 100 epochs x ceil(77 pairs x 500 items / 40) steps, 20 % warmup."""
    import math

    total = 100 * math.ceil(77 * 500 / 40)
    warmup = math.ceil(0.2 * total)
    log_ramp = sum(math.log(t + 1) / math.log(warmup) for t in range(warmup)) + (total - warmup)
    linear_ramp = sum(t / warmup for t in range(warmup)) + (total - warmup)
    assert 1 - linear_ramp / log_ramp == pytest.approx(0.08, abs=0.005)
