"""The three common changes, each made here by a test: a baseline, a masking rule, a profile.

Each test makes the change the way docs/engineering.md says to make it, and follows it to every place it must reach.
"""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

import helpers.baselines  # noqa: E402
from helpers.baselines import BASELINES, Baseline, MaskGuess, NeighbourGuess  # noqa: E402
from helpers.config import get_profile  # noqa: E402
from helpers.tracking import Tracker  # noqa: E402
from helpers.train import train  # noqa: E402


class LeftNeighbourGuess(MaskGuess):
    """A toy baseline: the token seen most often right after the left neighbour."""

    def __init__(self, text):
        super().__init__(text)
        self.after = NeighbourGuess(text).after

    def guess(self, left: int, right: int) -> int:
        return self.after.get(left, self.top)


LEFT = Baseline("left", "left neighbour", "guesses the token seen most often after the left neighbour", "mlm",
                "tab:green", "-.", count=LeftNeighbourGuess)


@pytest.fixture
def with_left_baseline(monkeypatch):
    """The change: one class (above) and one entry in the table."""
    monkeypatch.setattr(helpers.baselines, "BASELINES", (*BASELINES, LEFT))


def test_a_new_baseline_reaches_printout_metrics_card_wandb_plot_panel_and_curves(with_left_baseline, tmp_path,
                                                                                  capsys, monkeypatch):
    from benchmarks.learning import plot
    from helpers.app import validation_markdown
    from helpers.plots import plot_validation
    logged = []
    monkeypatch.setattr(Tracker, "log", lambda self, metrics, step: logged.append(metrics))
    result = train(get_profile("tiny", epochs=1, wandb="disabled"), tmp_path / "run", progress=False, track=False)
    values = {part: result.baselines[f"baseline_left{part}"] for part in ("", "_frequent", "_rest")}  # counted, split
    assert values[""] == result.final["baseline_left"] and 0 < values[""] < 1
    printed = capsys.readouterr().out
    assert f"unigram {result.baselines['baseline_unigram']:.3f}, neighbour counting" in printed
    assert f"left neighbour {values['']:.3f}" in printed and f"left neighbour {values['_frequent']:.3f}" in printed
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["beside_baselines"]["mlm_accuracy_rest"]["baselines"]["left neighbour"] == values["_rest"]
    card = (tmp_path / "run" / "README.md").read_text()
    assert f"left neighbour {values['']:.4f} |" in card and "*left neighbour* guesses the token seen most" in card
    assert any(step.get("val/baseline_left") == values[""] for step in logged)  # W&B, beside every epoch
    assert f"left neighbour {values['']:.3f}" in validation_markdown(result.final)  # the demo's panel
    fig = plot_validation(result.epochs, result.baselines)
    drawn = {line.get_label(): line.get_linestyle() for line in fig.axes[0].lines}
    assert drawn[f"MLM baseline: left neighbour ({values['']:.3f})"] == "-."
    run = {"variant": "new_default", "seed": 42, "baselines": result.baselines, "cpu": "test",
           "curve": result.epochs}
    monkeypatch.setattr(plt, "close", lambda *args: None)  # keep benchmarks/learning.py's figure open to read it
    plot({"runs": [run]}, tmp_path / "curves.png")
    assert "left neighbour (42)" in [text.get_text() for text in plt.gcf().axes[0].texts]
    plt.close("all")
