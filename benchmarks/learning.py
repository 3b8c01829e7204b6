"""Learning curves: held-out MLM accuracy at [MASK] and NSP accuracy against wall-clock seconds, per variant.

    python -m benchmarks.learning --jobs 2     # every variant, each with its seeds (about 150 minutes on 2 cores)
    python -m benchmarks.learning --variants default,previous_default --seeds 42
    python -m benchmarks.learning --plot-only          # redraw the figure from the JSON

Each variant is the default profile with a few values changed (VARIANTS below), trained with the project's own
loop; with --jobs 2, two at a time on one core each, so that wall-clock seconds compare. Results are merged into
benchmarks/learning.json
(one entry per variant and seed), and docs/learning_curves.png is drawn from that file.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from helpers.baselines import accuracy
from helpers.config import ROOT, Config
from helpers.provenance import code_version, machine
from helpers.report import baselines_beside, first_above

OUT = ROOT / "benchmarks" / "learning.json"
FIGURE = ROOT / "docs" / "learning_curves.png"
NSP_FIGURE = ROOT / "docs" / "nsp_levers.png"
# Every variant is this profile with a few values changed: the default profile as the fifth round left it
# (commit 0117a90 of 2026-12-06). It is written out here, not read from helpers/config.py, so that these experiments
# stay the runs they were when the default profile moves on: a new default needs `make record` and `make notebooks`,
# never this three-hour rerun.
BASE = dict(
    max_length=128, vocab_size=8000, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
    intermediate_size=512, pairs_per_paragraph=8, epochs=12, lr=1e-3, warmup_ratio=0.06, val_fraction=0.33,
    mlm_probability=0.4, mask_replace_prob=1.0, random_replace_prob=0.0, mlm_only_ratio=0.5, batch_size=8,
    dropout=0.0, initializer_range=0.05, position_dims=64, neighbour_offsets="-1,1", neighbour_layer=0,
    neighbour_scale=2.0, lr_schedule="wsd", decay_ratio=0.5, embedding_lr=5e-3, output_bias_init="unigram",
)  # fmt: skip
# The fifth round: time to quality. The default until then (rounds 1-4 are relative to it) trained 24 epochs with
# BERT's linear decay, one learning rate for every weight, and the MLM output bias starting at zero.
PREVIOUS_DEFAULT = dict(epochs=24, lr_schedule="linear", embedding_lr=None, output_bias_init="zero")
P = PREVIOUS_DEFAULT
SHORT = P | dict(epochs=12)  # the previous default in half the epochs: the base each lever of the round is added to
# The fourth round: layer 0's neighbour heads. Every run before it started every attention weight at random.
NO_NB = P | dict(position_dims=0, neighbour_offsets="")
# The old default profile, as it was before the learning-curve experiments.
OLD_DEFAULT = P | dict(
    mlm_probability=0.15,
    mask_replace_prob=0.8,
    random_replace_prob=0.1,
    mlm_only_ratio=0.0,
    batch_size=32,
    epochs=30,
    dropout=0.1,
    initializer_range=0.02,
    position_dims=0,
    neighbour_offsets="",
)
# Every run is judged on these many fresh draws of masks over its held-out pairs (at the validation rule: 15%, every
# selected token a [MASK]) as well as on the fixed validation masks: one draw moves accuracy by about 0.01.
DRAWS = 5
# The first two rounds kept BERT's initial spread of 0.02, and the first round BERT's dropout of 0.1, as the
# default then did; their variants say so, so that each still names the run it was.
I02 = dict(initializer_range=0.02) | NO_NB
D01 = dict(dropout=0.1) | I02
# name -> (what it shows, overrides of BASE, seeds). Variants with two or more seeds are drawn in the figure;
# single-seed ones are exploratory and only listed in the table.
VARIANTS: dict[str, tuple[str, dict, tuple[int, ...]]] = {
    # Round 5: each lever alone on the short run, then all together (the default it chose, BASE).
    "round5_default": (
        "the default profile round 5 chose: 12 epochs, the learning rate held for the first half then decayed (wsd), "
        "5e-3 for the word embeddings and the MLM output bias, that bias starting at the unigram guess",
        {},
        (42, 43, 44),
    ),
    "previous_default": (
        "the default of round 4: 24 epochs, linear decay, 1e-3 everywhere, the output bias at zero "
        "(40% masked, every one a [MASK], MLM first, batch 8, no dropout, initial spread 0.05, "
        "layer 0's two heads start at the tokens left and right)",
        P,
        (42, 43, 44),
    ),
    "round4_default": (
        "the default of round 4 as round 4 measured it (its code; the settings of previous_default)",
        P,
        (42, 43, 44),
    ),
    "short_linear": ("the previous default in 12 epochs (its linear decay spans them)", SHORT, (42, 43, 44)),
    "short_wsd": (
        "12 epochs; the learning rate held at its peak for the first half, then decayed (--lr-schedule wsd)",
        SHORT | dict(lr_schedule="wsd", decay_ratio=0.5),
        (42, 43, 44),
    ),
    "short_embedding_lr": (
        "12 epochs; 5e-3 for the word embeddings and the MLM output bias (--embedding-lr)",
        SHORT | dict(embedding_lr=5e-3),
        (42, 43, 44),
    ),
    "short_unigram_bias": (
        "12 epochs; the MLM output bias starts at the log-frequency of each training token "
        "(--output-bias-init unigram)",
        SHORT | dict(output_bias_init="unigram"),
        (42, 43, 44),
    ),
    # Round 5: its default with one thing changed (one seed each, but the decay share on all three).
    "default_decay_0.2": (
        "the default decaying over the last 20% of the steps instead of the last half",
        dict(decay_ratio=0.2),
        (42, 43, 44),
    ),
    "default_linear": ("the default with BERT's linear decay instead of wsd", dict(lr_schedule="linear"), (42,)),
    "default_cosine": ("the default with a cosine decay instead of wsd", dict(lr_schedule="cosine"), (42,)),
    "default_embedding_lr_1e-2": (
        "the default with 1e-2 for the word embeddings and the output bias",
        dict(embedding_lr=1e-2),
        (42,),
    ),
    "default_4_heads": (
        "the default with 4 heads of 32, layer 0's starting at offsets -2, -1, +1, +2",
        dict(num_attention_heads=4, neighbour_offsets="-2,-1,1,2"),
        (42,),
    ),
    "default_11_epochs": ("the default in 11 epochs instead of 12", dict(epochs=11), (42, 43, 44)),
    "default_7_pairs": (
        "the default with 7 pairs per paragraph and epoch instead of 8",
        dict(pairs_per_paragraph=7),
        (42, 43, 44),
    ),
    "default_batch_16": (
        "the default with 16 pairs a batch (half the steps), learning rates x1.4 (1.4e-3, 7e-3)",
        dict(batch_size=16, lr=1.4e-3, embedding_lr=7e-3),
        (42, 43, 44),
    ),
    "default_batch_16_same_lr": (
        "the default with 16 pairs a batch (half the steps), the same learning rates",
        dict(batch_size=16),
        (42, 43, 44),
    ),
    "default_80_10_10": (
        "the default with BERT's 80/10/10 (a selected token becomes [MASK] 80% of the time, a random "
        "token 10%, itself 10%) instead of every selected token a [MASK]",
        dict(mask_replace_prob=0.8, random_replace_prob=0.1),
        (42, 43, 44),
    ),
    "random_attention": (
        "every attention weight starts at random (spread 0.05; the default of the third round)",
        NO_NB,
        (42, 43, 44),
    ),
    "scale_1.2": (
        "neighbour heads' starting scale 1.2 instead of 2 (about 0.43 of the weight on the neighbour)",
        P | dict(neighbour_scale=1.2),
        (42, 43),
    ),
    "scale_3": (
        "neighbour heads' starting scale 3 (about 0.75 on the neighbour)",
        P | dict(neighbour_scale=3.0),
        (42, 43),
    ),
    "offsets_2": (
        "4 heads of 32 in each layer, layer 0's start at offsets -2, -1, +1, +2",
        P | dict(num_attention_heads=4, neighbour_offsets="-2,-1,1,2"),
        (42, 43),
    ),
    "layer_1": ("the neighbour heads in layer 1 instead of layer 0", P | dict(neighbour_layer=1), (42, 43)),
    "position_dims_32": (
        "positions own 32 dimensions instead of 64 (16 frequencies)",
        P | dict(position_dims=32),
        (42, 43),
    ),
    # NSP levers, each on top of round 4's default (previous_default).
    "nsp_dropout_0.5": (
        "dropout 0.5 on the pooled [CLS] vector before the NSP head",
        P | dict(nsp_dropout=0.5),
        (42, 43),
    ),
    "nsp_weight_decay_1": (
        "weight decay 1.0 on the pooler and NSP head (0.01 elsewhere)",
        P | dict(nsp_weight_decay=1.0),
        (42, 43),
    ),
    "nsp_lr_1e-4": (
        "a learning-rate peak of 1e-4 for the pooler and NSP head (1e-3 elsewhere)",
        P | dict(nsp_lr=1e-4),
        (42, 43),
    ),
    # One seed each: the search was bounded at about ten runs, and these two were the last.
    "nsp_at_75": (
        "NSP joins after 75% of the steps instead of 50% (half the NSP steps)",
        P | dict(mlm_only_ratio=0.75),
        (42,),
    ),
    "nsp_weight_0.3": ("the NSP loss weighted 0.3 in the sum instead of 1", P | dict(nsp_weight=0.3), (42,)),
    "init_0.02": ("BERT's initial spread of 0.02 (the default before the third round)", I02, (42, 43, 44)),
    "init_0.035": ("an initial spread of 0.035", NO_NB | dict(initializer_range=0.035), (42, 43)),
    "init_0.08": ("an initial spread of 0.08", NO_NB | dict(initializer_range=0.08), (42, 43)),
    "dropout_0.1": ("spread 0.02, and BERT's dropout of 0.1 (the default before the second round)", D01, (42, 43)),
    "old_default": (
        "the default before the first round: 15% masked, 80/10/10, NSP from step 0, batch 32",
        OLD_DEFAULT,
        (42, 43),
    ),
    "with_80_10_10": (
        "spread 0.02, dropout 0.1, and BERT's 80/10/10 instead of every selected token a [MASK]",
        D01 | dict(mask_replace_prob=0.8, random_replace_prob=0.1),
        (42, 43),
    ),
    "nsp_from_start": (
        "spread 0.02, dropout 0.1, and NSP in the loss from step 0",
        D01 | dict(mlm_only_ratio=0.0),
        (42, 43),
    ),
    "batch_32": (
        "spread 0.02, dropout 0.1, and 32 pairs a batch (a quarter of the steps)",
        D01 | dict(batch_size=32, epochs=30),
        (42, 43),
    ),
    "lr_1.5e-3": ("spread 0.02, and a learning-rate peak of 1.5e-3 instead of 1e-3", I02 | dict(lr=1.5e-3), (42, 43)),
    "nsp_at_35": (
        "spread 0.02, and NSP joins after 35% of the steps instead of 50%",
        I02 | dict(mlm_only_ratio=0.35),
        (42, 43),
    ),
    # Exploratory, one seed each.
    "epochs_32": ("spread 0.02, 32 epochs instead of 24", I02 | dict(epochs=32), (42,)),
    "constant_lr": (
        "spread 0.02, a constant learning rate after the warm-up",
        I02 | dict(lr_schedule="constant"),
        (42,),
    ),
    "weight_decay_0.1": ("spread 0.02, weight decay 0.1 instead of 0.01", I02 | dict(weight_decay=0.1), (42,)),
    "sinusoidal_positions": (
        "spread 0.02, the position table starts from sinusoids",
        I02 | dict(position_init="sinusoidal"),
        (42,),
    ),
    "width_64": (
        "spread 0.02, 2 x 64 (feed-forward 256), 36 epochs",
        I02 | dict(hidden_size=64, intermediate_size=256, epochs=36),
        (42,),
    ),
    "dropout_0.05": ("spread 0.02, dropout 0.05", I02 | dict(dropout=0.05), (42,)),
    "dropout_0.2": ("spread 0.02, dropout 0.2", I02 | dict(dropout=0.2), (42,)),
    "mlm_only": ("spread 0.02, dropout 0.1, MLM alone for every step (no NSP)", D01 | dict(mlm_only_ratio=1.0), (42,)),
    "no_bucketing": (
        "spread 0.02, dropout 0.1, batches not grouped by length",
        D01 | dict(bucket_by_length=False),
        (42,),
    ),
    "constant_lr_dropout_0.1": (
        "spread 0.02, dropout 0.1, constant learning rate after the warm-up",
        D01 | dict(lr_schedule="constant"),
        (42,),
    ),
    "mask_50": ("spread 0.02, dropout 0.1, 50% of tokens masked", D01 | dict(mlm_probability=0.5), (42,)),
    "heads_4": (
        "spread 0.02, dropout 0.1, 4 attention heads of 32 instead of 2 of 64",
        D01 | dict(num_attention_heads=4),
        (42,),
    ),
    "width_256": (
        "spread 0.02, dropout 0.1, 2 x 256 (4 heads, feed-forward 1024), 10 epochs (about the same time)",
        D01 | dict(hidden_size=256, num_attention_heads=4, intermediate_size=1024, epochs=10),
        (42,),
    ),
    "spans_2": (
        "spread 0.02, dropout 0.1, segments of up to 2 sentences, 16 epochs (about the same time)",
        D01 | dict(max_segment_sentences=2, epochs=16),
        (42,),
    ),
}
# The NSP levers, drawn in their own figure.
NSP_LEVERS = ("nsp_dropout_0.5", "nsp_weight_decay_1", "nsp_lr_1e-4", "nsp_at_75", "nsp_weight_0.3")
# Round 5's levers, each alone on the short run, and all together: the lever table and its figure.
LEVERS = ("previous_default", "short_linear", "short_wsd", "short_embedding_lr", "short_unigram_bias", "round5_default")
ROUND5 = (
    *LEVERS,
    "default_decay_0.2",
    "default_linear",
    "default_cosine",
    "default_embedding_lr_1e-2",
    "default_4_heads",
    "default_11_epochs",
    "default_7_pairs",
    "default_batch_16",
    "default_batch_16_same_lr",
    "default_80_10_10",
)
LEVER_FIGURE = ROOT / "docs" / "time_to_quality.png"
# What the runs themselves write: a tree changed only there is still the commit's code (code_version).
OUTPUTS = tuple(str(path.relative_to(ROOT)) for path in (OUT, FIGURE, NSP_FIGURE, LEVER_FIGURE))
# The variants drawn in the figure (the rest are in the tables): round 4's default, the one before it (every
# attention weight random), the first recipe, and each one-at-a-time change to the neighbour heads.
DRAWN = (
    "round4_default",
    "random_attention",
    "old_default",
    "scale_1.2",
    "scale_3",
    "offsets_2",
    "layer_1",
    "position_dims_32",
)


def variant_config(name: str, seed: int) -> Config:
    """The profile a variant trains: BASE with the variant's overrides, and the seed."""
    return Config(**{**BASE, **VARIANTS[name][1]}, profile="default", seed=seed, wandb="disabled")


