"""Learning curves: held-out MLM accuracy at [MASK] and NSP accuracy against wall-clock seconds, per variant.

    python -m benchmarks.learning                      # every variant, two seeds (about an hour on 2 cores)
    python -m benchmarks.learning --variants new_default --seeds 42
    python -m benchmarks.learning --plot-only          # redraw the figure from the JSON

Each variant is the default profile with one or two values changed (VARIANTS below), trained with the project's
own loop, one at a time so that wall-clock seconds compare. Results are merged into benchmarks/learning.json
(one entry per variant and seed), and docs/learning_curves.png is drawn from that file.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from helpers.config import PROFILES, ROOT, get_profile  # noqa: E402

OUT = ROOT / "benchmarks" / "learning.json"
FIGURE = ROOT / "docs" / "learning_curves.png"
# The old default profile, as it was before the learning-curve experiments.
OLD_DEFAULT = dict(mlm_probability=0.15, mask_replace_prob=0.8, random_replace_prob=0.1, mlm_only_ratio=0.0,
                   dropout=0.1, epochs=30, lr=1e-3, warmup_ratio=0.06)
# name -> (what it shows, overrides of the default profile). One lever at a time from the row it names.
VARIANTS: dict[str, tuple[str, dict]] = {
    "old_default": ("the default before these experiments: 15% masked, 80/10/10, NSP from step 0", OLD_DEFAULT),
    "mask40_8010": ("old default, 40% masked (still 80/10/10)", {**OLD_DEFAULT, "mlm_probability": 0.4}),
    "mask40_all": ("old default, 40% masked, every one a [MASK]",
                   {**OLD_DEFAULT, "mlm_probability": 0.4, "mask_replace_prob": 1.0, "random_replace_prob": 0.0}),
    "mlm_first": ("40% all [MASK], MLM alone for the first half, then MLM + NSP",
                  {**OLD_DEFAULT, "mlm_probability": 0.4, "mask_replace_prob": 1.0, "random_replace_prob": 0.0,
                   "mlm_only_ratio": 0.5}),
    "new_default": ("the default profile as it is now", {}),
}


def run_variant(name: str, seed: int) -> dict:
    """Train one variant with one seed; its per-epoch held-out metrics with wall-clock seconds."""
    from helpers.train import train

    cfg = get_profile("default", **VARIANTS[name][1], seed=seed, wandb="disabled")
    with tempfile.TemporaryDirectory() as folder:
        result = train(cfg, Path(folder) / "run", progress=False, track=False, verbose=False)
    keep = ("epoch", "step", "seconds", "mlm_accuracy_at_mask", "nsp_accuracy", "mlm_loss", "nsp_loss")
    return {"variant": name, "seed": seed, "about": VARIANTS[name][0], "overrides": VARIANTS[name][1],
            "baselines": result.baselines, "curve": [{k: row[k] for k in keep} for row in result.epochs],
            "final": {k: result.final[k] for k in ("mlm_accuracy_at_mask", "nsp_accuracy", "train_seconds")}}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "date": datetime.date.today().isoformat(), "commit": commit}


def merge(runs: list[dict], out: Path) -> dict:
    """Add ``runs`` to what ``out`` holds (a rerun of a variant and seed replaces the old entry)."""
    report = json.loads(out.read_text()) if out.exists() else {"runs": []}
    fresh = {(r["variant"], r["seed"]) for r in runs}
    report["runs"] = [r for r in report["runs"] if (r["variant"], r["seed"]) not in fresh] + runs
    report["machine"] = machine()
    report["default_profile"] = PROFILES["default"]
    out.write_text(json.dumps(report, indent=1) + "\n")
    return report


def plot(report: dict, figure: Path) -> None:
    """Two panels against wall-clock seconds, one line per run, baselines as dashed lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mlm, nsp) = plt.subplots(1, 2, figsize=(12, 4.6))
    names = list(dict.fromkeys(r["variant"] for r in report["runs"]))
    colours = dict(zip(names, plt.cm.tab10.colors))
    for run in report["runs"]:
        seconds = [row["seconds"] for row in run["curve"]]
        label = run["variant"] if run["seed"] == min(r["seed"] for r in report["runs"] if r["variant"] == run["variant"]) else None
        style = "-" if run["seed"] == 42 else ":"
        mlm.plot(seconds, [row["mlm_accuracy_at_mask"] for row in run["curve"]], style, color=colours[run["variant"]], label=label)
        nsp.plot(seconds, [row["nsp_accuracy"] for row in run["curve"]], style, color=colours[run["variant"]], label=label)
    base = report["runs"][0]["baselines"]
    for axis, lines in ((mlm, [("unigram", base["baseline_unigram"]), ("neighbour counting", base["baseline_neighbours"])]),
                        (nsp, [("chance", 0.5), ("word overlap", base["baseline_word_overlap"])])):
        for text, value in lines:
            axis.axhline(value, color="grey", linestyle="--", linewidth=1)
            axis.annotate(text, (0, value), textcoords="offset points", xytext=(2, 3), fontsize=8, color="grey")
    mlm.set(title="Held-out MLM accuracy at [MASK] (15% masked)", xlabel="wall-clock seconds", ylabel="accuracy")
    nsp.set(title="Held-out NSP accuracy (balanced pairs)", xlabel="wall-clock seconds", ylabel="accuracy")
    m = report.get("machine", {})
    fig.suptitle(f"Default profile variants on {m.get('cores')} cores ({m.get('cpu')}), {m.get('date')}; "
                 f"solid: seed 42, dotted: other seeds", fontsize=9)
    mlm.legend(fontsize=8)
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names: " + ", ".join(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--figure", type=Path, default=FIGURE)
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure from --out")
    args = parser.parse_args(argv)
    if not args.plot_only:
        for name in args.variants.split(","):
            if name not in VARIANTS:
                parser.error(f"unknown variant {name!r}: choose from {', '.join(VARIANTS)}")
            for seed in args.seeds:
                run = run_variant(name, seed)
                print(f"{name} seed {seed}: MLM@[MASK] {run['final']['mlm_accuracy_at_mask']:.3f}, "
                      f"NSP {run['final']['nsp_accuracy']:.3f}, {run['final']['train_seconds']:.0f} s", flush=True)
                merge([run], args.out)
    plot(json.loads(args.out.read_text()), args.figure)
    print(f"Wrote {args.out} and {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
