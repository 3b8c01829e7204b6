"""The performance benchmark: the reference recipe against the project's path, interleaved and repeated.

    python -m benchmarks.run                  # the full run (~10 minutes on 2 quiet cores)
    python -m benchmarks.run --quick --out /tmp/bench.json   # seconds: what tests/test_benchmark.py runs

Every measurement runs in a fresh process forked from this one (fresh model, optimizer and peak-memory
counter, no import cost), in the order reference, fast, reference, fast, ... so that a machine shared
with other work slows both paths alike and the ratios stay fair.
"""

from __future__ import annotations

import os

# Before transformers or tokenizers load: offline, no tracking, and no tokenizer threads left behind for fork.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import datetime
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.child import in_child
from benchmarks.reference import (
    BATCH_SIZE,
    MAX_LENGTH,
    SIZES,
    VARIANTS,
    VOCAB_SIZE,
    benchmark_data,
    inference_latency,
    memory_latency,
    train_run,
)
from benchmarks.time_to_quality import format_tables, side_by_side, step_flops
from helpers.config import ROOT
from helpers.provenance import code_version, machine

DEFAULT_OUT = ROOT / "benchmarks" / "results.json"
# What the benchmark itself writes: a tree changed only there is still the commit's code (code_version).
OUTPUTS = ("benchmarks/results.json",)
# Speed-up targets of the fast path over the reference (pairs/s), and of its padding efficiency.
TARGETS = {"default": 10.0, "bert-base": 3.0}
TARGET_PADDING_EFFICIENCY = 0.9
# The optimisations, one added at a time, measured on the ablation size.
STAGES = [
    ("reference", "reference recipe"),
    ("dynamic_padding", "(i) dynamic padding"),
    ("dynamic_padding_bucketing", "(ii) + length bucketing"),
    ("fast", "(iii) + MLM head on masked positions only (= the fast path)"),
]
ABLATION_EXTRAS = ["fast_eager_attention", "fast_compiled"]
COMPILE_WARMUP_STEPS = 3  # the first shapes compile, the next ones recompile once with dynamic shapes
PAD_MULTIPLE_NOTE = (
    "pad_to_multiple_of=8 is not measured: it only helps tensor cores under GPU mixed precision "
    "(helpers.train sets it when mixed precision is on); on CPU in fp32 it only adds padding."
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the reference recipe against the project's training path.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the JSON results go")
    parser.add_argument(
        "--sizes",
        default=None,
        help=f"comma-separated model sizes from {', '.join(SIZES)} (default: default,bert-base; tiny with --quick)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed optimizer steps per run, for every size (default: one epoch of pairs for default, 3 for bert-base)",
    )
    parser.add_argument("--repeats", type=int, default=None, help="runs of each path per size (default 3)")
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed steps before timing (default 2; 1 for bert-base)"
    )
    parser.add_argument("--calls", type=int, default=None, help="timed inference calls per method (default 50)")
    parser.add_argument(
        "--max-length", type=int, default=None, help=f"tokens per pair (default {MAX_LENGTH}; 128 with --quick)"
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also measure the fast path under torch.compile (default: on, off with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny model, 2 steps, 1 repeat: checks the machinery")
    parser.add_argument(
        "--ttq-repeats",
        type=int,
        default=None,
        help="time to quality: runs of the previous and today's default, interleaved (default 2; 0 "
        "leaves it out; with --quick, 1 run of one epoch on 40 paragraphs)",
    )
    args = parser.parse_args(argv)
    sizes = (args.sizes or ("tiny" if args.quick else "default,bert-base")).split(",")
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size {unknown[0]!r}: choose from {', '.join(SIZES)}.")
    args.sizes = sizes
    if args.ttq_repeats is None:
        args.ttq_repeats = 1 if args.quick else 2
    elif args.ttq_repeats < 0:
        parser.error(f"--ttq-repeats={args.ttq_repeats} is too small: use 0 (leave it out) or more.")
    for name in ("steps", "repeats", "warmup", "calls", "max_length"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "warmup" else 1):
            parser.error(f"--{name.replace('_', '-')}={value} is too small: use a positive whole number.")
    if args.max_length is None:
        args.max_length = 128 if args.quick else MAX_LENGTH
    if args.compile is None:
        args.compile = not args.quick
    return args


def plan(args: argparse.Namespace, n_pairs: int) -> dict[str, dict[str, int]]:
    """Steps, warm-up steps and repeats per size."""
    epoch_steps = math.ceil(n_pairs / BATCH_SIZE)
    defaults = {
        "tiny": dict(steps=2, warmup=1, repeats=1),
        "default": dict(steps=epoch_steps, warmup=2, repeats=3),
        "bert-base": dict(steps=3, warmup=1, repeats=3),
    }
    if args.quick:
        defaults = {size: dict(steps=2, warmup=1, repeats=1) for size in SIZES}
    out = {}
    for size in args.sizes:
        chosen = dict(defaults[size])
        for key in ("steps", "warmup", "repeats"):
            if getattr(args, key) is not None:
                chosen[key] = getattr(args, key)
        out[size] = chosen
    return out


def spread(values: list[float]) -> dict[str, Any]:
    """Median, min, max and every value."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def summarise_path(runs: list[dict]) -> dict[str, Any]:
    """One path on one size: throughput spread over repeats, and totals for padding efficiency."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return {"status": "failed", "error": runs[0]["error"], "traceback": runs[0].get("traceback", "")}
    variant = VARIANTS[good[0]["variant"]]
    real, positions = sum(r["real_tokens"] for r in good), sum(r["positions"] for r in good)
    return {
        "status": "measured" if len(good) == len(runs) else f"{len(runs) - len(good)} of {len(runs)} runs failed",
        "description": variant.description,
        "pairs_per_s": spread([r["pairs_per_s"] for r in good]),
        "tokens_per_s": spread([r["tokens_per_s"] for r in good]),
        "seconds_per_step": spread([r["seconds"] / r["steps"] for r in good]),
        "padding_efficiency": real / positions,
        "pairs": sum(r["pairs"] for r in good),
        "real_tokens": real,
        "positions": positions,
        "loss_positions": sum(r["loss_positions"] for r in good),
        "steps": good[0]["steps"],
        "warmup_steps": good[0]["warmup_steps"],
        "repeats": len(good),
        "warmup_seconds": spread([r["warmup_seconds"] for r in good]),
        "peak_rss_mb": spread([r["peak_rss_mb"] for r in good]),
        "rss_before_mb": statistics.median(r["rss_before_mb"] for r in good),
        "cuda_peak_mb": max((r["cuda_peak_mb"] for r in good if r["cuda_peak_mb"] is not None), default=None),
        "cpu_utilisation": spread([r["cpu_utilisation"] for r in good]),
        "torch_threads": good[0]["torch_threads"],
        "attn_implementation": good[0]["attn_implementation"],
        "n_parameters": good[0]["n_parameters"],
        "final_loss": [r["final_loss"] for r in good],
        "runs": [
            {k: r[k] for k in ("seed", "seconds", "pairs", "real_tokens", "positions", "step_seconds")} for r in good
        ],
    }


def speedup(paths: dict[str, dict], fast: str, base: str) -> dict[str, Any] | None:
    """``fast`` over ``base``: ratio of median pairs/s and tokens/s, and the per-repeat (paired) ratios."""
    if paths.get(fast, {}).get("status") != "measured" or paths.get(base, {}).get("status") != "measured":
        return None
    a, b = paths[fast], paths[base]
    paired = [x / y for x, y in zip(a["pairs_per_s"]["runs"], b["pairs_per_s"]["runs"])]
    return {
        "pairs_per_s": a["pairs_per_s"]["median"] / b["pairs_per_s"]["median"],
        "tokens_per_s": a["tokens_per_s"]["median"] / b["tokens_per_s"]["median"],
        "paired_pairs_per_s": spread(paired),
    }


def compile_verdict(paths: dict[str, dict], enabled: bool) -> dict[str, Any]:
    """Does torch.compile pay for the fast path? Measured speed-up, compile cost and break-even steps."""
    if not enabled:
        return {"status": "skipped", "measured": False, "reason": "--no-compile (or --quick)", "recommendation": "off"}
    compiled, fast = paths.get("fast_compiled", {}), paths.get("fast", {})
    if compiled.get("status") != "measured":
        return {
            "status": "failed",
            "measured": False,
            "error": compiled.get("error"),
            "recommendation": "off",
            "reason": "torch.compile failed on this machine; the training loop keeps it off",
        }
    ratio = speedup(paths, "fast_compiled", "fast")
    step_fast, step_compiled = fast["seconds_per_step"]["median"], compiled["seconds_per_step"]["median"]
    # Warm-up of the compiled run minus what the same steps cost eagerly = the compile time.
    compile_s = compiled["warmup_seconds"]["max"] - step_fast * compiled["warmup_steps"]
    saved = step_fast - step_compiled
    pays = ratio["pairs_per_s"] >= 1.1 and ratio["paired_pairs_per_s"]["min"] > 1.0
    return {
        "status": "measured",
        "measured": True,
        "speedup_vs_fast": ratio,
        "compile_seconds_first_run": compile_s,
        "warmup_seconds": compiled["warmup_seconds"],
        "break_even_steps": compile_s / saved if saved > 0 else None,
        "pays": pays,
        "recommendation": "on" if pays else "off",
        "reason": (
            "compiled steps are at least 10% faster in every repeat"
            if pays
            else "compiled steps are not reliably 10% faster than eager ones, and compiling costs minutes"
        ),
    }


def measure_sizes(
    args: argparse.Namespace, settings: dict[str, dict[str, int]], tokenizer, pairs, ablation_size: str
) -> dict[str, dict[str, Any]]:
    """Every path on every size, each run in a fresh process, interleaved repeat by repeat (the ablation size: all)."""
    results: dict[str, dict[str, Any]] = {}
    for size in args.sizes:
        plan_ = settings[size]
        variants = ["reference", "fast"]
        if size == ablation_size:
            variants += [name for name, _ in STAGES if name not in variants]
            variants += [v for v in ABLATION_EXTRAS if args.compile or v != "fast_compiled"]
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for repeat in range(plan_["repeats"]):
            for name in variants:  # interleaved: ref, fast, ..., ref, fast, ...
                warmup = max(plan_["warmup"], COMPILE_WARMUP_STEPS) if VARIANTS[name].compile else plan_["warmup"]
                run = in_child(
                    train_run, VARIANTS[name], size, tokenizer, pairs, plan_["steps"], warmup, repeat, args.max_length
                )
                runs[name].append(run)
                print(
                    f"  {size:<9} {name:<26} repeat {repeat + 1}: "
                    + (
                        f"FAILED {run['error']}"
                        if "error" in run
                        else (
                            f"{run['pairs_per_s']:8.1f} pairs/s {run['tokens_per_s']:9.0f} tokens/s  padding eff "
                            f"{run['padding_efficiency']:.3f}  peak {run['peak_rss_mb']:6.0f} MiB  (cpu "
                            f"{run['cpu_utilisation']:.2f} cores)"
                        )
                    ),
                    flush=True,
                )
        paths = {name: summarise_path(r) for name, r in runs.items()}
        first = next((p for p in paths.values() if p.get("status") == "measured"), {})
        results[size] = {
            "model": {**SIZES[size], "vocab_size": VOCAB_SIZE, "n_parameters": first.get("n_parameters")},
            **plan_,
            "paths": paths,
            "speedup_fast_vs_reference": speedup(paths, "fast", "reference"),
        }
    return results


def measure_time_to_quality(args: argparse.Namespace) -> dict[str, Any]:
    """The previous and today's default trained side by side, and the default step's share of the matmul peak."""
    if not args.ttq_repeats:
        return {}
    quick = dict(epochs=1, max_paragraphs=40) if args.quick else None  # the machinery only
    flops = in_child(step_flops, 3, 1, quick) if args.quick else in_child(step_flops)
    return {"time_to_quality": side_by_side(args.ttq_repeats, overrides=quick), "flop_use": flops}


def measure_inference(args: argparse.Namespace, tokenizer, pairs) -> dict[str, Any]:
    """p50/p95 latency of the demo's two calls, per size, each in a fresh process."""
    inference: dict[str, Any] = {}
    calls = args.calls or (5 if args.quick else 50)
    for size in args.sizes:
        inference[size] = in_child(
            inference_latency, size, tokenizer, pairs, calls, 2 if args.quick else 5, args.max_length
        )
        if "error" not in inference[size]:
            nsp, fill = inference[size]["predict_nsp"], inference[size]["fill_mask"]
            print(
                f"  {size:<9} inference: predict_nsp p50 {nsp['p50_ms']:.1f} ms p95 {nsp['p95_ms']:.1f} ms; "
                f"fill_mask p50 {fill['p50_ms']:.1f} ms p95 {fill['p95_ms']:.1f} ms",
                flush=True,
            )
    memory = in_child(memory_latency, 10 if args.quick else 300, 2 if args.quick else 20)
    inference["memory"] = memory
    if "error" not in memory:
        print(
            f"  the demo's fill-mask request, default profile: {memory['model_alone']['p50_ms']:.2f} ms alone, "
            f"{memory['with_memory']['p50_ms']:.2f} ms with the memory ({memory['added']:+.0%}), p50",
            flush=True,
        )
    return inference


def ablation_of(paths: dict[str, dict], size: str, compile_: bool) -> dict[str, Any]:
    """What each optimisation bought, stage by stage, and the attention, compile and padding notes."""
    stages, previous = [], None
    for name, label in STAGES:
        path = paths[name]
        measured = path.get("status") == "measured"
        stages.append(
            {
                "stage": label,
                "variant": name,
                "pairs_per_s": path["pairs_per_s"]["median"] if measured else None,
                "padding_efficiency": path.get("padding_efficiency"),
                "speedup_vs_reference": (speedup(paths, name, "reference") or {}).get("pairs_per_s"),
                "speedup_vs_previous": (speedup(paths, name, previous) or {}).get("pairs_per_s") if previous else None,
            }
        )
        previous = name
    return {
        "size": size,
        "stages": stages,
        "sdpa_vs_eager_attention": speedup(paths, "fast", "fast_eager_attention"),
        "torch_compile": compile_verdict(paths, compile_),
        "pad_to_multiple_of_8": {"measured": False, "note": PAD_MULTIPLE_NOTE},
    }


def targets_of(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each speed-up target met or not, and the fast path's padding efficiency per size."""
    targets: dict[str, Any] = {}
    for size, target in TARGETS.items():
        ratio = (results.get(size) or {}).get("speedup_fast_vs_reference")
        targets[size] = (
            {
                "target_speedup": target,
                "speedup": ratio["pairs_per_s"],
                "met": ratio["pairs_per_s"] >= target,
                "share_of_target": ratio["pairs_per_s"] / target,
            }
            if ratio
            else {"target_speedup": target, "speedup": None, "met": None, "reason": "size not in this run"}
        )
    efficiency = {size: r["paths"]["fast"].get("padding_efficiency") for size, r in results.items()}
    targets["padding_efficiency"] = {
        "target": TARGET_PADDING_EFFICIENCY,
        "fast": efficiency,
        "met": all(e is not None and e >= TARGET_PADDING_EFFICIENCY for e in efficiency.values()),
    }
    return targets


def settings_of(args: argparse.Namespace, settings: dict, tokenizer, pairs, lengths: list[int]) -> dict[str, Any]:
    """What the run measured and how, for the report."""
    return {
        "quick": args.quick,
        "batch_size": BATCH_SIZE,
        "max_length": args.max_length,
        "vocab_size": VOCAB_SIZE,
        "n_pairs": len(pairs),
        "mean_pair_tokens": statistics.fmean(lengths),
        "sizes": args.sizes,
        "per_size": settings,
        "compile": args.compile,
        "data": "first-epoch training pairs of the bert-base profile ('.' splitter, one pair per "
        "paragraph) from data/meditations.txt",
        "tokenizer": f"scratch WordPiece trained on the corpus ({len(tokenizer)} tokens; the hub is "
        f"unreachable); the model's vocabulary is {VOCAB_SIZE} regardless",
        "timing": "each timed step = next batch from the loader (collation and masking included) + "
        "forward + backward + optimizer step; warm-up steps untimed; one forked process "
        "per run, paths interleaved per repeat",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()
    started = time.perf_counter()
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    tokenizer, pairs = benchmark_data(args.max_length)
    settings = plan(args, len(pairs))
    ablation_size = "default" if "default" in args.sizes else args.sizes[0]
    lengths = [
        len(ids)
        for ids in tokenizer(
            [p.sentence_a for p in pairs],
            [p.sentence_b for p in pairs],
            truncation="longest_first",
            max_length=args.max_length,
        )["input_ids"]
    ]
    print(
        f"{len(pairs)} pairs, {statistics.fmean(lengths):.1f} tokens on average (max_length {args.max_length}); "
        f"batch size {BATCH_SIZE}; load average {load_before[0]:.2f}",
        flush=True,
    )
    results = measure_sizes(args, settings, tokenizer, pairs, ablation_size)
    inference = measure_inference(args, tokenizer, pairs)
    quality = measure_time_to_quality(args)
    threads = next(
        (p["torch_threads"] for r in results.values() for p in r["paths"].values() if "torch_threads" in p), None
    )
    report = {
        "schema": 1,
        "command": "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": date,
        "code_version": code_version(OUTPUTS),
        "machine": machine() | {"torch_threads": threads},  # the measuring processes' threads
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        "wall_seconds": time.perf_counter() - started,
        "settings": settings_of(args, settings, tokenizer, pairs, lengths),
        "sizes": results,
        "ablation": ablation_of(results[ablation_size]["paths"], ablation_size, args.compile),
        "inference": inference,
        "targets": targets_of(results),
        **quality,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print()
    print(format_table(report))
    if quality:
        print("\n" + format_tables(quality["time_to_quality"], quality["flop_use"]))
    print(f"\nWritten to {args.out} ({report['wall_seconds']:.0f} s).")
    return 0


def format_table(report: dict) -> str:
    """The headline figures as a Markdown table (what the README shows)."""
    lines = [
        "| size | path | pairs/s (min–max) | real tokens/s | padding eff. | peak RSS MiB | vs reference |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, result in report["sizes"].items():
        for name, path in result["paths"].items():
            if path.get("status") != "measured":
                lines.append(f"| {size} | {name} | failed: {path.get('error')} | | | | |")
                continue
            p, t = path["pairs_per_s"], path["tokens_per_s"]
            ratio = speedup(result["paths"], name, "reference")
            lines.append(
                f"| {size} | {name} | {p['median']:.1f} ({p['min']:.1f}–{p['max']:.1f}) | {t['median']:.0f} | "
                f"{path['padding_efficiency']:.3f} | {path['peak_rss_mb']['max']:.0f} | "
                f"{ratio['pairs_per_s']:.2f}× |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