def made(run: dict) -> str:
    """'cf86915 (2026-12-06)': the commit a run's code came from, and its date."""
    return f"{run['code_version'].split()[0].removesuffix('+changes')} ({run['date']})"


def run_variant(name: str, seed: int, threads: int | None = None) -> dict:
    """Train one variant with one seed: its per-epoch held-out metrics with wall-clock seconds, then DRAWS draws."""
    from helpers.dataset import prepare_data
    from helpers.train import train

    if threads:
        torch.set_num_threads(threads)
    cfg = variant_config(name, seed)
    data = prepare_data(cfg)
    with tempfile.TemporaryDirectory() as folder:
        result = train(cfg, Path(folder) / "run", progress_bar=False, track=False, verbose=False, data=data)
        draws = held_out_draws(result.checkpoint, data, cfg)
    keep = (
        "epoch",
        "step",
        "seconds",
        "mlm_accuracy_at_mask",
        "mlm_accuracy_frequent",
        "mlm_accuracy_rest",
        "nsp_accuracy",
        "mlm_loss",
        "nsp_loss",
    )
    return {
        "variant": name,
        "seed": seed,
        "about": VARIANTS[name][0],
        "overrides": VARIANTS[name][1],
        "code_version": code_version(OUTPUTS),
        "date": machine()["date"],
        "baselines": result.baselines,
        "curve": [{k: row[k] for k in keep} for row in result.epochs],
        "final": {k: result.final[k] for k in ("mlm_accuracy_at_mask", "nsp_accuracy", "train_seconds")},
        "draws": draws,
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[1],
        "cpu": machine()["cpu"],
    }  # the 5-minute load average, at the end


