"""The three common changes, each made here by a test: a baseline, a masking rule, a profile.

Each test makes the change the way docs/engineering.md says to make it, and follows it to every place it must reach.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib import pyplot as plt

import helpers.baselines
from helpers.baselines import ACCURACIES, BASELINES, Accuracy, Baseline, MaskGuess, NeighbourGuess
from helpers.config import get_profile
from helpers.masking import IGNORE_INDEX, MaskingRule
from helpers.pairs import IS_NEXT
from helpers.tracking import Tracker
from helpers.train import train


class LeftNeighbourGuess(MaskGuess):
    """A toy baseline: the token seen most often right after the left neighbour."""

    def __init__(self, text):
        super().__init__(text)
        self.after = NeighbourGuess(text).after

    def guess(self, left: int, right: int) -> int:
        return self.after.get(left, self.top)


LEFT = Baseline(
    "left",
    "left neighbour",
    "guesses the token seen most often after the left neighbour",
    "mlm",
    "tab:green",
    "-.",
    count=LeftNeighbourGuess,
)


@pytest.fixture
def with_left_baseline(monkeypatch):
    """The change: one class (above) and one entry in the table."""
    monkeypatch.setattr(helpers.baselines, "BASELINES", (*BASELINES, LEFT))


def test_a_new_baseline_reaches_printout_metrics_card_wandb_plot_panel_and_curves(
    with_left_baseline, tmp_path, capsys, monkeypatch
):
    from benchmarks.learning import plot
    from helpers.app import validation_markdown
    from helpers.plots import plot_validation

    logged = []
    monkeypatch.setattr(Tracker, "log", lambda self, metrics, step: logged.append(metrics))
    result = train(get_profile("tiny", epochs=1, wandb="disabled"), tmp_path / "run", progress_bar=False, track=False)
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
    run = {
        "variant": "round4_default",
        "seed": 42,
        "baselines": result.baselines,
        "cpu": "test",
        "curve": result.epochs,
    }
    monkeypatch.setattr(plt, "close", lambda *args: None)  # keep benchmarks/learning.py's figure open to read it
    plot({"runs": [run]}, tmp_path / "curves.png")
    assert "left neighbour (42)" in [text.get_text() for text in plt.gcf().axes[0].texts]
    plt.close("all")


# A toy accuracy: NSP on the true pairs alone (a part of NSP's pairs, so its baselines' keys end in _true).
TRUE_PAIRS = Accuracy(
    "nsp_accuracy_true",
    "NSP accuracy on true pairs",
    "nsp",
    "**NSP accuracy on true pairs** counts the held-out pairs whose B is the next sentence.",
    lambda truth, frequent: truth == IS_NEXT,
    "true",
)


def test_a_new_accuracy_reaches_evaluate_printout_metrics_card_and_wandb(tmp_path, capsys, monkeypatch):
    """The change: one entry in ACCURACIES. evaluate measures it, the baselines stand beside it, everything shows it."""
    monkeypatch.setattr(helpers.baselines, "ACCURACIES", (*ACCURACIES, TRUE_PAIRS))
    logged = []
    monkeypatch.setattr(Tracker, "log", lambda self, metrics, step: logged.append(metrics))
    result = train(get_profile("tiny", epochs=1, wandb="disabled"), tmp_path / "run", progress_bar=False, track=False)
    value, overlap = result.final["nsp_accuracy_true"], result.baselines["baseline_word_overlap_true"]
    # Measured on the true half of the balanced pairs: right on the true half = accuracy - share answered random + 1/2.
    final = result.final
    assert value == pytest.approx(final["nsp_accuracy"] - final["nsp_answered_random"] + 0.5)
    printed = capsys.readouterr().out
    assert f"NSP accuracy on true pairs: word overlap {overlap:.3f}, chance 0.500" in printed  # before training
    assert f"NSP accuracy on true pairs {value:.3f} (word overlap {overlap:.3f}, chance 0.500)" in printed  # the end
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["beside_baselines"]["nsp_accuracy_true"] == {
        "value": value, "baselines": {"word overlap": overlap, "chance": 0.5}
    }  # fmt: skip
    card = (tmp_path / "run" / "README.md").read_text()
    assert f"| NSP accuracy on true pairs | {value:.4f} |" in card and TRUE_PAIRS.card in card
    assert any(step.get("val/nsp_accuracy_true") == value for step in logged)  # W&B, every epoch
    assert any(step.get("seen/nsp_accuracy_true") is not None for step in logged)  # and on seen pairs


@dataclass(frozen=True)
class SkipPunctuation(MaskingRule):
    """A toy masking rule: BERT's, but a punctuation token is never selected."""

    def collator(self, tokenizer, seed=None, pad_to_multiple_of=None):
        inner = super().collator(tokenizer, seed, pad_to_multiple_of)
        punctuation = _punctuation(tokenizer)

        def collate(features):
            batch = inner(features)
            dropped = (batch["labels"] != IGNORE_INDEX) & torch.isin(batch["labels"], punctuation)  # (batch, seq_len)
            batch["input_ids"][dropped] = batch["labels"][dropped]  # shown as itself, and not scored
            batch["labels"][dropped] = IGNORE_INDEX
            return batch

        return collate


