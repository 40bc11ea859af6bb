"""Speed benchmark: what computing only what the method needs buys, measured in one run, one machine.

    python src/benchmark.py --output_dir outputs/benchmark        (or: bash run_script/benchmark.sh)

On an XLM-R-base-shaped masked LM built from its config (vocabulary 250,002, hidden 768, random
weights, nothing downloaded) and synthetic inputs with XNLI-like lengths, it compares:
1. evaluation: ours (`alsace.evaluation.predict_logits`: length-sorted batches, `inference_mode`, LM
   head at the mask on the label rows only) against a naive baseline (stock masked-LM forward with
   `no_grad`, batches in file order, then gather at the mask): examples/s and peak memory;
2. a fine-tuning step (forward + backward) with the faithful loss: ours (`alsace.losses.supervised_loss`,
   full-vocabulary cross-entropy at the mask only) against the stock masked-LM loss (labels -100
   except at the mask) on the same batches; the two losses are equal, the benchmark checks it;
3. a distillation step: the stacked pair batch (`alsace.losses.pair_loss`, one forward of 2B)
   against two passes of B;
4. model FLOP utilisation of our evaluation: FLOPs counted from the config and the token counts,
   divided by the time, divided by the measured rate of a large fp32 matmul in the same run.

Timing: `time.perf_counter` around whole passes; one untimed pass or small-batch call of each method
first, then `--repeats` rounds in which every method runs once (interleaved, so that load from other
processes on a shared machine hits all of them alike); medians are reported.

Peak memory (`tracemalloc` does not see torch, and a process's peak RSS only grows): the first
evaluation pass of each method, right after the model is built and before anything else ran, ours
first: return freed heap pages to the OS (`malloc_trim`, so re-used pages count again), reset the
kernel's peak-RSS mark (`/proc/self/clear_refs`), run one full pass, read the peak (`VmHWM`). The
figure is the peak above the loaded model (the working memory of evaluation); the absolute peak is
reported too. Writes benchmark.json and benchmark.md.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import platform
import resource
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from alsace.arguments import parse
from alsace.evaluation import predict_logits
from alsace.features import Collator
from alsace.files import write_json, write_text
from alsace.logs import configure_logging
from alsace.losses import consistency_loss, pair_loss, supervised_loss
from alsace.pairs import PairCollator
from alsace.scoring import class_logits

logger = logging.getLogger("alsace.benchmark")
TARGETS = {"eval_speedup": 8.0, "eval_memory_ratio": 10.0, "train_speedup": 2.5, "mfu": 0.6}
PAD, BOS, EOS, PERIOD = 1, 0, 2, 5  # XLM-R's special ids; PERIOD stands for the "." after the mask
TEMPLATE_TOKENS = 26  # XNLI template 2 with six 歌 placeholders, <s>, </s> and the mask, in XLM-R pieces


@dataclass
class BenchmarkArguments:
    output_dir: str = field(default="outputs/benchmark", metadata={"help": "Where benchmark.json/.md go."})
    num_layers: int = field(default=12, metadata={"help": "Encoder layers (XLM-R base: 12)."})
    vocab_size: int = field(default=250002, metadata={"help": "Vocabulary size (XLM-R: 250,002)."})
    hidden_size: int = field(default=768, metadata={"help": "Hidden size (base: 768)."})
    num_attention_heads: int = field(default=12, metadata={"help": "Attention heads (base: 12)."})
    intermediate_size: int = field(default=3072, metadata={"help": "Feed-forward size (base: 3072)."})
    eval_pool: int = field(default=128, metadata={"help": "Examples our evaluation scores per pass (length "
                                                          "sorting needs a pool, as all languages give)."})
    naive_examples: int = field(default=32, metadata={"help": "The first N of the pool, scored per pass by "
                                                              "the naive baseline (file order)."})
    eval_batch_size: int = field(default=16, metadata={"help": "Evaluation batch size, both methods."})
    train_batch_size: int = field(default=20, metadata={"help": "Fine-tuning batch size (the original "
                                                                 "preset's 20)."})
    distill_pairs: int = field(default=8, metadata={"help": "Pairs per distillation batch."})
    train_batches: int = field(default=1, metadata={"help": "Batches per timed training pass."})
    max_seq_length: int = field(default=256, metadata={"help": "Longest synthetic input."})
    warmup: int = field(default=1, metadata={"help": "Untimed warm-up calls per training method (a small "
                                                      "batch); evaluation warms up in its memory pass."})
    repeats: int = field(default=3, metadata={"help": "Timed passes per method (the median is reported)."})
    matmul_size: int = field(default=4096, metadata={"help": "n of the n x n fp32 matmul giving the peak."})
    threads: int | None = field(default=None, metadata={"help": "torch threads (default: torch's choice)."})
    seed: int = field(default=0, metadata={"help": "Seed of the weights and the synthetic data."})

    def __post_init__(self):
        from alsace.errors import UserError

        if self.repeats < 1 or self.warmup < 0:
            raise UserError("--repeats must be >= 1 and --warmup >= 0")
        if self.max_seq_length <= TEMPLATE_TOKENS + 4:
            raise UserError(f"--max_seq_length must exceed {TEMPLATE_TOKENS + 4} (the template alone)")


# --------------------------------------------------------------------------------------------------
# Model and synthetic data
# --------------------------------------------------------------------------------------------------


def build_model(args: BenchmarkArguments):
    """A randomly initialised XLM-R-shaped masked LM (tied input/output embeddings, as XLM-R), no dropout."""
    from transformers import AutoModelForMaskedLM, XLMRobertaConfig

    torch.manual_seed(args.seed)
    config = XLMRobertaConfig(vocab_size=args.vocab_size, hidden_size=args.hidden_size,
                              num_hidden_layers=args.num_layers, num_attention_heads=args.num_attention_heads,
                              intermediate_size=args.intermediate_size, max_position_embeddings=args.max_seq_length + 2,
                              pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
                              # No dropout, so that compared methods give equal losses (checked); it
                              # would add the same elementwise work to both sides.
                              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return AutoModelForMaskedLM.from_config(config).eval()


def xnli_like_lengths(n: int, rng: np.random.Generator, max_len: int) -> np.ndarray:
    """Token counts of prompted XNLI inputs, pooled over languages (synthetic, roughly XNLI's spread).

    premise ~ LogNormal(median 24 tokens, sigma 0.5), hypothesis ~ LogNormal(median 11, sigma 0.4),
    both scaled by a per-example language factor ~ U(0.85, 1.35) (XLM-R pieces per English piece
    differ by language), plus the template; clipped to `max_len`.
    """
    factor = rng.uniform(0.85, 1.35, n)
    premise = rng.lognormal(np.log(24), 0.5, n) * factor
    hypothesis = rng.lognormal(np.log(11), 0.4, n) * factor
    return np.clip(np.round(TEMPLATE_TOKENS + premise + hypothesis), TEMPLATE_TOKENS + 4, max_len).astype(int)


def synthetic_features(lengths, rng: np.random.Generator, vocab_size: int, label_ids: list[int]) -> list[dict]:
    """Featurizer-shaped inputs: <s> text <mask> . </s>, the mask 3 tokens before the end."""
    mask_id = vocab_size - 1  # XLM-R's <mask> is the last id
    features = []
    for n in lengths:
        body = rng.integers(PERIOD + 1, vocab_size - 1, n - 4).tolist()
        features.append({"input_ids": [BOS, *body, mask_id, PERIOD, EOS], "mask_pos": int(n) - 3,
                         "label_token_ids": list(label_ids), "labels": int(rng.integers(len(label_ids)))})
    return features


def length_stats(lengths) -> dict:
    lengths = np.asarray(lengths)
    return {"mean": float(lengths.mean()), "median": float(np.median(lengths)),
            "p90": float(np.percentile(lengths, 90)), "max": int(lengths.max()), "min": int(lengths.min())}


# --------------------------------------------------------------------------------------------------
# The methods compared
# --------------------------------------------------------------------------------------------------


def naive_logits(model, features: list[dict], collator: Collator, batch_size: int) -> np.ndarray:
    """The stock way: batches in file order, full masked-LM forward, then gather at the mask."""
    out = []
    with torch.no_grad():
        for start in range(0, len(features), batch_size):
            batch = collator([{k: v for k, v in f.items() if k != "labels"}
                              for f in features[start : start + batch_size]])
            vocab = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, L, V)
            at_mask = vocab[torch.arange(vocab.shape[0]), batch["mask_pos"]]  # (B, V)
            out.append(at_mask.gather(1, batch["label_token_ids"]).numpy())  # (B, C)
    return np.concatenate(out)


def stock_mlm_loss(model, batch: dict) -> torch.Tensor:
    """The stock masked-LM loss with the gold label word at the mask and every other position ignored."""
    gold = batch["label_token_ids"].gather(1, batch["labels"][:, None]).squeeze(1)  # (B,)
    mlm_labels = torch.full_like(batch["input_ids"], -100)
    mlm_labels[torch.arange(gold.shape[0]), batch["mask_pos"]] = gold
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=mlm_labels).loss


def two_pass_pair_loss(model, batch_a: dict, batch_b: dict) -> torch.Tensor:
    """Distillation the slow way: one forward per side."""
    return consistency_loss(class_logits(model, batch_a), class_logits(model, batch_b))


def backward_step(model, loss_fn):
    """Forward + backward of one loss; gradients cleared so passes do not accumulate."""
    model.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    return float(loss.detach())


# --------------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------------


def interleaved_times(fns: dict, repeats: int, warmup: int = 1, warmup_fns: dict | None = None) -> dict:
    """Seconds per call of each function: `warmup` untimed calls of each (of `warmup_fns[name]` when
    given, e.g. one batch instead of a whole pass), then `repeats` rounds of one call of each."""
    warmup_fns = warmup_fns or {}
    for _ in range(warmup):
        for name, fn in fns.items():
            warmup_fns.get(name, fn)()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def matmul_runner(n: int):
    """A function running one n x n fp32 matmul; its FLOPs are 2 n^3."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return lambda: torch.mm(a, b)


def encoder_flops(config, lengths) -> float:
    """Forward FLOPs of the encoder over sequences of the given token counts (2 FLOPs per multiply-add).

    Per layer and token: Q, K, V, O projections 4 * 2h^2, feed-forward 2 * 2hi; per layer and
    sequence of n tokens: attention scores and weighted sum 2 * 2n^2h. Embedding lookups, LayerNorm,
    softmax, biases and activations are left out (not matmul work).
    """
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    lengths = np.asarray(lengths, dtype=np.float64)
    return float(layers * ((8 * h * h + 4 * h * i) * lengths.sum() + 4 * h * (lengths ** 2).sum()))


def full_head_flops(config, positions: int) -> float:
    """The stock head: dense transform and the whole vocabulary, at every position."""
    h = config.hidden_size
    return float(positions * (2 * h * h + 2 * h * config.vocab_size))


def prompt_head_flops(config, num_examples: int, num_classes: int) -> float:
    """Our head: dense transform h x h and the label rows (h x C), at one position per example."""
    h = config.hidden_size
    return float(num_examples * (2 * h * h + 2 * h * num_classes))


def batch_lengths(lengths, batch_size: int, sort: bool) -> list[int]:
    """Padded length of every sequence as computed: each batch pads to its longest member.

    `sort=True`: batches of length-sorted examples (ours); `sort=False`: batches in file order.
    """
    ordered = sorted(lengths) if sort else list(lengths)
    out = []
    for start in range(0, len(ordered), batch_size):
        chunk = ordered[start : start + batch_size]
        out += [max(chunk)] * len(chunk)
    return out


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _release_and_reset_peak() -> str:
    """Return freed heap pages to the OS and reset the peak-RSS mark; returns the method used."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # Linux >= 4.0: VmHWM := current RSS
        return "VmHWM after clear_refs"
    except OSError:
        return "ru_maxrss delta (peak mark not resettable: a lower bound)"


def peak_memory_above(run) -> dict:
    """Peak RSS while `run()` executes, above the RSS just before it (MiB)."""
    how = _release_and_reset_peak()
    before_kib = _status_kib("VmRSS")
    before_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run()
    if how.startswith("VmHWM"):
        peak_kib = _status_kib("VmHWM")
    else:
        peak_kib = before_kib + resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_max
    return {"peak_above_model_mib": (peak_kib - before_kib) / 1024, "peak_rss_mib": peak_kib / 1024,
            "model_rss_mib": before_kib / 1024, "method": how}


# --------------------------------------------------------------------------------------------------
# The four sections
# --------------------------------------------------------------------------------------------------


def _eval_inputs(args: BenchmarkArguments):
    """The evaluation pool (ours scores all of it) and the naive baseline's share: its first rows."""
    rng = np.random.default_rng(args.seed)
    label_ids = rng.choice(np.arange(PERIOD + 1, args.vocab_size - 1), 3, replace=False).tolist()
    lengths = xnli_like_lengths(args.eval_pool, rng, args.max_seq_length)
    pool = synthetic_features(lengths, rng, args.vocab_size, label_ids)
    return pool, pool[: args.naive_examples], Collator(PAD)


def bench_eval(model, args: BenchmarkArguments) -> dict:
    """Sections 1 and 4: evaluation throughput of ours vs naive, and our FLOP utilisation.

    Ours scores the whole pool, because length sorting needs one (a real evaluation pools every
    language: 15 x 5,010 XNLI rows); the naive baseline, whose cost per example does not depend on
    the pool (file order), scores its first `naive_examples` rows. Throughput is per example.
    """
    pool, head, collator = _eval_inputs(args)
    bs = args.eval_batch_size
    results = {}
    fns = {
        "peak_matmul": matmul_runner(args.matmul_size),
        "ours": lambda: results.__setitem__("ours", predict_logits(model, pool, collator, bs, "cpu")),
        "naive": lambda: results.__setitem__("naive", naive_logits(model, head, collator, bs)),
    }
    # The first pass of each method, right after the model is built, is its warm-up and is where peak
    # memory is measured: ours first, so one-time buffers (thread pools, BLAS workspaces) are charged
    # to ours and may be reused by the naive pass, which errs against our side of the ratio.
    memory = {"ours": peak_memory_above(lambda: predict_logits(model, pool, collator, bs, "cpu")),
              "naive": peak_memory_above(lambda: naive_logits(model, head, collator, bs))}
    times = interleaved_times(fns, args.repeats, warmup=0)
    config = model.config
    lengths = [len(f["input_ids"]) for f in pool]
    ours_lengths = batch_lengths(lengths, bs, sort=True)
    naive_lengths = batch_lengths(lengths[: len(head)], bs, sort=False)
    useful = encoder_flops(config, lengths) + prompt_head_flops(config, len(pool), 3)
    executed = encoder_flops(config, ours_lengths) + prompt_head_flops(config, len(pool), 3)
    naive_executed = encoder_flops(config, naive_lengths) + full_head_flops(config, sum(naive_lengths))
    peak_rates = [2 * args.matmul_size ** 3 / t for t in times["peak_matmul"]]  # FLOP/s
    # Utilisation per round (our pass and the matmul ran back to back), then the median. `mfu` counts
    # what was computed (padded positions too: a hardware rate); `mfu_useful` real tokens only (padding
    # counts as waste; with a benchmark-sized pool the sorted batches still pad, a full evaluation
    # pool of all languages hardly does).
    mfus = [executed / t / p for t, p in zip(times["ours"], peak_rates)]
    ours_rate = len(pool) / statistics.median(times["ours"])
    naive_rate = len(head) / statistics.median(times["naive"])
    return {
        "ours_examples": len(pool), "naive_examples": len(head), "batch_size": bs, "memory": memory,
        "eval_memory_ratio": memory["naive"]["peak_above_model_mib"] / max(memory["ours"]["peak_above_model_mib"], 1e-3),
        "lengths": length_stats(lengths), "naive_lengths": length_stats(lengths[: len(head)]),
        "tokens_per_example": {"real": float(np.mean(lengths)), "ours_computed": float(np.mean(ours_lengths)),
                               "naive_computed": float(np.mean(naive_lengths)),
                               "naive_real": float(np.mean(lengths[: len(head)]))},
        "seconds": times,
        "ours_examples_per_s": ours_rate, "naive_examples_per_s": naive_rate,
        "eval_speedup": ours_rate / naive_rate,
        "max_abs_logit_diff": float(np.abs(results["ours"][: len(head)] - results["naive"]).max()),
        "useful_gflop": useful / 1e9, "executed_gflop": executed / 1e9,
        "gflop_per_example": {"ours": executed / len(pool) / 1e9, "naive": naive_executed / len(head) / 1e9},
        # The speedup if both ran at the same FLOP rate.
        "flop_ratio": (naive_executed / len(head)) / (executed / len(pool)),
        "achieved_gflops": executed / statistics.median(times["ours"]) / 1e9,
        "peak_matmul_gflops": statistics.median(peak_rates) / 1e9,
        "mfu": statistics.median(mfus), "mfu_per_round": mfus,
        "mfu_useful": statistics.median([useful / t / p for t, p in zip(times["ours"], peak_rates)]),
    }


def _train_features(args: BenchmarkArguments, n: int, seed_offset: int):
    rng = np.random.default_rng(args.seed + seed_offset)
    label_ids = rng.choice(np.arange(PERIOD + 1, args.vocab_size - 1), 3, replace=False).tolist()
    features = synthetic_features(xnli_like_lengths(n, rng, args.max_seq_length), rng, args.vocab_size, label_ids)
    return features, label_ids, rng


def bench_train(model, args: BenchmarkArguments) -> dict:
    """Section 2: forward + backward of the full-vocabulary loss, ours (at the mask) vs stock."""
    collator = Collator(PAD)
    bs = args.train_batch_size
    features, _, _ = _train_features(args, bs * args.train_batches, 1)
    batches = [collator(features[s : s + bs]) for s in range(0, len(features), bs)]
    model.train()
    losses = {"ours": [], "stock": []}
    fns = {
        "ours": lambda: losses["ours"].append([backward_step(model, lambda b=b: supervised_loss(
            model, b, "full_vocab")[0]) for b in batches]),
        "stock": lambda: losses["stock"].append([backward_step(model, lambda b=b: stock_mlm_loss(model, b))
                                                 for b in batches]),
    }
    small = collator(features[:2])  # warm-up: gradients allocated, kernels initialised, at little cost
    warm = {"ours": lambda: backward_step(model, lambda: supervised_loss(model, small, "full_vocab")[0]),
            "stock": lambda: backward_step(model, lambda: stock_mlm_loss(model, small))}
    times = interleaved_times(fns, args.repeats, args.warmup, warm)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-12)  # cost of the update, same for both methods
    backward_step(model, lambda: supervised_loss(model, batches[0], "full_vocab")[0])
    opt_times = interleaved_times({"adamw": optimizer.step}, args.repeats)["adamw"]
    model.zero_grad(set_to_none=True)
    del optimizer
    model.eval()
    per_step = {k: statistics.median(v) / len(batches) for k, v in times.items()}
    adamw = statistics.median(opt_times)
    # Analytic work, backward = 2 x forward: the encoder on the padded batch, plus the vocabulary
    # projection at the mask (ours) or at every position (stock).
    padded = [b["input_ids"].shape[1] for b in batches for _ in range(b["input_ids"].shape[0])]
    encoder = encoder_flops(model.config, padded)
    ours_work = 3 * (encoder + full_head_flops(model.config, len(padded)))
    stock_work = 3 * (encoder + full_head_flops(model.config, sum(padded)))
    return {
        "batch_size": bs, "batches_per_pass": len(batches), "seconds": times,
        "flop_ratio": stock_work / ours_work,
        "ours_steps_per_s": 1 / per_step["ours"], "stock_steps_per_s": 1 / per_step["stock"],
        "train_speedup": per_step["stock"] / per_step["ours"],
        "adamw_step_seconds": adamw,
        "train_speedup_with_adamw": (per_step["stock"] + adamw) / (per_step["ours"] + adamw),
        "max_abs_loss_diff": float(np.abs(np.array(losses["ours"][0]) - np.array(losses["stock"][0])).max()),
    }