def held_out_draws(folder: Path, data, cfg, draws: int = DRAWS) -> list[dict]:
    """The trained model and the MLM baselines on ``draws`` fresh draws of masks over the held-out pairs, each split."""
    from accelerate import Accelerator
    from transformers import BertForPreTraining

    from helpers.baselines import count_baselines
    from helpers.dataset import validation_batches
    from helpers.model import PretrainingModel
    from helpers.train import evaluate

    model = PretrainingModel(BertForPreTraining.from_pretrained(folder, use_safetensors=True))
    text, accelerator, out = data.training_text(cfg), Accelerator(cpu=True), []
    for draw in range(1, draws + 1):
        # Other seeds than the validation masks' own (cfg.seed): the same pairs, other positions hidden.
        batches = validation_batches(data, cfg, seed=cfg.seed + 7777 * draw)
        scores = evaluate(model, batches, accelerator, text.frequent, text.memory, cfg.memory_strength)
        base = count_baselines(text, batches, data.val_pairs)
        out.append(
            {
                key: value
                for key, value in (scores | base).items()
                if key.startswith(("mlm_accuracy", "with_memory_", "baseline_")) and "overlap" not in key
            }
            | {"masks": sum(int((b["labels"] != -100).sum()) for b in batches)}
        )
    return out


