"""Time to quality: the previous default profile against today's, trained side by side; where a run's seconds go;
and how much of this machine's matrix-multiply peak the default's training step uses.

    python -m benchmarks.run                     # includes this part (--ttq-repeats 0 leaves it out)
    python -m benchmarks.time_to_quality         # this part alone, 2 repeats (about 8 minutes on 2 cores)

Each training run is a fresh process at the machine's own thread count, in the order previous, today's, previous,
today's, ... so that a machine shared with other work slows both alike. Seconds are training seconds as the run's
epoch rows count them (measurement included); the loop marks its own parts (helpers/parts.py), and a run that timed
fewer parts than helpers.parts.LOOP_PARTS lists fails by name.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.child import in_child
from benchmarks.learning import variant_config
from helpers.config import Config, get_profile
from helpers.parts import LOOP_PARTS, timing
from helpers.report import first_above

# The two profiles compared: round 4's default as benchmarks/learning.py keeps it (one place for what "previous"
# means), and the default profile of helpers/config.py as it is today.
COMPARED = {"previous": "previous_default", "today": "default"}


def profile_of(variant: str, seed: int, overrides: dict | None = None) -> Config:
    """``variant``'s profile with ``seed`` (and ``overrides``): today's default, or a learning experiment's variant."""
    cfg = get_profile("default", seed=seed, wandb="disabled") if variant == "default" else variant_config(variant, seed)
    return Config(**{**cfg.to_dict(), **(overrides or {})})


class PartsMissing(RuntimeError):
    """A run timed fewer parts than helpers.parts.LOOP_PARTS lists: the loop stopped marking one."""


def check_parts(seconds: dict[str, float]) -> None:
    """Raise PartsMissing, naming each part, unless the run timed every part the loop is meant to mark."""
    missing = [name for name in LOOP_PARTS if name not in seconds]
    if missing:
        raise PartsMissing(
            f"The training loop no longer marks {', '.join(repr(m) for m in missing)}: mark it in helpers/train.py "
            f"(with part(...) or @part(...)), or take it out of helpers.parts.LOOP_PARTS."
        )


def train_timed(variant: str, seed: int, overrides: dict | None = None) -> dict[str, Any]:
    """One run of ``variant`` with its parts timed; its curve, time to quality and seconds by part."""
    import tempfile
    from pathlib import Path

    from helpers.train import train

    sys.stderr = open(os.devnull, "w")  # the progress bar draws (and is timed) without flooding the benchmark's log
    cfg = profile_of(variant, seed, overrides)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder, timing() as timer:
        result = train(cfg, Path(folder) / "run", progress_bar=True, track=False, verbose=False)
    wall = time.perf_counter() - started
    check_parts(timer.seconds)
    parts = dict(timer.seconds)
    parts["other (the loop's own Python, the scheduler)"] = wall - sum(parts.values())
    passed = first_above(result.epochs, result.baselines)
    peak = max(result.epochs, key=lambda row: row["mlm_accuracy_at_mask"])
    return {
        "variant": variant,
        "seed": seed,
        "epochs": cfg.epochs,
        "torch_threads": torch.get_num_threads(),
        "train_seconds": result.final["train_seconds"],
        "wall_seconds": wall,
        "parts": parts,
        "baseline_neighbours": result.baselines["baseline_neighbours"],
        "final": result.final["mlm_accuracy_at_mask"],
        "seconds_to_neighbours": None if passed is None else passed["seconds"],
        "epoch_to_neighbours": None if passed is None else passed["epoch"],
        "peak": peak["mlm_accuracy_at_mask"],
        "seconds_to_peak": peak["seconds"],
        "epoch_of_peak": peak["epoch"],
        "curve": [{k: row[k] for k in ("epoch", "seconds", "mlm_accuracy_at_mask")} for row in result.epochs],
    }


def side_by_side(repeats: int, seed: int = 42, overrides: dict | None = None) -> dict[str, Any]:
    """Both profiles, interleaved repeat by repeat, each run in a fresh process; medians and every run."""
    runs: dict[str, list[dict]] = {label: [] for label in COMPARED}
    for repeat in range(repeats):
        for label, variant in COMPARED.items():
            run = in_child(train_timed, variant, seed, overrides)
            runs[label].append(run)
            print(
                f"  time to quality, {label:<8} repeat {repeat + 1}: "
                + (
                    f"FAILED {run['error']}"
                    if "error" in run
                    else f"{run['train_seconds']:6.1f} s of training, passes neighbour counting at "
                    f"{run['seconds_to_neighbours']} s, peak {run['peak']:.4f} at {run['seconds_to_peak']} s"
                ),
                flush=True,
            )
    summary = {
        label: summarise(good)
        for label, good in ((label, [r for r in rs if "error" not in r]) for label, rs in runs.items())
        if good
    }
    ratios = {}
    if len(summary) == len(COMPARED):
        for key in ("train_seconds", "seconds_to_neighbours", "seconds_to_peak"):
            before, after = summary["previous"][key], summary["today"][key]
            ratios[key] = after / before if before and after is not None else None
    return {
        "compared": COMPARED,
        "seed": seed,
        "repeats": repeats,
        "runs": runs,
        "median": summary,
        "today_over_previous": ratios,
    }


