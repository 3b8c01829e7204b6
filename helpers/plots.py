"""Pictures of the course: each function draws real data from the helpers, never typed-in numbers.

Every ``plot_*`` function returns the matplotlib ``Figure`` it drew, so a test can read back what is on it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from transformers import PreTrainedTokenizerBase

from helpers import baselines as tables  # its tables are read at each call: an entry added later is seen
from helpers.baselines import WITH_MEMORY, named
from helpers.masking import IGNORE_INDEX
from helpers.report import MEMORY_WORDS, baselines_beside, first_above

# The colour of each task's accuracy curve; its baselines are drawn in the style helpers.baselines gives them.
TASK_COLOURS = {"mlm": "tab:blue", "nsp": "tab:orange"}
LOSS_LINES = {"loss": "tab:gray", "mlm_loss": "tab:blue", "nsp_loss": "tab:orange"}
# The fate of each position of a masked batch, in the order of the colour map below.
MASK_CATEGORIES = (
    "[PAD]",
    "other special token",
    "not selected",
    "selected → [MASK]",
    "selected → random token",
    "selected → unchanged",
)
MASK_COLOURS = ("white", "lightgray", "whitesmoke", "tab:red", "tab:orange", "gold")


def record_label(record: Mapping[str, Any]) -> str:
    """'recorded run: profile default, commit <sha>, <cpu> (<cores> cores), <date>' for a helpers.record record."""
    machine = record.get("machine", {})
    return (
        f"recorded run: profile {record['profile']['profile']}, commit {record.get('code_version', 'unknown')}, "
        f"{machine.get('cpu', 'unknown CPU')} ({machine.get('cores', '?')} cores), {machine.get('date', 'undated')}"
    )


def live_label(profile: str) -> str:
    """The caption of a run made in the notebook itself."""
    return f"live run in this notebook: profile {profile}"


def plot_validation(
    epochs: Sequence[Mapping[str, float]],
    baselines: Mapping[str, float],
    x: str = "seconds",
    title: str = "",
    ax: plt.Axes | None = None,
) -> Figure:
    """Held-out accuracies per epoch against ``x`` ('seconds' or 'epoch'), the baselines as dashed lines."""
    fig, ax = _figure(ax, (7, 3.5))
    xs = [row[x] for row in epochs]
    for accuracy in (
        a for a in tables.ACCURACIES if a.part is None
    ):  # the whole accuracies; their split is in the tables
        ax.plot(
            xs,
            [row[accuracy.key] for row in epochs],
            marker="o",
            markersize=3,
            color=TASK_COLOURS[accuracy.task],
            label=accuracy.words,
        )
        remembered = [row.get(WITH_MEMORY + accuracy.key) for row in epochs]
        if all(isinstance(value, float) for value in remembered):  # the model with its memory beside it
            ax.plot(xs, remembered, marker="o", markersize=3, color=TASK_COLOURS[accuracy.task], linestyle=":",
                    alpha=0.8, label=f"{accuracy.words}, {MEMORY_WORDS}")  # fmt: skip
        for baseline, value in baselines_beside(accuracy, baselines):
            ax.axhline(
                value,
                color=baseline.colour,
                linestyle=baseline.linestyle,
                linewidth=1,
                label=f"{accuracy.task.upper()} baseline: {baseline.words} ({value:.3f})",
            )
    # Time to quality: the first epoch whose held-out MLM accuracy beats neighbour counting.
    passed = first_above(epochs, baselines)
    if passed is not None:
        unit = " s" if x == "seconds" else ""
        ax.axvline(
            passed[x],
            color="grey",
            linewidth=0.8,
            label=f"MLM passes {named('neighbours').words} ({passed[x]:.0f}{unit})",
        )
    ax.set_xlabel({"seconds": "training time (s)", "epoch": "epoch"}.get(x, x))
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def plot_losses(history: Sequence[Mapping[str, float]], title: str = "", ax: plt.Axes | None = None) -> Figure:
    """The training losses of every optimizer step (``TrainResult.history`` rows)."""
    fig, ax = _figure(ax, (7, 3.5))
    steps = [row["step"] for row in history]
    for key, colour in LOSS_LINES.items():
        ax.plot(steps, [row[key] for row in history], color=colour, linewidth=0.8, label=key)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return fig


def plot_run(
    epochs: Sequence[Mapping[str, float]],
    baselines: Mapping[str, float],
    history: Sequence[Mapping[str, float]],
    title: str,
) -> Figure:
    """One run side by side: held-out accuracies per epoch (with baselines), and the per-step training losses."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 3.8), layout="constrained")
    plot_validation(epochs, baselines, title="held-out accuracy per epoch", ax=left)
    plot_losses(history, title="training losses per step", ax=right)
    fig.suptitle(title)
    return fig