def draws_summary(run: dict, key: str) -> tuple[float, float]:
    """Mean and standard deviation of ``key`` over a run's draws."""
    values = [draw[key] for draw in run["draws"]]
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _run(task: tuple[str, int, int]) -> dict:
    """One run in a fresh interpreter (transformers' seeded collator refuses to run inside a multiprocessing worker)."""
    name, seed, threads = task
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run.json"
        subprocess.run(
            [sys.executable, "-m", "benchmarks.learning", "--single", name, str(seed), str(threads), str(out)],
            cwd=ROOT,
            check=True,
        )
        return json.loads(out.read_text())


def merge(runs: list[dict], out: Path) -> dict:
    """Add ``runs`` to what ``out`` holds (a rerun of a variant and seed replaces the old entry)."""
    report = json.loads(out.read_text()) if out.exists() else {"runs": []}
    fresh = {(r["variant"], r["seed"]) for r in runs}
    report["runs"] = [r for r in report["runs"] if (r["variant"], r["seed"]) not in fresh] + runs
    for run in report[
        "runs"
    ]:  # time to quality, read off each run's curve (new runs and those made before it was kept)
        passed = first_above(run["curve"], run["baselines"])
        run["final"]["seconds_to_neighbours"] = None if passed is None else passed["seconds"]
    report["machine"] = machine()  # each run keeps its own code_version
    report["base_profile"] = BASE
    out.write_text(json.dumps(report, indent=1) + "\n")
    return report