def summarise(runs: list[dict]) -> dict[str, Any]:
    """Medians over repeats (seconds to pass neighbour counting: None when a run never passed)."""

    def median(key: str) -> float | None:
        values = [run[key] for run in runs]
        return None if any(v is None for v in values) else statistics.median(values)

    parts = {part: statistics.median(run["parts"].get(part, 0.0) for run in runs) for part in runs[0]["parts"]}
    return {
        key: median(key)
        for key in (
            "train_seconds",
            "wall_seconds",
            "seconds_to_neighbours",
            "seconds_to_peak",
            "peak",
            "final",
            "epoch_to_neighbours",
            "epoch_of_peak",
        )
    } | {"parts": parts}


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """This machine's fp32 matrix-multiply rate at torch's thread count, in GFLOP/s: the best of ``repeats``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up: threads started, memory touched
    best = min(_seconds(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_flops(steps: int = 60, warmup: int = 10, profile_overrides: dict | None = None) -> dict[str, Any]:
    """FLOPs of the default's training step (forward, backward; counted by torch) against its measured time."""
    from torch.utils.flop_counter import FlopCounterMode

    from helpers.config import get_profile
    from helpers.dataset import MeditationsDataset, make_loader, prepare_data
    from helpers.model import PretrainingModel, load_model
    from helpers.train import make_optimizer

    cfg = get_profile("default", wandb="disabled", **(profile_overrides or {}))
    data = prepare_data(cfg)
    text = data.training_text(cfg)
    loader = make_loader(
        MeditationsDataset.from_pairs(data.tokenizer, text.pairs, cfg.max_length),
        data.tokenizer,
        cfg,
        shuffle=True,
        seed=cfg.seed,
    )
    batches = [batch for _, batch in zip(range(warmup + steps), loader)]
    model = PretrainingModel(load_model(cfg, data.tokenizer, text.unigram)).train()
    optimizer = make_optimizer(model, cfg)

    def step(batch: dict[str, torch.Tensor]) -> None:
        model(**batch)["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:warmup]:
        step(batch)
    seconds = sum(_seconds(lambda batch=batch: step(batch)) for batch in batches[warmup:])
    with FlopCounterMode(display=False) as counter:  # the same steps again, counted (slower, so not timed)
        for batch in batches[warmup:]:
            step(batch)
    flops = counter.get_total_flops()
    peak = matmul_peak()
    achieved = flops / seconds / 1e9
    return {
        "steps": steps,
        "batch_size": cfg.batch_size,
        "seconds_per_step": seconds / steps,
        "gflop_per_step": flops / steps / 1e9,
        "achieved_gflops": achieved,
        "matmul_peak_gflops": peak,
        "share_of_peak": achieved / peak,
        "torch_threads": torch.get_num_threads(),
        "counted": "matrix multiplies and attention of the forward and backward passes (torch's FlopCounterMode); "
        "the optimizer, LayerNorm, GELU and softmax are not counted",
    }


def format_tables(ttq: dict[str, Any], flops: dict[str, Any] | None) -> str:
    """Time to quality and where the seconds go, as Markdown tables (benchmarks/README.md, docs/experiments.md)."""
    prev, today = ttq["median"]["previous"], ttq["median"]["today"]
    ratio = ttq["today_over_previous"]
    fmt = lambda v, unit=" s": "never" if v is None else f"{v:.1f}{unit}"  # noqa: E731
    lines = [
        "| | the 24-epoch recipe | the default profile at this commit | default / 24-epoch |",
        "|---|---|---|---|",
        f"| training seconds | {fmt(prev['train_seconds'])} | {fmt(today['train_seconds'])} | "
        f"{ratio.get('train_seconds') or 0:.2f} |",
        f"| seconds to pass neighbour counting (epoch) | {fmt(prev['seconds_to_neighbours'])} "
        f"({prev['epoch_to_neighbours']}) | {fmt(today['seconds_to_neighbours'])} ({today['epoch_to_neighbours']}) | "
        + (f"{ratio['seconds_to_neighbours']:.2f} |" if ratio.get("seconds_to_neighbours") else "– |"),
        f"| seconds to the peak (epoch) | {fmt(prev['seconds_to_peak'])} ({prev['epoch_of_peak']}) | "
        f"{fmt(today['seconds_to_peak'])} ({today['epoch_of_peak']}) | {ratio.get('seconds_to_peak') or 0:.2f} |",
        f"| peak held-out MLM at [MASK] | {prev['peak']:.4f} | {today['peak']:.4f} | |",
        f"| final held-out MLM at [MASK] | {prev['final']:.4f} | {today['final']:.4f} | |",
        "",
        "| where the seconds go | the 24-epoch recipe | the default profile at this commit |",
        "|---|---|---|",
    ]
    for part in sorted(prev["parts"], key=prev["parts"].get, reverse=True):
        shares = [
            f"{s['parts'].get(part, 0.0):.1f} s ({s['parts'].get(part, 0.0) / s['wall_seconds']:.0%})"
            for s in (prev, today)
        ]
        lines.append(f"| {part} | {shares[0]} | {shares[1]} |")
    lines.append(f"| all of train() | {prev['wall_seconds']:.1f} s | {today['wall_seconds']:.1f} s |")
    if flops:
        lines += [
            "",
            f"The default's training step: {flops['gflop_per_step']:.2f} GFLOP in "
            f"{1000 * flops['seconds_per_step']:.1f} ms = {flops['achieved_gflops']:.0f} GFLOP/s, "
            f"{flops['share_of_peak']:.0%} of this machine's fp32 matrix-multiply peak "
            f"({flops['matmul_peak_gflops']:.0f} GFLOP/s, 2048 x 2048, {flops['torch_threads']} threads).",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each profile, interleaved")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, help="write the JSON here too")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats={args.repeats} is too small: use 1 or more.")
    report = {"time_to_quality": side_by_side(args.repeats, args.seed), "flop_use": in_child(step_flops)}
    print(format_tables(report["time_to_quality"], report["flop_use"]))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
