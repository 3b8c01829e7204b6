"""The benchmark's machinery on its quick setting: every field present, ratios sane, padding accounted for."""

import json
import math
import os
import subprocess
import sys

import pytest

from helpers.config import ROOT
from helpers.parts import LOOP_PARTS

pytestmark = pytest.mark.slow

PATH_FIELDS = {
    "status",
    "description",
    "pairs_per_s",
    "tokens_per_s",
    "seconds_per_step",
    "padding_efficiency",
    "pairs",
    "real_tokens",
    "positions",
    "loss_positions",
    "steps",
    "warmup_steps",
    "repeats",
    "warmup_seconds",
    "peak_rss_mb",
    "rss_before_mb",
    "cuda_peak_mb",
    "cpu_utilisation",
    "torch_threads",
    "attn_implementation",
    "n_parameters",
    "final_loss",
    "runs",
}
SPREAD_FIELDS = {"median", "min", "max", "runs"}


def positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One quick run (tiny model, 2 steps, 1 repeat, max_length 128) in a subprocess; its JSON."""
    out = tmp_path_factory.mktemp("bench") / "results.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "| tiny | fast |" in done.stdout  # the table is printed
    return json.loads(out.read_text())


def test_top_level_fields(report):
    for key in (
        "schema",
        "command",
        "date",
        "code_version",
        "machine",
        "loadavg_before",
        "loadavg_after",
        "wall_seconds",
        "settings",
        "sizes",
        "ablation",
        "inference",
        "targets",
    ):
        assert key in report, key
    machine = report["machine"]
    for key in ("device", "cpu", "cores", "usable_cores", "torch_threads", "torch", "transformers", "date"):
        assert key in machine, key
    assert len(report["loadavg_before"]) == 3 and len(report["loadavg_after"]) == 3
    settings = report["settings"]
    assert settings["quick"] is True and settings["batch_size"] == 16 and settings["vocab_size"] == 30522
    assert settings["sizes"] == ["tiny"]


def test_every_path_measured_with_every_field(report):
    paths = report["sizes"]["tiny"]["paths"]
    assert set(paths) == {"reference", "fast", "dynamic_padding", "dynamic_padding_bucketing", "fast_eager_attention"}
    for name, path in paths.items():
        assert path["status"] == "measured", (name, path.get("error"))
        assert PATH_FIELDS <= set(path), (name, PATH_FIELDS - set(path))
        for key in ("pairs_per_s", "tokens_per_s", "peak_rss_mb"):
            assert SPREAD_FIELDS <= set(path[key])
            assert positive(path[key]["median"]) and path[key]["min"] <= path[key]["median"] <= path[key]["max"]
        assert path["steps"] == 2 and path["repeats"] == 1
        assert 0 < path["padding_efficiency"] <= 1
        # Same model on every path: only batching and the loss differ.
        assert path["n_parameters"] == paths["reference"]["n_parameters"]
        # Each timed step is a real optimizer step on 16 pairs (the corpus gives far more than 32 pairs).
        assert path["pairs"] == 2 * 16 and len(path["runs"][0]["step_seconds"]) == 2
        assert math.isfinite(path["final_loss"][0])


def test_speedup_is_a_positive_ratio_of_the_medians(report):
    result = report["sizes"]["tiny"]
    ratio = result["speedup_fast_vs_reference"]
    assert positive(ratio["pairs_per_s"]) and positive(ratio["tokens_per_s"])
    paths = result["paths"]
    assert ratio["pairs_per_s"] == pytest.approx(
        paths["fast"]["pairs_per_s"]["median"] / paths["reference"]["pairs_per_s"]["median"]
    )
    for stage in report["ablation"]["stages"]:
        assert positive(stage["speedup_vs_reference"]) and positive(stage["pairs_per_s"])


def test_padding_efficiency(report):
    paths = report["sizes"]["tiny"]["paths"]
    ref, fast = paths["reference"], paths["fast"]
    max_length = report["settings"]["max_length"]
    # The reference pads every pair to max_length: efficiency = real tokens / (pairs x max_length).
    assert ref["positions"] == ref["pairs"] * max_length
    assert ref["padding_efficiency"] == pytest.approx(ref["real_tokens"] / (ref["pairs"] * max_length))
    assert fast["padding_efficiency"] > ref["padding_efficiency"]
    # Bucketing pads less than padding to the longest pair of a random batch.
    assert fast["padding_efficiency"] >= paths["dynamic_padding"]["padding_efficiency"]
    # The reference's loss covers every position (PAD included); the fast path's only the masked ~15%.
    assert ref["loss_positions"] == ref["positions"]
    assert 0 < fast["loss_positions"] < 0.3 * fast["real_tokens"]
    assert report["targets"]["padding_efficiency"]["fast"]["tiny"] == fast["padding_efficiency"]


def test_ablation_and_notes(report):
    ablation = report["ablation"]
    assert [s["variant"] for s in ablation["stages"]] == [
        "reference",
        "dynamic_padding",
        "dynamic_padding_bucketing",
        "fast",
    ]
    assert ablation["torch_compile"]["status"] == "skipped" and ablation["torch_compile"]["recommendation"] == "off"
    assert (
        ablation["pad_to_multiple_of_8"]["measured"] is False
        and "mixed precision" in ablation["pad_to_multiple_of_8"]["note"]
    )
    assert positive(ablation["sdpa_vs_eager_attention"]["pairs_per_s"])


def test_inference_latency(report):
    latency = report["inference"]["tiny"]
    assert latency["calls"] == 5
    for method in ("predict_nsp", "fill_mask"):
        assert positive(latency[method]["p50_ms"]) and latency[method]["p50_ms"] <= latency[method]["p95_ms"]
    # What the memory adds to the demo's fill-mask request (the two timed call by call, alternating): a ratio, measured
    # on the default profile's shape and vocabulary; no threshold here (machines are shared and noisy).
    memory = report["inference"]["memory"]
    assert memory["calls"] == 10 and memory["vocabulary"] > 1000
    assert memory["added"] == pytest.approx(memory["with_memory"]["p50_ms"] / memory["model_alone"]["p50_ms"] - 1)


def test_bad_option_is_one_clear_sentence():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--sizes", "huge", "--out", os.devnull],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "unknown size 'huge'" in done.stderr


def test_time_to_quality_compares_both_defaults_and_times_every_part(report):
    ttq = report["time_to_quality"]
    assert ttq["compared"] == {"previous": "previous_default", "today": "default"} and ttq["repeats"] == 1
    for label in ("previous", "today"):
        run = ttq["runs"][label][0]
        assert "error" not in run, run.get("error")
        assert run["variant"] == ttq["compared"][label] and run["epochs"] == 1 and positive(run["train_seconds"])
        parts = run["parts"]
        # Every part the loop marks, each timed (a forward pass inside the measurement counts as measurement).
        for part in LOOP_PARTS:
            assert parts.get(part, 0) > 0, (part, parts)
        assert sum(parts.values()) == pytest.approx(run["wall_seconds"])
        assert run["peak"] >= run["final"] > 0 and run["curve"][-1]["mlm_accuracy_at_mask"] == run["final"]
    assert set(ttq["median"]) == {"previous", "today"} and "train_seconds" in ttq["today_over_previous"]
    flops = report["flop_use"]
    assert positive(flops["gflop_per_step"]) and positive(flops["matmul_peak_gflops"])
    assert 0 < flops["share_of_peak"] < 1.5, flops  # counted matmul work over time, against this machine's own peak
