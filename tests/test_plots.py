"""The course's pictures, each drawn from small real data and read back from the figure it returns."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display: draw into memory

import numpy as np
import pytest
import torch
from matplotlib import pyplot as plt
from transformers import BertForPreTraining, set_seed

from helpers import plots
from helpers.dataset import MeditationsDataset, make_loader, padding_efficiency
from helpers.inference import pair_attentions
from helpers.masking import IGNORE_INDEX, MaskingRule
from helpers.model import scratch_config
from helpers.pairs import make_pairs


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def pairs(smart_sentences):
    return make_pairs({i: smart_sentences[i] for i in range(80)}, seed=0)


@pytest.fixture(scope="module")
def dataset(scratch_tokenizer, pairs):
    return MeditationsDataset.from_pairs(scratch_tokenizer, pairs, max_length=64)


# Per-epoch and per-step rows with the keys helpers.train.train writes (values are a run's, rounded).
EPOCHS = [
    {"epoch": 1, "step": 4, "seconds": 3.1, "nsp_accuracy": 0.50, "mlm_accuracy_at_mask": 0.004},
    {"epoch": 2, "step": 8, "seconds": 6.6, "nsp_accuracy": 0.55, "mlm_accuracy_at_mask": 0.031},
]
BASELINES = {"baseline_unigram": 0.055, "baseline_neighbours": 0.232, "baseline_word_overlap": 0.671}
HISTORY = [
    {
        "step": s,
        "epoch": s / 4,
        "loss": 7.6 - 0.1 * s,
        "mlm_loss": 6.9 - 0.1 * s,
        "nsp_loss": 0.7,
        "lr": 1e-3 * (s / 2 if s <= 2 else (8 - s) / 6),
    }
    for s in range(1, 9)
]


def test_validation_plot_draws_each_metric_and_each_baseline():
    fig = plots.plot_validation(EPOCHS, BASELINES, x="seconds", title="t")
    ax = fig.axes[0]
    solid = [line for line in ax.lines if line.get_linestyle() == "-"]
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert [list(line.get_xdata()) for line in solid] == [[3.1, 6.6]] * 2
    assert [list(line.get_ydata()) for line in solid] == [[0.004, 0.031], [0.50, 0.55]]
    assert sorted(line.get_ydata()[0] for line in dashed) == sorted(BASELINES.values())
    assert fig.axes[0].get_xlabel() == "training time (s)"
    assert plots.plot_validation(EPOCHS, BASELINES, x="epoch").axes[0].lines[0].get_xdata().tolist() == [1, 2]


def test_run_plot_puts_accuracies_and_losses_side_by_side():
    fig = plots.plot_run(EPOCHS, BASELINES, HISTORY, "recorded run")
    accuracies, losses = fig.axes
    assert len(accuracies.lines) == 2 + len(BASELINES) + 1  # two metrics, the baselines, NSP chance
    assert [line.get_label() for line in losses.lines] == ["loss", "mlm_loss", "nsp_loss"]
    assert losses.lines[1].get_ydata().tolist() == [row["mlm_loss"] for row in HISTORY]
    assert fig.get_suptitle() == "recorded run"


def test_lr_plot_marks_the_highest_learning_rate():
    fig = plots.plot_lr({"a": HISTORY, "b": HISTORY[:5]})
    assert len(fig.axes) == 2
    curve, warmup_end = fig.axes[0].lines
    assert curve.get_ydata().tolist() == [row["lr"] for row in HISTORY]
    assert warmup_end.get_xdata()[0] == 2  # the step with the highest learning rate
    assert warmup_end.get_label() == "highest learning rate (step 2)"


def test_lr_plot_of_a_real_schedule(scratch_tokenizer):
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=3, num_training_steps=10)
    history = []
    for step in range(1, 11):
        optimizer.step()
        scheduler.step()
        history.append({"step": step, "lr": scheduler.get_last_lr()[0]})
    assert plots.plot_lr({"run": history}).axes[0].lines[1].get_xdata()[0] == 3


def test_padding_image_shows_the_pad_share_of_the_loader(scratch_tokenizer, dataset, tiny_cfg):
    batches = list(make_loader(dataset, scratch_tokenizer, tiny_cfg, shuffle=True, seed=0))
    grid = plots.padding_grid(batches)
    assert grid.shape == (len(dataset), max(b["input_ids"].shape[1] for b in batches))
    assert np.nansum(grid == 0) / np.sum(~np.isnan(grid)) == pytest.approx(1 - padding_efficiency(batches))
    fig = plots.plot_padding({"plain": batches, "again": batches})
    assert len(fig.axes) == 2 and all(len(ax.images) == 1 for ax in fig.axes)
    shown = fig.axes[0].images[0].get_array()
    assert np.array_equal(np.isnan(shown), np.isnan(grid))
    assert f"{1 - padding_efficiency(batches):.1%}" in fig.axes[0].get_title()


def test_masked_batch_image_marks_exactly_the_masked_positions(scratch_tokenizer, dataset):
    batch = MaskingRule().collator(scratch_tokenizer, seed=0)([dataset[i] for i in range(6)])
    ids, labels = batch["input_ids"], batch["labels"]
    categories = plots.mask_categories(ids, labels, scratch_tokenizer)
    selected = labels != IGNORE_INDEX
    assert torch.equal(categories >= 3, selected)
    assert torch.equal(categories == 3, selected & (ids == scratch_tokenizer.mask_token_id))
    assert torch.equal(categories == 0, ids == scratch_tokenizer.pad_token_id)
    fig = plots.plot_masked_batch(ids, labels, scratch_tokenizer)
    image = np.asarray(fig.axes[0].images[0].get_array())
    assert image.shape[0] == len(ids)
    assert np.array_equal(image >= 3, selected[:, : image.shape[1]].numpy())
    n_tokens = int((categories[:, : image.shape[1]] != 0).sum())
    assert len(fig.axes[0].texts) == n_tokens  # one label per non-pad position
    assert fig.axes[0].texts[0].get_text() == "[CLS]"
    narrow = plots.plot_masked_batch(ids, labels, scratch_tokenizer, max_positions=10)
    assert np.asarray(narrow.axes[0].images[0].get_array()).shape == (len(ids), 10)


def test_hand_masked_positions_are_all_mask(scratch_tokenizer, dataset):
    ids = scratch_tokenizer.pad([dataset[i] for i in range(3)], return_tensors="pt")["input_ids"]
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, 2] = ids[:, 2]
    masked = ids.clone()
    masked[:, 2] = scratch_tokenizer.mask_token_id
    categories = plots.mask_categories(masked, labels, scratch_tokenizer)
    assert (categories[:, 2] == 3).all() and not (categories[:, 3:] >= 3).any()
    assert (categories[:, 0] == 1).all()  # [CLS]


def test_attention_needs_eager_and_comes_back_per_head(scratch_tokenizer, tiny_cfg):
    set_seed(0)
    model = BertForPreTraining(scratch_config(tiny_cfg, scratch_tokenizer)).eval()
    assert model.config._attn_implementation == "sdpa"
    tokens, attentions = pair_attentions(model, scratch_tokenizer, "A mere nothing.", "What then is that?")
    assert model.config._attn_implementation == "sdpa"  # switched back
    heads = tiny_cfg.num_attention_heads
    assert attentions.shape == (tiny_cfg.num_hidden_layers, heads, len(tokens), len(tokens))
    assert torch.allclose(attentions.sum(-1), torch.ones(1))  # each row is a softmax
    fig = plots.plot_attention(tokens, attentions)
    assert len(fig.axes) == heads
    assert np.allclose(fig.axes[1].images[0].get_array(), attentions[-1, 1].numpy())
    sep = tokens.index("[SEP]")
    assert tokens[0] == "[CLS]" and fig.axes[0].lines[0].get_xdata()[0] == sep + 0.5


def _attentions(layers: int, heads: int, length: int) -> tuple[list[str], torch.Tensor]:
    """Tokens of one pair ([SEP] after A and at the end) and random softmax rows, (layers, heads, length, length)."""
    tokens = ["[CLS]"] + [f"w{i}" for i in range(1, length // 2)] + ["[SEP]"]
    tokens += [f"v{i}" for i in range(length - len(tokens) - 1)] + ["[SEP]"]
    return tokens, torch.randn(layers, heads, length, length, generator=torch.Generator().manual_seed(0)).softmax(-1)


def test_attention_of_bert_base_fits_a_page_in_a_grid():
    tokens, attentions = _attentions(layers=12, heads=12, length=20)
    fig = plots.plot_attention(tokens, attentions, sep_token="[SEP]")
    width, height = fig.get_size_inches()
    assert width <= 16 and height <= 12, (width, height)  # one row of 5-inch panels was 60 inches wide
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == len(fig.axes) == 12
    assert len({round(ax.get_position().x0, 3) for ax in panels}) == 4  # four columns, three rows
    for head, ax in enumerate(panels):
        assert np.allclose(ax.images[0].get_array(), attentions[-1, head].numpy())
    assert [t.get_text() for t in panels[-1].get_xticklabels()] == tokens  # every token labelled on a short pair
    assert not any(t.get_text() for t in panels[0].get_xticklabels())  # ... on the bottom row only
    assert fig.get_suptitle().startswith("layer 11 (layers 0 to 11)")  # numbered as encoder.layer[i] is
    assert (
        plots.plot_attention(tokens, attentions, title="layer 0 before training")
        .get_suptitle()
        .startswith("layer 0 before training: ")
    )


def test_attention_can_show_some_heads_of_another_layer():
    tokens, attentions = _attentions(layers=3, heads=12, length=10)
    fig = plots.plot_attention(tokens, attentions, layer=0, heads=[2, 5])
    assert len(fig.axes) == 2 and fig.get_size_inches()[0] <= 16
    assert np.allclose(fig.axes[1].images[0].get_array(), attentions[0, 5].numpy())
    assert fig.axes[1].get_title().startswith("head 5 ")
    with pytest.raises(ValueError, match="layer=3 does not exist"):
        plots.plot_attention(tokens, attentions, layer=3)
    with pytest.raises(ValueError, match="between 0 and 11"):
        plots.plot_attention(tokens, attentions, heads=[12])


def test_attention_of_a_long_pair_drops_the_token_labels_and_says_so():
    tokens, attentions = _attentions(layers=1, heads=2, length=61)
    ax = plots.plot_attention(tokens, attentions).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["[SEP]", "[SEP]"]
    assert "61 tokens, only [SEP] labelled" in ax.get_xlabel()


# Epoch rows of a run that measured its training pairs every epoch: the training curve falls below the held-out one.
SEEN_EPOCHS = [dict(row, mlm_loss=loss, seen_mlm_loss=seen) for row, loss, seen in zip(EPOCHS, (6.5, 6.2), (6.45, 5.6))]


def test_generalisation_plot_sets_the_same_mask_curves_beside_the_per_step_loss():
    fig = plots.plot_generalisation(SEEN_EPOCHS, HISTORY, title="t")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    steps, seen, held_out = ax.lines
    assert steps.get_xdata().tolist() == [row["epoch"] for row in HISTORY]  # fractional epochs, one per step
    assert steps.get_ydata().tolist() == [row["mlm_loss"] for row in HISTORY]
    assert steps.get_linewidth() < seen.get_linewidth() and steps.get_alpha() < 1  # thin and faint
    assert seen.get_xdata().tolist() == held_out.get_xdata().tolist() == [1, 2]
    assert seen.get_ydata().tolist() == [6.45, 5.6] and held_out.get_ydata().tolist() == [6.5, 6.2]
    assert seen.get_marker() != "None" and held_out.get_marker() != "None"
    assert "own training masks" in steps.get_label() and "same fixed masks" in held_out.get_label()
    assert ax.get_ylabel() == "MLM cross-entropy (nats)" and ax.get_xlabel() == "epoch"
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 4  # the figure's legend, below the axes


def test_generalisation_plot_of_an_older_run_says_what_is_missing():
    with pytest.raises(ValueError, match="no 'seen_mlm_loss'.*pass the rows"):
        plots.plot_generalisation(EPOCHS, HISTORY)


def test_record_and_live_labels():
    record = {"profile": {"profile": "default"}, "machine": {"cpu": "Xeon", "cores": 2, "date": "2026-11-28"}}
    record["code_version"] = "abc1234"
    assert plots.record_label(record) == "recorded run: profile default, commit abc1234, Xeon (2 cores), 2026-11-28"
    assert plots.live_label("tiny") == "live run in this notebook: profile tiny"


def test_lengths_histogram_counts_every_pair():
    fig = plots.plot_lengths([10, 20, 20, 300], max_length=256)
    ax = fig.axes[0]
    assert sum(patch.get_height() for patch in ax.patches) == 4
    assert ax.lines[0].get_xdata()[0] == 256


# A run's rows split by the hidden token, as helpers.train.train writes them, and the baselines on the same split.
KIND_EPOCHS = [
    dict(row, mlm_accuracy_frequent=f, mlm_accuracy_rest=r) for row, f, r in zip(EPOCHS, (0.20, 0.36), (0.00, 0.05))
]
KIND_BASELINES = dict(
    BASELINES,
    baseline_unigram_frequent=0.091,
    baseline_unigram_rest=0.0,
    baseline_neighbours_frequent=0.314,
    baseline_neighbours_rest=0.084,
)


def test_by_kind_plot_sets_each_part_beside_its_own_baselines():
    fig = plots.plot_by_kind(KIND_EPOCHS, KIND_BASELINES, title="t")
    frequent, rest = fig.axes
    assert "100 most frequent" in frequent.get_title() and "other tokens" in rest.get_title()
    for ax, part in ((frequent, "frequent"), (rest, "rest")):
        model, *dashed = ax.lines
        assert model.get_xdata().tolist() == [1, 2]
        assert model.get_ydata().tolist() == [row[f"mlm_accuracy_{part}"] for row in KIND_EPOCHS]
        assert sorted(line.get_ydata()[0] for line in dashed) == sorted(
            KIND_BASELINES[f"baseline_{name}_{part}"] for name in ("unigram", "neighbours")
        )
        assert all(line.get_linestyle() == "--" for line in dashed)
    with pytest.raises(ValueError, match="no MLM accuracy split by the hidden token"):
        plots.plot_by_kind(EPOCHS, BASELINES)


def test_the_by_kind_plot_draws_the_model_with_its_memory_when_the_run_measured_it():
    rows = [dict(row, with_memory_mlm_accuracy_frequent=0.5, with_memory_mlm_accuracy_rest=0.2) for row in KIND_EPOCHS]
    for ax, value in zip(plots.plot_by_kind(rows, KIND_BASELINES).axes, (0.5, 0.2)):
        dotted = [line for line in ax.lines if line.get_label() == "the model, with the memory"]
        assert len(dotted) == 1 and dotted[0].get_ydata().tolist() == [value, value]
    assert not any("memory" in line.get_label() for ax in plots.plot_by_kind(KIND_EPOCHS, KIND_BASELINES).axes
                   for line in ax.lines)  # fmt: skip
    plt.close("all")


def test_perplexity_plot_is_exp_of_both_losses_with_the_held_out_low_marked():
    epochs = [
        dict(EPOCHS[0], epoch=e, mlm_loss=loss, seen_mlm_loss=seen)
        for e, loss, seen in ((1, 5.8, 5.4), (2, 5.0, 3.9), (3, 5.1, 2.0))
    ]
    ax = plots.plot_perplexity(epochs, title="t").axes[0]
    seen, held_out, low = ax.lines
    assert seen.get_ydata() == pytest.approx([np.exp(5.4), np.exp(3.9), np.exp(2.0)])
    assert held_out.get_ydata() == pytest.approx([np.exp(5.8), np.exp(5.0), np.exp(5.1)])
    assert low.get_xdata()[0] == 2 and "epoch 2 (148)" in low.get_label()  # exp(5.0) = 148.4
    assert ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="no 'seen_mlm_loss'"):
        plots.plot_perplexity(EPOCHS)


def test_attention_before_and_after_puts_the_same_heads_in_two_rows():
    tokens, attentions = _attentions(layers=2, heads=2, length=10)
    fig = plots.plot_attention_before_after(tokens, attentions[0], attentions[1], title="layer 0")
    assert len(fig.axes) == 4
    for index, ax in enumerate(fig.axes):
        when, head = divmod(index, 2)
        assert np.allclose(ax.images[0].get_array(), attentions[when, head].numpy())
        assert ax.get_title().startswith(f"{('before', 'after')[when]} training, head {head} ")
    assert fig.get_suptitle().startswith("layer 0: ")
    with pytest.raises(ValueError, match="must both be one layer's"):
        plots.plot_attention_before_after(tokens, attentions[0], attentions[1, :1])


def test_logged_panels_draw_each_key_at_the_steps_that_logged_it():
    import pandas as pd

    history = pd.DataFrame(
        {"train/loss": [5.0, 4.0, 3.0, 2.5], "val/accuracy": [None, 0.1, None, 0.2]},
        index=pd.Index([10, 20, 30, 40], name="_step"),
    )
    fig = plots.plot_logged(history, ["train/loss", "val/accuracy"], columns=3, title="t")
    loss, accuracy, unused = fig.axes
    assert loss.lines[0].get_xdata().tolist() == [10, 20, 30, 40] and loss.get_title() == "train/loss"
    assert accuracy.lines[0].get_xdata().tolist() == [20, 40] and accuracy.lines[0].get_ydata().tolist() == [0.1, 0.2]
    assert not unused.get_visible() and loss.get_xlabel() == "Step"
    with pytest.raises(ValueError, match="The run logged no val/nsp"):
        plots.plot_logged(history, ["val/nsp"])


def test_the_validation_plot_draws_the_model_with_its_memory_when_the_run_measured_it():
    rows = [dict(row, with_memory_mlm_accuracy_at_mask=0.3) for row in EPOCHS]
    labels = [line.get_label() for line in plots.plot_validation(rows, BASELINES).axes[0].lines]
    assert "MLM accuracy at [MASK], with the memory" in labels
    labels = [line.get_label() for line in plots.plot_validation(EPOCHS, BASELINES).axes[0].lines]
    assert not any("with the memory" in label for label in labels)  # a run without it draws no such line
    plt.close("all")


def test_input_embeddings_sums_a_token_a_segment_and_a_position_row_per_token():
    tokens, segments = ["[CLS]", "look", "[SEP]", "but", "[SEP]"], [0, 0, 0, 1, 1]
    fig = plots.plot_input_embeddings(tokens, segments)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert tokens == [t for t in texts if t in tokens][: len(tokens)]  # the input row, in order
    assert "E[look]" in texts and "E[CLS]" in texts and texts.count("$E_A$") == 3 and texts.count("$E_B$") == 2
    assert [t for t in texts if t.startswith("$E_{")] == [f"$E_{{{i}}}$" for i in range(len(tokens))]
    assert texts.count("+") == 2 * len(tokens)  # segment + and position + under every token
    assert len(fig.axes[0].patches) == len(plots.INPUT_ROWS) * len(tokens)
    with pytest.raises(ValueError, match="one per token"):
        plots.plot_input_embeddings(tokens, segments[:2])


def test_masked_tokens_writes_each_scored_label_under_what_the_model_reads(scratch_tokenizer):
    tokenizer = scratch_tokenizer
    ids = torch.tensor([tokenizer.convert_tokens_to_ids(["[CLS]", "the", "[MASK]", "of", "[SEP]", "[PAD]"])])
    labels = torch.full_like(ids, IGNORE_INDEX)  # (1, 6): only position 2 is scored
    labels[0, 2] = tokenizer.convert_tokens_to_ids("the")
    fig = plots.plot_masked_tokens(ids, labels, tokenizer)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["[CLS]", "the", "[MASK]\nthe", "of", "[SEP]"]  # [PAD] left blank
    assert fig.axes[0].images[0].get_array().shape == (1, 6)
    first_three = plots.plot_masked_tokens(ids, labels, tokenizer, max_positions=3)
    assert first_three.axes[0].images[0].get_array().shape == (1, 3)


def test_the_queue_plot_puts_each_request_at_the_call_that_answered_it():
    calls, refused = [[1], [2, 3, 4, 5], [6, 7]], [8]  # requests numbered from 1, as sent
    ax = plots.plot_queue(calls, refused, 8, ranks={r: r - 2 for r in range(2, 8)}).axes[0]
    squares = {int(line.get_ydata()[0]): int(line.get_xdata()[0]) for line in ax.lines if line.get_marker() == "s"}
    assert squares == {1: 1, 2: 2, 3: 2, 4: 2, 5: 2, 6: 3, 7: 3}
    crosses = [(line.get_xdata()[0], line.get_ydata()[0]) for line in ax.lines if line.get_marker() == "x"]
    assert crosses == [(0, 8)]
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"request {n}" for n in range(1, 9)]
    texts = [t.get_text() for t in ax.texts]
    assert "turned away: the queue is full" in texts and "queue rank 0" in texts and "queue rank 5" in texts
    assert [t.get_text() for t in ax.get_xticklabels()] == ["sent", "call 1\n1 request", "call 2\n4 requests",
                                                            "call 3\n2 requests"]  # fmt: skip


@pytest.mark.parametrize(
    "calls, refused", [([[1], [2]], [2]), ([[1], [1]], []), ([[1]], [])], ids=["both", "twice", "missing"]
)
def test_the_queue_plot_wants_each_request_once(calls, refused):
    with pytest.raises(ValueError, match="exactly once"):
        plots.plot_queue(calls, refused, 2)


def test_masked_batch_titles_the_picture_and_lists_only_what_it_holds(scratch_tokenizer):
    tokenizer = scratch_tokenizer
    ids = torch.tensor([tokenizer.convert_tokens_to_ids(["[CLS]", "the", "[MASK]", "of", "[SEP]", "[PAD]"])])
    labels = torch.full_like(ids, IGNORE_INDEX)  # (1, 6): only position 2 is scored
    labels[0, 2] = tokenizer.convert_tokens_to_ids("the")
    fig = plots.plot_training_batch(ids, labels, tokenizer, title="one pair")
    assert fig.axes[0].get_title() == "one pair"
    (legend,) = fig.legends
    names = [text.get_text() for text in legend.get_texts()]
    assert names == ["[PAD]", "[CLS] / [SEP] (never selected)", "not selected", plots.MASK_CATEGORIES[3]]
    first_two = plots.plot_training_batch(ids, labels, tokenizer, max_positions=2)  # [CLS] and "the" only
    assert [t.get_text() for t in first_two.legends[0].get_texts()] == [
        "[CLS] / [SEP] (never selected)",
        "not selected",
    ]