def plot_generalisation(
    epochs: Sequence[Mapping[str, float]], history: Sequence[Mapping[str, float]], title: str = ""
) -> Figure:
    """MLM loss per step (faint), and per epoch on training and held-out pairs under the same fixed masks."""
    if not epochs or any("seen_mlm_loss" not in row for row in epochs):
        raise ValueError(
            "The epoch rows have no 'seen_mlm_loss' (the MLM loss on training pairs that every epoch "
            "of helpers.train.train measures); pass the rows of such a run."
        )
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    # Each step's loss is on that step's own masks (the training masking rate), so it sits apart from the two curves.
    ax.plot(
        [row["epoch"] for row in history],
        [row["mlm_loss"] for row in history],
        color="tab:gray",
        alpha=0.5,
        linewidth=0.6,
        label="each training step, on that step's own training masks",
    )
    xs = [row["epoch"] for row in epochs]
    seen, held_out = [row["seen_mlm_loss"] for row in epochs], [row["mlm_loss"] for row in epochs]
    ax.plot(
        xs, seen, color="tab:blue", marker="o", markersize=4, label="training pairs, fixed validation masks (per epoch)"
    )
    ax.plot(
        xs,
        held_out,
        color="tab:red",
        marker="s",
        markersize=4,
        label="held-out pairs, the same fixed masks (per epoch)",
    )
    # Same masks, same number of pairs: what separates the two curves is whether the model saw the text.
    ax.fill_between(
        xs,
        seen,
        held_out,
        color="tab:red",
        alpha=0.12,
        linewidth=0,
        label="gap between them: memorised, not generalised",
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("MLM cross-entropy (nats)")
    ax.set_title(title, fontsize=9)
    fig.legend(loc="outside lower center", ncols=2, fontsize=7)
    return fig


def plot_by_kind(epochs: Sequence[Mapping[str, float]], baselines: Mapping[str, float], title: str = "") -> Figure:
    """Held-out MLM accuracy at [MASK] per epoch, one panel per part of the split (with the memory dotted, where the
    run measured it), its baselines dashed beside it."""
    parts = [a for a in tables.ACCURACIES if a.task == "mlm" and a.part is not None]
    if not epochs or any(a.key not in row for a in parts for row in epochs):
        raise ValueError(
            "The epoch rows have no MLM accuracy split by the hidden token ('mlm_accuracy_frequent', "
            "'mlm_accuracy_rest', which helpers.train.train measures); pass the rows of such a run."
        )
    fig, axes = plt.subplots(1, len(parts), figsize=(6 * len(parts), 3.6), layout="constrained", sharey=True)
    xs = [row["epoch"] for row in epochs]
    for ax, accuracy in zip(axes, parts):
        ax.plot(
            xs,
            [row[accuracy.key] for row in epochs],
            marker="o",
            markersize=3,
            color=TASK_COLOURS["mlm"],
            label="the model, held out",
        )
        remembered = [row.get(WITH_MEMORY + accuracy.key) for row in epochs]
        if all(isinstance(value, float) for value in remembered):  # the model with its memory beside it, dotted
            ax.plot(xs, remembered, marker="s", markersize=3, color=TASK_COLOURS["mlm"], linestyle=":", alpha=0.8,
                    label=f"the model, {MEMORY_WORDS}")  # fmt: skip
        for baseline, value in baselines_beside(accuracy, baselines):
            ax.axhline(
                value,
                color=baseline.colour,
                linestyle=baseline.linestyle,
                linewidth=1,
                label=f"{baseline.words} ({value:.3f})",
            )
        ax.set_title(accuracy.words, fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    axes[0].set_ylabel("held-out accuracy at [MASK]")
    fig.suptitle(title, fontsize=10)
    return fig


def plot_perplexity(epochs: Sequence[Mapping[str, float]], title: str = "") -> Figure:
    """MLM perplexity per epoch on held-out and on training pairs (same fixed masks), the held-out low marked."""
    if not epochs or any("seen_mlm_loss" not in row for row in epochs):
        raise ValueError(
            "The epoch rows have no 'seen_mlm_loss' (the MLM loss on training pairs that every epoch "
            "of helpers.train.train measures); pass the rows of such a run."
        )
    fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
    xs = [row["epoch"] for row in epochs]
    held_out = [float(np.exp(row["mlm_loss"])) for row in epochs]  # perplexity = exp(cross-entropy)
    seen = [float(np.exp(row["seen_mlm_loss"])) for row in epochs]
    ax.plot(xs, seen, color="tab:blue", marker="o", markersize=4, label="training pairs (seen text)")
    ax.plot(xs, held_out, color="tab:red", marker="s", markersize=4, label="held-out pairs")
    lowest = int(np.argmin(held_out))
    ax.axvline(
        xs[lowest],
        color="grey",
        linestyle=":",
        linewidth=1,
        label=f"held-out lowest: epoch {xs[lowest]} ({held_out[lowest]:.0f})",
    )
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("MLM perplexity, exp(loss) (log scale)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return fig


def plot_lr(histories: Mapping[str, Sequence[Mapping[str, float]]]) -> Figure:
    """The learning rate of every step, one panel per run, with its highest value (the end of any warm-up) marked."""
    fig, axes = plt.subplots(1, len(histories), figsize=(6 * len(histories), 3), layout="constrained", squeeze=False)
    for ax, (name, history) in zip(axes[0], histories.items()):
        steps, lrs = [row["step"] for row in history], [row["lr"] for row in history]
        peak = steps[int(np.argmax(lrs))]
        ax.plot(steps, lrs, color="tab:purple")
        ax.axvline(peak, color="gray", linestyle="--", linewidth=1, label=f"highest learning rate (step {peak})")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("learning rate")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    return fig


def plot_lengths(lengths: Sequence[int], max_length: int = 256) -> Figure:
    """A histogram of pair lengths in tokens, with the padded length as a dashed line."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.hist(list(lengths), bins=40, color="tab:blue")
    ax.axvline(max_length, color="tab:red", linestyle="--", label=f"max_length = {max_length}")
    ax.set_xlabel("tokens per pair ([CLS] A [SEP] B [SEP])")
    ax.set_ylabel("pairs")
    ax.legend()
    return fig


def padding_grid(batches: Sequence[Mapping[str, torch.Tensor]]) -> np.ndarray:
    """Pairs x positions, batch after batch: 1 = real token, 0 = [PAD], NaN = past the batch's padded length."""
    width = max(batch["attention_mask"].shape[1] for batch in batches)
    rows = []
    for batch in batches:
        mask = batch["attention_mask"].float().numpy()  # (batch, batch's seq_len)
        rows.append(np.pad(mask, ((0, 0), (0, width - mask.shape[1])), constant_values=np.nan))
    return np.concatenate(rows)


def plot_padding(loaders: Mapping[str, Sequence[Mapping[str, torch.Tensor]]]) -> Figure:
    """One panel per way of batching: every pair a row, real tokens dark, [PAD] light, uncomputed blank."""
    fig, axes = plt.subplots(
        1, len(loaders), figsize=(4.5 * len(loaders), 4.5), layout="constrained", squeeze=False, sharey=True
    )
    colours = ListedColormap(["#f4a582", "#2166ac"])  # 0 = [PAD], 1 = real token; NaN stays white
    for ax, (name, batches) in zip(axes[0], loaders.items()):
        grid = padding_grid(batches)
        pad_share = np.nansum(grid == 0) / np.sum(~np.isnan(grid))
        ax.imshow(grid, aspect="auto", interpolation="nearest", cmap=colours, vmin=0, vmax=1)
        ax.set_title(f"{name}\n{pad_share:.1%} of the computed positions are [PAD]", fontsize=9)
        ax.set_xlabel("position in the pair")
    axes[0][0].set_ylabel("pairs, batch after batch")
    fig.legend(
        handles=[
            Patch(color="#2166ac", label="real token"),
            Patch(color="#f4a582", label="[PAD]"),
            Patch(facecolor="white", edgecolor="gray", label="not computed"),
        ],
        loc="outside lower center",
        ncols=3,
        fontsize=8,
    )
    return fig


def mask_categories(input_ids: torch.Tensor, labels: torch.Tensor, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """Each position's index in MASK_CATEGORIES, from a masked batch and its labels; (batch, seq_len) long."""
    special = torch.isin(input_ids, torch.tensor(sorted(set(tokenizer.all_special_ids))))
    selected = labels != IGNORE_INDEX  # (batch, seq_len): the positions the MLM loss scores
    categories = torch.full_like(input_ids, 2)  # not selected
    categories[special] = 1
    categories[input_ids == tokenizer.pad_token_id] = 0
    categories[selected & (input_ids == tokenizer.mask_token_id)] = 3
    categories[selected & (input_ids != tokenizer.mask_token_id) & (input_ids != labels)] = 4
    categories[selected & (input_ids == labels)] = 5
    return categories


def draw_mask_categories(ax: plt.Axes, categories: torch.Tensor) -> None:
    """One coloured cell per position, (pairs, positions), by MASK_CATEGORIES (what masking did there)."""
    ax.imshow(
        categories.numpy(),
        aspect="auto",
        interpolation="nearest",
        cmap=ListedColormap(MASK_COLOURS),
        vmin=0,
        vmax=len(MASK_CATEGORIES) - 1,
    )


def mask_legend(fig: Figure) -> None:
    """The legend of MASK_CATEGORIES' colours, under the figure."""
    fig.legend(
        handles=[Patch(facecolor=c, edgecolor="gray", label=n) for n, c in zip(MASK_CATEGORIES, MASK_COLOURS)],
        loc="outside lower center",
        ncols=3,
        fontsize=8,
    )


def plot_masked_batch(
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    tokenizer: PreTrainedTokenizerBase,
    annotate: bool = True,
    max_positions: int | None = None,
) -> Figure:
    """A batch as a grid of tokens, coloured by what masking did to each position (MASK_CATEGORIES)."""
    categories = mask_categories(input_ids, labels, tokenizer)
    real = categories.ne(0).any(dim=0).nonzero()  # columns that hold a real token in some row
    width = int(real.max()) + 1 if len(real) else categories.shape[1]
    width = min(width, max_positions or width)  # the first positions only, so that the tokens stay legible
    categories, shown = categories[:, :width], input_ids[:, :width]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.42 * width), 0.55 * len(categories) + 1.2), layout="constrained")
    draw_mask_categories(ax, categories)
    if annotate:
        for (row, col), token in np.ndenumerate(
            np.array(tokenizer.convert_ids_to_tokens(shown.flatten().tolist()), dtype=object).reshape(shown.shape)
        ):
            if categories[row, col] != 0:
                ax.text(col, row, token, ha="center", va="center", rotation=90, fontsize=6)
    ax.set_xlabel("position")
    ax.set_ylabel("pair in the batch")
    ax.set_yticks(range(len(categories)))
    mask_legend(fig)
    return fig


# Attention grids: at most this many panels side by side, and per-token labels only on pairs up to this long.
ATTENTION_COLUMNS = 4
LABELLED_TOKENS = 40


def plot_attention(
    tokens: Sequence[str],
    attentions: torch.Tensor,
    sep_token: str = "[SEP]",
    layer: int = -1,
    heads: Sequence[int] | None = None,
    title: str | None = None,
) -> Figure:
    """Attention weights of the heads of one layer (all, or ``heads``), in a grid of at most four columns.

    In each panel row = the token attending, column = the token attended to; red lines end segment A. Layers and
    heads are numbered from 0, as ``model.bert.encoder.layer[i]`` and ``outputs.attentions[i]`` index them.
    """
    n_layers, n_heads = attentions.shape[:2]  # attentions: (layers, heads, seq_len, seq_len)
    if not -n_layers <= layer < n_layers:
        raise ValueError(
            f"layer={layer} does not exist: these attentions have {n_layers} layers, so pass 0 to "
            f"{n_layers - 1} (or -1 for the last)."
        )
    chosen = list(range(n_heads)) if heads is None else list(heads)
    if not chosen or any(not 0 <= head < n_heads for head in chosen):
        raise ValueError(f"heads={list(chosen)} must name one or more heads between 0 and {n_heads - 1}.")
    columns = min(ATTENTION_COLUMNS, len(chosen))
    rows = -(-len(chosen) // columns)  # ceiling division
    # 5-inch panels while one row holds them all (up to 16 inches wide); smaller ones in a taller grid.
    panel = min(5.0, 16 / columns) if rows == 1 else 3.8
    fig, axes = plt.subplots(
        rows, columns, figsize=(panel * columns, panel * rows + 0.5), layout="constrained", squeeze=False
    )
    for ax in axes.flat[len(chosen) :]:
        ax.remove()  # the grid's empty corner
    layer_number = layer % n_layers
    first_sep = list(tokens).index(sep_token)  # A's [SEP]: segment A above and left of the lines
    for index, (head, ax) in enumerate(zip(chosen, axes.flat)):
        _attention_panel(
            ax,
            attentions[layer_number, head],
            tokens,
            first_sep,
            sep_token,
            left=index % columns == 0,
            bottom=index + columns >= len(chosen),
        )
        ax.set_title(f"head {head} (darkest = {float(attentions[layer_number, head].max()):.2f})", fontsize=9)
    title = title or f"layer {layer_number} (layers 0 to {n_layers - 1})"
    fig.suptitle(f"{title}: each row is a token attending, each column a token attended to", fontsize=10)
    return fig


def plot_attention_before_after(
    tokens: Sequence[str], before: torch.Tensor, after: torch.Tensor, sep_token: str = "[SEP]", title: str = ""
) -> Figure:
    """One layer's heads on one pair, before training (top row) and after (bottom row); each (heads, n, n)."""
    if before.shape != after.shape or before.ndim != 3 or before.shape[-1] != len(tokens):
        raise ValueError(
            f"before {tuple(before.shape)} and after {tuple(after.shape)} must both be one layer's "
            f"(heads, {len(tokens)}, {len(tokens)}) weights on the same {len(tokens)} tokens."
        )
    heads = before.shape[0]
    fig, axes = plt.subplots(2, heads, figsize=(4.2 * heads, 8.9), layout="constrained", squeeze=False)
    first_sep = list(tokens).index(sep_token)
    for row, (when, weights) in enumerate((("before training", before), ("after training", after))):
        for head in range(heads):
            ax = axes[row][head]
            _attention_panel(ax, weights[head], tokens, first_sep, sep_token, left=head == 0, bottom=row == 1)
            ax.set_title(f"{when}, head {head} (darkest = {float(weights[head].max()):.2f})", fontsize=9)
    fig.suptitle(f"{title}: each row is a token attending, each column a token attended to", fontsize=10)
    return fig


def _attention_panel(
    ax: plt.Axes, weights: torch.Tensor, tokens: Sequence[str], first_sep: int, sep_token: str, left: bool, bottom: bool
) -> None:
    """One head's (seq_len, seq_len) weights; token labels on the grid's left column and bottom row only."""
    # Each head scaled to its own largest weight: an untrained head is near-uniform (1 / seq_len everywhere).
    ax.imshow(weights.numpy(), cmap="Blues", vmin=0, vmax=float(weights.max()))
    for draw in (ax.axvline, ax.axhline):
        draw(first_sep + 0.5, color="tab:red", linewidth=1)
    length = len(tokens)
    if length <= LABELLED_TOKENS:
        ticks, labels, what = range(length), list(tokens), "token"
    else:  # 6-point labels would overlap: mark only the [SEP]s, and say so
        ticks = [i for i, token in enumerate(tokens) if token == sep_token]
        labels, what = [sep_token] * len(ticks), f"position ({length} tokens, only {sep_token} labelled)"
    ax.set_xticks(ticks, labels if bottom else [], rotation=90, fontsize=6)
    ax.set_yticks(ticks, labels if left else [], fontsize=6)
    if bottom:
        ax.set_xlabel(f"{what} attended to", fontsize=8)
    if left:
        ax.set_ylabel(f"{what} attending", fontsize=8)


def _figure(ax: plt.Axes | None, size: tuple[float, float]) -> tuple[Figure, plt.Axes]:
    """A new figure and axes, or the figure of the given axes."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    return fig, ax


# BERT's input as d2l draws it (notebook 02): a row per embedding table, the three summed position by position.
INPUT_ROWS = (
    ("input", "white"),
    ("token embeddings", "#fdd0a2"),
    ("segment embeddings", None),  # coloured by segment: SEGMENT_COLOURS
    ("position embeddings", "#c7e9c0"),
)
SEGMENT_COLOURS = ("#c6dbef", "#fcbba1")  # segment A, segment B


def plot_input_embeddings(tokens: Sequence[str], token_type_ids: Sequence[int]) -> Figure:
    """Each token's input vector as the sum of three rows: its token's, its segment's (A or B) and its position's."""
    if len(tokens) != len(token_type_ids):
        raise ValueError(f"{len(tokens)} tokens but {len(token_type_ids)} segment ids: give one per token.")
    n = len(tokens)
    cells = (
        list(tokens),
        [f"E[{token[1:-1]}]" if re.fullmatch(r"\[[A-Z]+\]", token) else f"E[{token}]" for token in tokens],  # E[CLS]
        [f"$E_{'AB'[segment]}$" for segment in token_type_ids],
        [f"$E_{{{position}}}$" for position in range(n)],
    )
    fig, ax = plt.subplots(figsize=(max(6.0, 0.85 * n + 2.0), 2.9), layout="constrained")
    for row, ((name, colour), texts) in enumerate(zip(INPUT_ROWS, cells)):
        y = len(INPUT_ROWS) - 1 - row
        ax.text(-0.65, y, name, ha="right", va="center", fontsize=9)
        for x, text in enumerate(texts):
            face = SEGMENT_COLOURS[token_type_ids[x]] if colour is None else colour
            ax.add_patch(plt.Rectangle((x - 0.42, y - 0.3), 0.84, 0.6, facecolor=face, edgecolor="gray"))
            ax.text(x, y, text, ha="center", va="center", fontsize=7 if row == 1 else 8)
            if row >= 2:  # the rows below the token embeddings are added to it
                ax.text(x, y + 0.5, "+", ha="center", va="center", fontsize=9)
    ax.set_xlim(-3.2, n - 0.5)
    ax.set_ylim(-0.5, len(INPUT_ROWS) - 0.5)
    ax.axis("off")
    ax.set_title("input vector of each position = token + segment + position embedding, then LayerNorm", fontsize=9)
    return fig


def plot_masked_tokens(
    input_ids: torch.Tensor, labels: torch.Tensor, tokenizer: PreTrainedTokenizerBase, max_positions: int = 24
) -> Figure:
    """A masked batch, one row per pair: what the model reads, coloured by MASK_CATEGORIES, with each scored
    position's label under it ("[MASK]" over "nature"), so the hidden answers show."""
    categories = mask_categories(input_ids, labels, tokenizer)[:, :max_positions]  # (batch, shown)
    shown, answers = input_ids[:, :max_positions], labels[:, :max_positions]
    rows, width = categories.shape
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * width), 0.8 * rows + 1.0), layout="constrained")
    draw_mask_categories(ax, categories)
    for row in range(rows):
        reads = tokenizer.convert_ids_to_tokens(shown[row].tolist())
        for col in range(width):
            if categories[row, col] == 0:  # [PAD]: left blank
                continue
            text = reads[col]
            if answers[row, col] != IGNORE_INDEX:  # scored: the label the loss compares against, under the input
                text += "\n" + tokenizer.convert_ids_to_tokens(int(answers[row, col]))
            ax.text(col, row, text, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(width))
    ax.set_xlabel("position")
    ax.set_ylabel("pair in the batch")
    ax.set_yticks(range(rows))
    mask_legend(fig)
    return fig