def bench_distill(model, args: BenchmarkArguments) -> dict:
    """Section 3: distillation forward + backward, one stacked (2B) batch vs two passes of B."""
    collator, pair_collator = Collator(PAD), PairCollator(PAD)
    bs = args.distill_pairs
    a_side, label_ids, rng = _train_features(args, bs * args.train_batches, 2)
    # The parallel side: the same item in another language, so a somewhat different length.
    b_lengths = [int(np.clip(TEMPLATE_TOKENS + (len(f["input_ids"]) - TEMPLATE_TOKENS) * rng.uniform(0.8, 1.25),
                             TEMPLATE_TOKENS + 4, args.max_seq_length)) for f in a_side]
    b_side = synthetic_features(b_lengths, rng, args.vocab_size, label_ids)
    strip = lambda f: {k: v for k, v in f.items() if k != "labels"}  # noqa: E731
    pairs = [{"a": strip(a), "b": strip(b)} for a, b in zip(a_side, b_side)]
    chunks = [pairs[s : s + bs] for s in range(0, len(pairs), bs)]
    stacked = [pair_collator(c) for c in chunks]
    two = [(collator([p["a"] for p in c]), collator([p["b"] for p in c])) for c in chunks]
    model.train()
    losses = {"stacked": [], "two_passes": []}
    fns = {
        "stacked": lambda: losses["stacked"].append([backward_step(model, lambda b=b: pair_loss(model, b)[0])
                                                     for b in stacked]),
        "two_passes": lambda: losses["two_passes"].append([backward_step(model, lambda a=a, b=b: two_pass_pair_loss(
            model, a, b)) for a, b in two]),
    }
    warm = {"stacked": lambda: backward_step(model, lambda: pair_loss(model, pair_collator(pairs[:2]))[0]),
            "two_passes": lambda: backward_step(model, lambda: two_pass_pair_loss(
                model, collator([p["a"] for p in pairs[:2]]), collator([p["b"] for p in pairs[:2]])))}
    times = interleaved_times(fns, args.repeats, args.warmup, warm)
    model.zero_grad(set_to_none=True)
    model.eval()
    return {
        "pairs_per_batch": bs, "batches_per_pass": len(chunks), "seconds": times,
        "stacked_steps_per_s": len(chunks) / statistics.median(times["stacked"]),
        "two_passes_steps_per_s": len(chunks) / statistics.median(times["two_passes"]),
        "distill_stacked_speedup": statistics.median(times["two_passes"]) / statistics.median(times["stacked"]),
        "max_abs_loss_diff": float(np.abs(np.array(losses["stacked"][0]) - np.array(losses["two_passes"][0])).max()),
    }


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "platform": platform.platform(), "load_average_start": os.getloadavg()}