def _punctuation(tokenizer) -> torch.Tensor:
    return torch.tensor([i for token, i in tokenizer.get_vocab().items() if len(token) == 1 and not token.isalnum()])


def _labelled_punctuation(batches, tokenizer) -> int:
    return sum(
        int(torch.isin(b["labels"][b["labels"] != IGNORE_INDEX], _punctuation(tokenizer)).sum()) for b in batches
    )


def test_a_new_masking_rule_reaches_training_batches_validation_masks_and_the_loop(monkeypatch, tmp_path):
    from helpers import dataset, masking
    from helpers.model import PretrainingModel

    cfg = get_profile("tiny", epochs=1, wandb="disabled")
    data = dataset.prepare_data(cfg)
    train_set = dataset.MeditationsDataset.from_pairs(data.tokenizer, data.train_pairs(cfg, 0), cfg.max_length)
    before = [
        list(dataset.make_loader(train_set, data.tokenizer, cfg, shuffle=True)),
        dataset.validation_batches(data, cfg),
    ]
    assert all(_labelled_punctuation(batches, data.tokenizer) > 10 for batches in before)  # so the check can fail
    # The change: a rule in masking.py, chosen by the config (here the test stands in for the config's new field).
    monkeypatch.setattr(
        dataset,
        "masking_rule",
        lambda cfg, validation=False: SkipPunctuation(**asdict(masking.masking_rule(cfg, validation))),
    )
    after = [
        list(dataset.make_loader(train_set, data.tokenizer, cfg, shuffle=True)),
        dataset.validation_batches(data, cfg),
    ]
    assert [_labelled_punctuation(batches, data.tokenizer) for batches in after] == [0, 0]
    seen = {"training": 0, "evaluation": 0}
    forward = PretrainingModel.forward

    def watched(self, *args, **kwargs):  # every batch the loop feeds the model, training and measuring alike
        assert _labelled_punctuation([kwargs], data.tokenizer) == 0
        seen["training" if self.training else "evaluation"] += 1
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(PretrainingModel, "forward", watched)
    train(cfg, tmp_path / "run", progress_bar=False, verbose=False, track=False)
    assert seen["training"] > 0 and seen["evaluation"] > 0


def test_a_new_profile_reaches_the_command_line_the_notebooks_and_a_run(monkeypatch, tmp_path, capsys):
    from helpers import config
    from helpers.config import notebook_config, parse_args

    # The change: one entry in PROFILES and one sentence in EXPECT, both in helpers/config.py.
    monkeypatch.setitem(config.PROFILES, "small", dict(config.PROFILES["tiny"], hidden_size=48, epochs=1))
    monkeypatch.setitem(config.EXPECT, "small", "a test's profile: seconds, and nothing learned.")
    assert config.get_profile("small").hidden_size == 48
    cfg, _ = parse_args(["--profile", "small", "--lr", "0.002"])  # the command line, its defaults the profile's
    assert (cfg.profile, cfg.hidden_size, cfg.lr) == ("small", 48, 0.002)
    with pytest.raises(SystemExit):
        parse_args(["--profile", "small", "--help"])
    assert "--profile {tiny,default,bert-base,small}" in capsys.readouterr().out
    monkeypatch.setenv("BERT_MEDITATIONS_PROFILE", "small")  # the notebooks' choice
    monkeypatch.delenv("BERT_MEDITATIONS_ARGS", raising=False)
    cfg, about = notebook_config()
    assert cfg.profile == "small" and "a test's profile" in about
    result = train(replace(cfg, wandb="disabled"), tmp_path / "run", progress_bar=False, verbose=False, track=False)
    assert json.loads((result.checkpoint / "profile.json").read_text())["profile"] == "small"
    assert "(profile `small`)" in (result.checkpoint / "README.md").read_text()
