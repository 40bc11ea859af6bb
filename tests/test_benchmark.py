"""src/benchmark.py: the FLOP count against a hand computation, and a tiny end-to-end run (no timing checks)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

import benchmark
from alsace.arguments import parse
from alsace.evaluation import predict_logits
from benchmark import BenchmarkArguments

TINY = ["--num_layers", "1", "--vocab_size", "3000", "--hidden_size", "32", "--num_attention_heads", "2",
        "--intermediate_size", "64", "--eval_pool", "12", "--naive_examples", "8", "--eval_batch_size", "4",
        "--train_batch_size", "3", "--distill_pairs", "2", "--matmul_size", "64", "--warmup", "0",
        "--repeats", "1", "--max_seq_length", "64"]


def test_encoder_flops_by_hand():
    config = SimpleNamespace(hidden_size=2, intermediate_size=3, num_hidden_layers=2)
    # per layer: token work (8*4 + 4*2*3) * (3 + 5) = 56 * 8 = 448; attention 4*2*(9 + 25) = 272
    assert benchmark.encoder_flops(config, [3, 5]) == 2 * (448 + 272)
    assert benchmark.prompt_head_flops(config, 4, 3) == 4 * (2 * 4 + 2 * 2 * 3)
    config.vocab_size = 10
    assert benchmark.full_head_flops(config, 7) == 7 * (2 * 4 + 2 * 2 * 10)


def test_batch_lengths_pad_to_the_longest_of_each_batch():
    assert benchmark.batch_lengths([5, 2, 9, 3, 7], 2, sort=True) == [3, 3, 7, 7, 9]
    assert benchmark.batch_lengths([5, 2, 9, 3, 7], 2, sort=False) == [5, 5, 9, 9, 7]


def test_xnli_like_lengths_stay_in_range():
    lengths = benchmark.xnli_like_lengths(500, np.random.default_rng(0), 120)
    assert lengths.min() >= benchmark.TEMPLATE_TOKENS + 4 and lengths.max() <= 120
    assert np.median(lengths) < lengths.max()  # a spread, not a constant


def test_tiny_benchmark_run_writes_the_figures_and_methods_agree(tmp_path):
    report = benchmark.main(TINY + ["--output_dir", str(tmp_path)])
    saved = json.loads((tmp_path / "benchmark.json").read_text())
    for key in ("eval_speedup", "train_speedup", "distill_stacked_speedup", "mfu"):
        assert saved[key] > 0 and saved[key] == report[key]
    # The compared methods compute the same numbers (fp32), so the ratios compare like with like.
    assert report["eval"]["max_abs_logit_diff"] < 1e-4
    assert report["train"]["max_abs_loss_diff"] < 1e-4
    assert report["distill"]["max_abs_loss_diff"] < 1e-5
    assert "| evaluation throughput" in (tmp_path / "benchmark.md").read_text()


def test_memory_probe_sees_the_full_vocabulary_logits():
    (args,) = parse((BenchmarkArguments,), TINY)
    model = benchmark.build_model(args)
    pool, head, collator = benchmark._eval_inputs(args)
    bs = args.eval_batch_size
    largest_logits_mib = max(len(chunk) * max(len(f["input_ids"]) for f in chunk) * args.vocab_size * 4
                             for chunk in (head[s : s + bs] for s in range(0, len(head), bs))) / 2**20
    naive = benchmark.peak_memory_above(lambda: benchmark.naive_logits(model, head, collator, bs))
    ours = benchmark.peak_memory_above(lambda: predict_logits(model, head, collator, bs, "cpu"))
    assert naive["peak_above_model_mib"] >= largest_logits_mib  # the (B, L, V) logits of one batch
    assert ours["peak_above_model_mib"] < naive["peak_above_model_mib"]