def summary_table(report: dict) -> str:
    """Markdown table of the headline figures, with the targets."""
    ev, tr, di = report["eval"], report["train"], report["distill"]
    tok = ev["tokens_per_example"]
    mem = ev["memory"]
    rows = [
        ("evaluation throughput (examples/s)", f"{ev['ours_examples_per_s']:.2f}",
         f"{ev['naive_examples_per_s']:.2f}", f"{ev['eval_speedup']:.1f}x", "eval_speedup"),
        ("  tokens per example through the encoder (real / padded)",
         f"{tok['real']:.0f} / {tok['ours_computed']:.0f}", f"{tok['naive_real']:.0f} / {tok['naive_computed']:.0f}",
         "", None),
        ("  work per example (analytic GFLOP)", f"{ev['gflop_per_example']['ours']:.3g}",
         f"{ev['gflop_per_example']['naive']:.3g}", f"{ev['flop_ratio']:.1f}x", None),
    ]
    rows.append(("evaluation peak memory above the model (MiB)", f"{mem['ours']['peak_above_model_mib']:.0f}",
                 f"{mem['naive']['peak_above_model_mib']:.0f}", f"{report['eval_memory_ratio']:.1f}x less",
                 "eval_memory_ratio"))
    rows += [
        ("fine-tuning step, fwd+bwd (steps/s)", f"{tr['ours_steps_per_s']:.3f}", f"{tr['stock_steps_per_s']:.3f}",
         f"{tr['train_speedup']:.1f}x", "train_speedup"),
        ("  work per step (analytic)", "", "", f"{tr['flop_ratio']:.1f}x", None),
        ("  same incl. AdamW update (steps/s)", f"{1 / (1 / tr['ours_steps_per_s'] + tr['adamw_step_seconds']):.3f}",
         f"{1 / (1 / tr['stock_steps_per_s'] + tr['adamw_step_seconds']):.3f}",
         f"{tr['train_speedup_with_adamw']:.1f}x", None),
        ("distillation step, fwd+bwd (steps/s)", f"{di['stacked_steps_per_s']:.3f}",
         f"{di['two_passes_steps_per_s']:.3f}", f"{di['distill_stacked_speedup']:.2f}x", None),
        ("evaluation FLOP utilisation (of fp32 matmul peak)", f"{ev['mfu']:.2f}",
         f"peak {ev['peak_matmul_gflops']:.0f} GFLOP/s", f"{ev['achieved_gflops']:.0f} GFLOP/s", "mfu"),
        ("  same, real tokens only (padding as waste)", f"{ev['mfu_useful']:.2f}", "", "", None),
    ]
    lines = ["| measure | ours | baseline | ratio | target |", "|---|---|---|---|---|"]
    for name, ours, base, ratio, key in rows:
        target = "" if key is None else f">= {TARGETS[key]} ({'met' if report[key] >= TARGETS[key] else 'MISSED'})"
        lines.append(f"| {name} | {ours} | {base} | {ratio} | {target} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    (args,) = parse((BenchmarkArguments,), argv, __doc__)
    configure_logging()
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {"args": dataclasses.asdict(args), "machine": machine(), "targets": TARGETS}
    logger.info("machine: %s", report["machine"])
    start = time.perf_counter()
    model = build_model(args)
    logger.info("model: %d layers, %.0fM parameters", args.num_layers,
                sum(p.numel() for p in model.parameters()) / 1e6)
    report["eval"] = bench_eval(model, args)
    logger.info("evaluation: %.1fx", report["eval"]["eval_speedup"])
    report["train"] = bench_train(model, args)
    logger.info("fine-tuning step: %.1fx", report["train"]["train_speedup"])
    report["distill"] = bench_distill(model, args)
    logger.info("distillation step: %.2fx", report["distill"]["distill_stacked_speedup"])
    for key in ("eval_speedup", "eval_memory_ratio", "mfu"):
        report[key] = report["eval"][key]
    report["train_speedup"] = report["train"]["train_speedup"]
    report["distill_stacked_speedup"] = report["distill"]["distill_stacked_speedup"]
    report["machine"]["load_average_end"] = os.getloadavg()
    report["wall_seconds"] = time.perf_counter() - start
    table = summary_table(report)
    write_json(os.path.join(args.output_dir, "benchmark.json"), report)
    write_text(os.path.join(args.output_dir, "benchmark.md"), table + "\n")
    m = report["machine"]
    print(f"\n{m['cpu']}: {m['cores_available']} cores, torch threads {m['torch_threads']}, load average "
          f"{m['load_average_start'][0]:.1f} -> {m['load_average_end'][0]:.1f}; {args.num_layers} layers, "
          f"vocab {args.vocab_size}, hidden {args.hidden_size}; {report['wall_seconds']:.0f} s\n{table}\n")
    return report


if __name__ == "__main__":
    from alsace.run_dir import run_cli

    run_cli(main)