def plot_queue(
    calls: Sequence[Sequence[int]],
    refused: Sequence[int],
    n_requests: int,
    ranks: Mapping[int, int] | None = None,
    title: str = "",
) -> Figure:
    """Which call of a batched function answered each request, and which requests the full queue turned away.

    Requests are numbered 1 .. n_requests in the order they were sent; ``calls`` lists, call by call, the requests
    each call of the function was given. ``ranks``: a request's place in the queue while it waited (0 = next). The x
    axis counts calls, not seconds: a line runs from a request's sending to the call that answered it.
    """
    served = {request: call for call, requests in enumerate(calls, start=1) for request in requests}
    everyone = set(range(1, n_requests + 1))
    if sum(map(len, calls)) != len(served) or set(served) & set(refused) or set(served) | set(refused) != everyone:
        raise ValueError(f"Each of the {n_requests} requests must be answered by one call or refused, exactly once.")
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * n_requests + 1.3), layout="constrained")
    colours = plt.get_cmap("tab10")
    for request in range(1, n_requests + 1):
        if request in refused:
            ax.plot(0, request, marker="x", color="tab:red", markersize=10, markeredgewidth=2)
            ax.annotate("turned away: the queue is full", (0.12, request), va="center", color="tab:red", fontsize=9)
            continue
        call = served[request]
        ax.plot([0, call], [request, request], color="lightgray", linewidth=4, solid_capstyle="butt", zorder=1)
        ax.plot(0, request, marker="o", color="gray", markersize=5, zorder=2)
        ax.plot(call, request, marker="s", color=colours((call - 1) % 10), markersize=12, zorder=3)
        if ranks and request in ranks:
            ax.annotate(f"queue rank {ranks[request]}", (0.12, request), xytext=(0, 5), textcoords="offset points",
                        fontsize=7, color="dimgray")  # fmt: skip
    labels = [f"call {call}\n{len(requests)} request" + "s" * (len(requests) != 1) for call, requests in
              enumerate(calls, start=1)]  # fmt: skip
    ax.set_xticks(range(len(calls) + 1), ["sent", *labels])
    ax.set_yticks(range(1, n_requests + 1), [f"request {request}" for request in range(1, n_requests + 1)])
    ax.set_xlim(-0.4, len(calls) + 0.4)
    ax.set_ylim(n_requests + 0.5, 0.3)  # the first request on top
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("the worker's calls of the batched function, in order (a line: sent, waiting, answered)")
    ax.set_title(title or "Requests, the queue and the batches", fontsize=10)
    return fig