def draw_baselines(mlm, nsp, runs: list[dict], styles: dict[int, str]) -> None:
    """Each seed's baselines as grey lines (a seed has its own train/validation split, so baselines of its own)."""
    for seed, style in styles.items():
        base = next((r["baselines"] for r in runs if r["seed"] == seed), None)
        if base is None:
            continue
        for axis, key in ((mlm, "mlm_accuracy_at_mask"), (nsp, "nsp_accuracy")):
            for baseline, value in baselines_beside(accuracy(key), base):
                fixed = baseline.chance is not None
                if fixed and seed != 42:
                    continue  # one line serves every seed
                axis.axhline(value, color="grey", linestyle=style, linewidth=1)
                axis.annotate(
                    baseline.words if fixed else f"{baseline.words} ({seed})",
                    (0, value),
                    textcoords="offset points",
                    xytext=(2, {42: 3, 43: -9, 44: 9}[seed]),
                    fontsize=7,
                    color="grey",
                )


def plot(report: dict, figure: Path) -> None:
    """Two panels against wall-clock seconds, one line per run, baselines as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mlm, nsp) = plt.subplots(1, 2, figsize=(12, 5.2))
    runs = sorted((r for r in report["runs"] if r["variant"] in DRAWN), key=lambda r: DRAWN.index(r["variant"]))
    colours = dict(zip(DRAWN, plt.cm.tab10.colors))
    styles = {42: "-", 43: ":", 44: "--"}
    for run in runs:
        seconds = [row["seconds"] for row in run["curve"]]
        label = run["variant"] if run["seed"] == 42 else None
        style = styles.get(run["seed"], "--")
        mlm.plot(
            seconds,
            [row["mlm_accuracy_at_mask"] for row in run["curve"]],
            style,
            color=colours[run["variant"]],
            label=label,
        )
        passed = first_above(run["curve"], run["baselines"])  # time to quality: above this seed's neighbour counting
        if passed is not None:
            mlm.plot(
                [passed["seconds"]], [passed["mlm_accuracy_at_mask"]], "o", color=colours[run["variant"]], markersize=4
            )
        nsp.plot(
            seconds, [row["nsp_accuracy"] for row in run["curve"]], style, color=colours[run["variant"]], label=label
        )
    draw_baselines(mlm, nsp, runs, styles)
    mlm.set(
        title="Held-out MLM at [MASK] (15% masked); dot: passes neighbour counting",
        xlabel="wall-clock seconds",
        ylabel="accuracy",
    )
    nsp.set(title="Held-out NSP accuracy (balanced pairs)", xlabel="wall-clock seconds", ylabel="accuracy")
    cpus = sorted({run.get("cpu", report.get("earlier_cpu", "unknown CPU")) for run in runs})
    fig.suptitle(
        f"Default-profile variants, one torch thread per run, two runs at a time on 2 cores ({' and '.join(cpus)}: "
        f"compare seconds within one CPU)\nsolid: seed 42, dotted: 43, dashed: 44; grey: each seed's baselines",
        fontsize=9,
    )
    fig.legend(*mlm.get_legend_handles_labels(), loc="lower center", ncol=len(DRAWN) // 2, fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))  # the legend sits below both panels, clear of the curves
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)
    plt.close(fig)


def plot_nsp(report: dict, figure: Path) -> None:
    """Held-out NSP accuracy per epoch of every NSP lever beside round 4's default, against the NSP baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["round4_default", *NSP_LEVERS]
    seeds = sorted({r["seed"] for r in report["runs"] if r["variant"] in NSP_LEVERS})
    fig, axes = plt.subplots(1, len(seeds), figsize=(6 * len(seeds), 4.4), sharey=True, squeeze=False)
    for ax, seed in zip(axes[0], seeds):
        runs = {r["variant"]: r for r in report["runs"] if r["seed"] == seed and r["variant"] in names}
        for name, colour in zip(names, plt.cm.tab10.colors):
            if name in runs:
                curve = runs[name]["curve"]
                ax.plot(
                    [row["epoch"] for row in curve],
                    [row["nsp_accuracy"] for row in curve],
                    color=colour,
                    linewidth=2.5 if name == "round4_default" else 1.2,
                    label=name,
                )
        for baseline, value in baselines_beside(accuracy("nsp_accuracy"), runs["round4_default"]["baselines"]):
            ax.axhline(
                value,
                color=baseline.colour,
                linestyle=baseline.linestyle,
                linewidth=1,
                label=f"{baseline.words} ({value:.3f})",
            )
        ax.set(title=f"seed {seed}: held-out NSP accuracy per epoch", xlabel="epoch", ylim=(0.4, 0.75))
    axes[0][0].set_ylabel("accuracy on balanced held-out pairs")
    for ax in axes[0]:
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(
        "NSP levers on top of the default (NSP joins at half the epochs unless the lever moves it)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(figure, dpi=100)
    plt.close(fig)


def _passed(run: dict) -> str:
    """'91 s (epoch 10)': when held-out MLM at [MASK] first passed the seed's neighbour counting (epochs compare
    across machine loads, seconds only between runs made under the same load)."""
    passed = first_above(run["curve"], run["baselines"])
    return "never" if passed is None else f"{passed['seconds']:.0f} s (epoch {passed['epoch']})"


def table(report: dict, exploratory: bool = False) -> str:
    """A README table: per variant, each seed's final held-out accuracies and its ratio to the unigram baseline."""
    rows = [
        "| variant | what changes | MLM@[MASK], seeds "
        + ("42" if exploratory else "42 / 43 (/ 44)")
        + " | × unigram | passes neighbour counting | NSP | seconds | load | code (commit, date) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (about, _, seeds) in VARIANTS.items():
        runs = sorted((r for r in report["runs"] if r["variant"] == name), key=lambda r: r["seed"])
        if not runs or (len(seeds) == 1) != exploratory or name in ROUND5:  # round 5 has its own table
            continue
        mlm = " / ".join(f"{r['final']['mlm_accuracy_at_mask']:.3f}" for r in runs)
        ratio = " / ".join(
            f"{r['final']['mlm_accuracy_at_mask'] / r['baselines']['baseline_unigram']:.1f}" for r in runs
        )
        nsp = " / ".join(f"{r['final']['nsp_accuracy']:.3f}" for r in runs)
        seconds = " / ".join(f"{r['final']['train_seconds']:.0f}" for r in runs)
        passed = " / ".join(_passed(r) for r in runs)
        load = " / ".join(f"{r['load_average']:.1f}" if "load_average" in r else "–" for r in runs)
        code = " / ".join(sorted({made(r) for r in runs}))
        rows.append(f"| `{name}` | {about} | {mlm} | {ratio} | {passed} | {nsp} | {seconds} | {load} | {code} |")
    return "\n".join(rows)


def lever_table(report: dict) -> str:
    """Round 5's table: each run's held-out MLM at [MASK] over DRAWS fresh draws of masks, split by the hidden token."""
    previous = {r["seed"]: r for r in report["runs"] if r["variant"] == "previous_default"}
    rows = [
        f"| variant | seed | all (mean ± sd of {DRAWS} draws) | 100 most frequent tokens | the rest | "
        f"against previous_default: all / the rest | neighbour counting: all / the rest | passes neighbour "
        f"counting | seconds | code (commit, date) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ROUND5:
        for run in sorted(
            (r for r in report["runs"] if r["variant"] == name and "draws" in r), key=lambda r: r["seed"]
        ):
            (whole, whole_sd), (rest, rest_sd) = (
                draws_summary(run, key) for key in ("mlm_accuracy_at_mask", "mlm_accuracy_rest")
            )
            before = previous.get(run["seed"])
            delta = (
                "–"
                if before is None or name == "previous_default"
                else " / ".join(
                    f"{draws_summary(run, key)[0] - draws_summary(before, key)[0]:+.4f}"
                    for key in ("mlm_accuracy_at_mask", "mlm_accuracy_rest")
                )
            )
            counting = " / ".join(
                f"{draws_summary(run, key)[0]:.4f}" for key in ("baseline_neighbours", "baseline_neighbours_rest")
            )
            rows.append(
                f"| `{name}` | {run['seed']} | {whole:.4f} ± {whole_sd:.4f} | "
                f"{draws_summary(run, 'mlm_accuracy_frequent')[0]:.4f} | {rest:.4f} ± {rest_sd:.4f} | {delta} | "
                f"{counting} | {_passed(run)} | {run['final']['train_seconds']:.0f} | {made(run)} |"
            )
    return "\n".join(rows)


def plot_levers(report: dict, figure: Path) -> None:
    """Round 5: per lever and seed, held-out MLM at [MASK] over the draws (mean ± sd), all tokens and the rest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
    parts = (
        ("mlm_accuracy_at_mask", "all hidden tokens"),
        ("mlm_accuracy_frequent", "the 100 most frequent tokens"),
        ("mlm_accuracy_rest", "every other token"),
    )
    names = [name for name in LEVERS if any(r["variant"] == name for r in report["runs"])]
    for ax, (key, words) in zip(axes, parts):
        for offset, (seed, marker) in zip((-0.2, 0, 0.2), ((42, "o"), (43, "s"), (44, "^"))):
            runs = {r["variant"]: r for r in report["runs"] if r["seed"] == seed and "draws" in r}
            xs = [i + offset for i, name in enumerate(names) if name in runs]
            stats = [draws_summary(runs[name], key) for name in names if name in runs]
            ax.errorbar(
                xs, [m for m, _ in stats], yerr=[sd for _, sd in stats], fmt=marker, capsize=2, label=f"seed {seed}"
            )
            if "previous_default" in runs:
                ax.axhline(draws_summary(runs["previous_default"], key)[0], color="grey", linewidth=0.6, linestyle=":")
        ax.set_xticks(
            range(len(names)), [name.replace("_", " ") for name in names], rotation=30, ha="right", fontsize=8
        )
        ax.set_title(f"held-out MLM at [MASK]: {words}", fontsize=9)
    axes[0].set_ylabel(f"accuracy, mean ± sd over {DRAWS} draws of masks")
    axes[0].legend(fontsize=7)
    fig.suptitle(
        "Round 5: each lever alone on 12 epochs, then all together (round5_default), against the previous default "
        "(dotted: its value on each seed)",
        fontsize=10,
    )
    fig.savefig(figure, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names: " + ", ".join(VARIANTS))
    parser.add_argument(
        "--seeds", type=int, nargs="+", help="seeds for every chosen variant (default: each variant's own)"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--figure", type=Path, default=FIGURE, help=f"the curves (and {NSP_FIGURE.name} beside it)")
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure from --out")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at a time, each in its own process with cores/jobs torch threads"
    )
    parser.add_argument("--single", nargs=4, metavar=("VARIANT", "SEED", "THREADS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.single:
        name, seed, threads, out = args.single
        Path(out).write_text(json.dumps(run_variant(name, int(seed), int(threads))))
        return 0
    if not args.plot_only:
        names = args.variants.split(",")
        for name in names:
            if name not in VARIANTS:
                parser.error(f"unknown variant {name!r}: choose from {', '.join(VARIANTS)}")
        threads = max(1, (os.cpu_count() or 1) // args.jobs)
        todo = [(name, seed, threads) for name in names for seed in (args.seeds or VARIANTS[name][2])]
        with ThreadPoolExecutor(args.jobs) as pool:  # each thread waits on one run's process
            for run in pool.map(_run, todo):
                print(
                    f"{run['variant']} seed {run['seed']}: MLM@[MASK] {run['final']['mlm_accuracy_at_mask']:.3f}, "
                    f"NSP {run['final']['nsp_accuracy']:.3f}, {run['final']['train_seconds']:.0f} s",
                    flush=True,
                )
                merge([run], args.out)
    report = json.loads(args.out.read_text())
    plot(report, args.figure)
    if any(r["variant"] in NSP_LEVERS for r in report["runs"]):
        plot_nsp(report, args.figure.with_name(NSP_FIGURE.name))
    if any(r["variant"] in LEVERS and "draws" in r for r in report["runs"]):
        plot_levers(report, args.figure.with_name(LEVER_FIGURE.name))
    print(table(report))
    print(table(report, exploratory=True))
    print(lever_table(report))
    print(f"Wrote {args.out} and {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
