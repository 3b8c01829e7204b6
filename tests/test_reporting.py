"""How a checkpoint's metrics are reported: each accuracy beside its baselines, in the model card and on the CLI."""

from __future__ import annotations

import json

import pytest

from helpers.checkpoint import read_json
from helpers.config import get_profile
from helpers.report import as_json, compared_accuracies, headline, model_card
from tests.app_fixtures import tiny_checkpoint  # noqa: F401 - a fixture

NEW = {
    "nsp_accuracy": 0.58,
    "mlm_accuracy_at_mask": 0.064,
    "mlm_loss": 6.25,
    "mlm_perplexity": 518.0,
    "nsp_loss": 0.69,
    "train_seconds": 12.5,
    "baseline_unigram": 0.054,
    "baseline_neighbours": 0.222,
    "baseline_context_counting": 0.26,
    "with_memory_mlm_accuracy_at_mask": 0.271,
    "baseline_word_overlap": 0.67,
}
OLD = {"nsp_accuracy": 0.61, "mlm_accuracy": 0.15, "mlm_loss": 6.5, "mlm_perplexity": 665.0, "nsp_loss": 0.69}


def test_each_accuracy_stands_beside_the_baselines_that_are_there():
    counting = [("unigram", 0.054), ("neighbour counting", 0.222), ("context counting", 0.26)]
    assert compared_accuracies(NEW) == [
        ("mlm_accuracy_at_mask", "MLM accuracy at [MASK]", 0.064, counting, 0.271),  # 0.271: with the memory
        ("nsp_accuracy", "NSP accuracy", 0.58, [("word overlap", 0.67), ("chance", 0.5)], None),
    ]
    # A run from before the baselines: what is there, and chance, which needs no run.
    assert compared_accuracies(OLD) == [("nsp_accuracy", "NSP accuracy", 0.61, [("chance", 0.5)], None)]
    assert compared_accuracies({}) == []


def test_the_training_printout_reads_each_accuracy_beside_its_baselines():
    assert headline(NEW) == (
        "Held-out MLM accuracy at [MASK] 0.064, with the memory 0.271 (unigram 0.054, neighbour counting 0.222, "
        "context counting 0.260); NSP accuracy 0.580 (word overlap 0.670, chance 0.500)"
    )


def test_every_place_pairs_the_same_figures(tiny_checkpoint):  # noqa: F811
    """metrics.json, the model card, make demo's lines and the demo's panel: one pairing, from helpers.report."""
    from helpers.app import validation_markdown
    from helpers.main import saved_metrics

    metrics = json.loads((tiny_checkpoint / "metrics.json").read_text())
    final = metrics["final"]
    assert metrics["beside_baselines"] == as_json(final)
    overlap = final["baseline_word_overlap"]
    assert metrics["beside_baselines"]["nsp_accuracy"]["baselines"] == {"word overlap": overlap, "chance": 0.5}
    assert f"word overlap {overlap:.4f} · chance 0.5000 |" in (tiny_checkpoint / "README.md").read_text()
    assert f"(baselines: word overlap {overlap:.4f}, chance 0.5000)" in saved_metrics(tiny_checkpoint)
    assert f"NSP accuracy {final['nsp_accuracy']:.3f} (word overlap {overlap:.3f}, chance 0.500)" in (
        validation_markdown(final)
    )


def test_model_card_says_what_each_accuracy_counts_with_its_baselines_beside_it():
    card = model_card(get_profile("tiny"), NEW)
    assert (
        "| MLM accuracy at [MASK] | 0.0640 | 0.2710 | unigram 0.0540 · neighbour counting 0.2220 · context counting "
        "0.2600 |"
    ) in card
    assert "| NSP accuracy | 0.5800 |  | word overlap 0.6700 · chance 0.5000 |" in card
    assert "| mlm_loss | 6.2500 | | |" in card and "| train_seconds | 12.5000 | | |" in card
    assert "| with_memory_mlm_accuracy_at_mask |" not in card  # in its own column, not on a row of its own
    assert "*With the memory*: the model's answer at each [MASK] mixed with the context-count table's" in card
    assert "| baseline_unigram |" not in card  # shown beside its accuracy, not again on a row of its own
    assert "with 15% of their tokens selected and every selected token replaced by [MASK]" in card
    assert "how often the verdict" in card and "share enough content words" in card and "coin flip" in card