def plot_logged(history: Any, keys: Sequence[str], columns: int = 3, title: str = "") -> Figure:
    """One line chart per logged key against the step it was logged at, as a W&B run page draws each number.

    ``history``: a DataFrame of a run's logged rows (``helpers.tracking.LoggedRun.history``: index ``_step``, one
    column per key, empty where a row did not log that key). A key logged once an epoch gets markers.
    """
    missing = [key for key in keys if key not in history.columns]
    if missing:
        raise ValueError(f"The run logged no {', '.join(missing)}; choose among its keys, such as {list(history)[:3]}.")
    rows = -(-len(keys) // columns)  # ceiling division
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.6 * rows), layout="constrained", squeeze=False)
    for ax, key in zip(axes.flat, keys):
        logged = history[key].dropna()  # the steps that logged this key
        ax.plot(logged.index, logged.to_numpy(dtype=float), marker="o" if len(logged) <= 50 else None, markersize=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("Step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)  # the grid's unused places
    fig.suptitle(title, fontsize=10)
    return fig


def plot_training_batch(
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    tokenizer: PreTrainedTokenizerBase,
    max_positions: int = 24,
    title: str = "",
) -> Figure:
    """plot_masked_tokens with a title, and a legend of only the categories the picture holds, the special tokens
    besides [PAD] named as such ("[CLS] / [SEP]")."""
    fig = plot_masked_tokens(input_ids, labels, tokenizer, max_positions)
    shown = sorted(set(mask_categories(input_ids, labels, tokenizer)[:, :max_positions].unique().tolist()))
    names = {1: "[CLS] / [SEP] (never selected)"}  # category 1: a special token other than [PAD]
    fig.legends[0].remove()  # plot_masked_tokens' legend lists every category
    handles = [
        Patch(facecolor=MASK_COLOURS[k], edgecolor="gray", label=names.get(k, MASK_CATEGORIES[k])) for k in shown
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    if title:
        fig.axes[0].set_title(title)
    return fig