def test_model_card_of_an_older_run_shows_what_is_there():
    card = model_card(get_profile("tiny"), OLD)
    assert "| NSP accuracy | 0.6100 |  | chance 0.5000 |" in card and "| mlm_accuracy | 0.1500 | | |" in card
    assert "MLM accuracy at [MASK]" not in card  # no sentence about a figure the run does not have


def test_a_trained_checkpoints_card_and_cli_show_its_own_figures(tiny_checkpoint):  # noqa: F811
    from helpers.main import saved_metrics

    final = json.loads((tiny_checkpoint / "metrics.json").read_text())["final"]
    card = (tiny_checkpoint / "README.md").read_text()
    assert (
        f"| NSP accuracy | {final['nsp_accuracy']:.4f} |  | word overlap {final['baseline_word_overlap']:.4f} · "
        f"chance 0.5000 |"
    ) in card
    printed = " ".join(saved_metrics(tiny_checkpoint).split())  # columns aligned with spaces: fold them
    assert "(profile 'tiny') is already trained" in printed
    assert (
        f"mlm_accuracy_at_mask {final['mlm_accuracy_at_mask']:.4f} (with the memory "
        f"{final['with_memory_mlm_accuracy_at_mask']:.4f}) (baselines: unigram {final['baseline_unigram']:.4f}, "
        f"neighbour counting {final['baseline_neighbours']:.4f}, context counting "
        f"{final['baseline_context_counting']:.4f})"
    ) in printed


def test_cli_metrics_of_an_older_run(tmp_path):
    from helpers.main import saved_metrics

    (tmp_path / "metrics.json").write_text(json.dumps({"final": OLD}))
    (tmp_path / "profile.json").write_text(json.dumps({"profile": "tiny"}))
    lines = saved_metrics(tmp_path).splitlines()[1:]
    assert lines[0].split() == ["nsp_accuracy", "0.6100", "(baselines:", "chance", "0.5000)"]
    assert [line.split()[0] for line in lines[1:]] == ["mlm_perplexity", "mlm_loss", "nsp_loss"]
    (tmp_path / "metrics.json").write_text("{cut sho")
    assert saved_metrics(tmp_path) == f"{tmp_path} holds a checkpoint without readable metrics.json/profile.json."


def test_read_json_gives_none_for_anything_but_an_object(tmp_path):
    path = tmp_path / "x.json"
    assert read_json(path) is None  # missing
    for text, expected in [('{"a": 1}', {"a": 1}), ("[1, 2]", None), ("{cut", None), ("", None)]:
        path.write_text(text)
        assert read_json(path) == expected


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda folder: (folder.mkdir(), (folder / "notes.txt").write_text("mine")),
            "{folder} holds files but no finished checkpoint; pass another --checkpoint folder, or empty this one to "
            "train there.",
        ),
        (lambda folder: folder.write_text("a file"), "--checkpoint {folder} is a file; pass a folder path."),
    ],
    ids=["other-files", "a-file"],
)
def test_main_refuses_a_folder_it_must_not_train_into(tmp_path, capsys, make, message):
    from helpers.main import main

    folder = tmp_path / "runs"
    make(folder)
    assert main(["--profile", "tiny", "--checkpoint", str(folder), "--no-serve"]) == 1
    assert capsys.readouterr().err == f"error: {message.format(folder=folder)}\n"
    assert not (folder.is_dir() and (folder / "checkpoint.json").exists())  # nothing was trained
