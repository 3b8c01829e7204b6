"""Every metric beside its baselines: the one place that pairs them and writes them out.

A held-out accuracy means little alone: 0.19 at [MASK] is a finding only beside the 0.05 of always guessing the
most frequent token. The training printout, metrics.json, the model card, `make demo`'s printout and the demo's
panel all take their pairs and their wording from here, and here from the tables of helpers.baselines, so a figure
never appears without the bar it must clear.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from helpers import baselines as tables  # its tables are read at each call: an entry added later is seen
from helpers.baselines import WITH_MEMORY, Accuracy, Baseline, accuracy, baseline_key, beside
from helpers.config import Config
from helpers.memory import MEMORY_FILE
from helpers.pairs import IS_RANDOM, LABEL_NAMES

# The validation metrics of every epoch's printed table. mlm_accuracy_at_mask: share of the validation [MASK]
# positions (15%, every selected token a [MASK]) whose top guess is the hidden token, which is what fill-mask does.
METRICS = ("nsp_accuracy", "mlm_accuracy_at_mask", "mlm_loss", "mlm_perplexity", "nsp_loss")
MEMORY_WORDS = "with the memory"  # how a figure of the model with its context-count table beside it is named
SEEN = "seen_"  # the prefix of a metric measured on training pairs (text the model has seen), as in seen_mlm_loss
_NUMBER = (int, float)


def first_above(
    epochs: list[dict[str, Any]],
    baselines: dict[str, float],
    baseline: str = "baseline_neighbours",
    metric: str = "mlm_accuracy_at_mask",
) -> dict[str, Any] | None:
    """Time to quality: the first epoch's row whose ``metric`` is above ``baseline`` (None: never)."""
    return next((row for row in epochs if row[metric] > baselines[baseline]), None)


class Compared(NamedTuple):
    """One held-out accuracy, the same with the model's memory beside it (if measured), and its baselines."""

    key: str
    name: str
    value: float
    baselines: list[tuple[str, float]]  # (words, value)
    with_memory: float | None = None  # the model's answer mixed with the context-count table's


def baselines_beside(accuracy: Accuracy, values: dict[str, Any]) -> list[tuple[Baseline, float]]:
    """Each baseline beside ``accuracy`` with its value: chance as it is, a counted one from ``values`` if there."""
    found = [(b, b.chance if b.chance is not None else values.get(baseline_key(b, accuracy))) for b in beside(accuracy)]
    return [(baseline, value) for baseline, value in found if isinstance(value, _NUMBER)]


def _in_words(accuracy: Accuracy, values: dict[str, Any]) -> list[tuple[str, float]]:
    return [(baseline.words, value) for baseline, value in baselines_beside(accuracy, values)]


def compared_accuracies(final: dict[str, Any], parts: bool = True) -> list[Compared]:
    """Each held-out accuracy in ``final`` with its baselines (``parts=False``: not the split of MLM's positions)."""
    return [
        Compared(a.key, a.words, final[a.key], _in_words(a, final), _number(final.get(WITH_MEMORY + a.key)))
        for a in tables.ACCURACIES
        if isinstance(final.get(a.key), _NUMBER) and (parts or a.part is None)
    ]


def _number(value: Any) -> float | None:
    return value if isinstance(value, _NUMBER) else None


def numbers_beside(baselines: list[tuple[str, float]], digits: int = 3, sep: str = ", ") -> str:
    """'unigram 0.059, neighbour counting 0.216': the baselines, each with its words."""
    return sep.join(f"{words} {value:.{digits}f}" for words, value in baselines)


def accuracy_beside(row: Compared, digits: int = 3) -> str:
    """'MLM accuracy at [MASK] 0.232, with the memory 0.27 (unigram 0.059, ...)': the baselines after the model."""
    memory = f", {MEMORY_WORDS} {row.with_memory:.{digits}f}" if row.with_memory is not None else ""
    bars = f" ({numbers_beside(row.baselines, digits)})" if row.baselines else ""
    return f"{row.name} {row.value:.{digits}f}{memory}{bars}"


def as_json(final: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """metrics.json's pairing: {accuracy: {"value": ..., "with_memory": ... (if measured), "baselines": {...}}}."""
    return {
        row.key: {"value": row.value}
        | ({"with_memory": row.with_memory} if row.with_memory is not None else {})
        | {"baselines": dict(row.baselines)}
        for row in compared_accuracies(final)
    }


# ----- the training printout -----


def format_baselines(values: dict[str, float]) -> str:
    """The baselines alone, before training starts: what each accuracy will have to beat, one line per accuracy."""
    return "\n".join(f"  {a.words}: {numbers_beside(_in_words(a, values))}" for a in tables.ACCURACIES)


def headline(final: dict[str, float]) -> str:
    """The held-out accuracies, each beside the baselines it has to beat."""
    return "Held-out " + "; ".join(accuracy_beside(row) for row in compared_accuracies(final))


def seen_headline(final: dict[str, float]) -> str:
    """The same accuracies on training pairs (same masking), for the gap between seen and unseen text."""
    return "The same on training pairs (seen text; the gap above held-out is memorised): " + ", ".join(
        f"{a.words} {final[SEEN + a.key]:.3f}" for a in tables.ACCURACIES if SEEN + a.key in final
    )


def format_table(rows: list[dict[str, float]], header: bool = True) -> str:
    """Per-epoch validation metrics as a fixed-width text table."""
    width = max(map(len, METRICS))
    lines = [f"{'epoch':>5}  {'seconds':>7}  " + "  ".join(f"{m:>{width}}" for m in METRICS)] if header else []
    lines += [
        f"{r['epoch']:>5}  {r.get('seconds', 0):>7.0f}  " + "  ".join(f"{r[m]:>{width}.4f}" for m in METRICS)
        for r in rows
    ]
    return "\n".join(lines)


# ----- a finished checkpoint: `make demo`'s printout and the demo's panel -----


def aligned_lines(final: dict[str, Any], others: tuple[str, ...]) -> list[str]:
    """One line per accuracy (its baselines beside it), then one per key of ``others`` in ``final``; one column."""
    compared = compared_accuracies(final)
    shown = [key for key in others if isinstance(final.get(key), _NUMBER)]
    width = max(map(len, [row.key for row in compared] + shown), default=0)
    lines = [
        f"  {row.key:<{width}} {row.value:.4f}"
        + (f"  ({MEMORY_WORDS} {row.with_memory:.4f})" if row.with_memory is not None else "")
        + (f"  (baselines: {numbers_beside(row.baselines, 4)})" if row.baselines else "")
        for row in compared
    ]
    return lines + [f"  {key:<{width}} {final[key]:.4f}" for key in shown]


def nsp_in_words(final: dict[str, Any]) -> str:
    """One sentence for beside every NSP answer: how often this checkpoint is right, against its baselines."""
    nsp = accuracy("nsp_accuracy")
    if not isinstance(final.get(nsp.key), _NUMBER):
        return (
            f"This checkpoint has no held-out NSP accuracy on record; {_is(baselines_beside(nsp, {}))}, so read "
            f"the verdict as a guess."
        )
    said = f"This checkpoint is right on {final[nsp.key]:.2f} of held-out pairs; {_is(baselines_beside(nsp, final))}."
    if isinstance(final.get("nsp_answered_random"), _NUMBER):  # a lopsided habit reads as a verdict unless said
        said += f' It answers "{LABEL_NAMES[IS_RANDOM]}" to {final["nsp_answered_random"]:.2f} of them (half are).'
    return said


def _is(baselines: list[tuple[Baseline, float]]) -> str:
    """'word overlap gets 0.67; chance is 0.50': a counted baseline gets a score, a fixed one is it."""
    return "; ".join(f"{b.words} {'gets' if b.chance is None else 'is'} {value:.2f}" for b, value in baselines)


# ----- the model card -----


def _explained(val_mlm_probability: float, compared: list[Compared]) -> str:
    """Each accuracy's own sentence (its entry's), then, once per task, what its baselines do on the same data."""
    paragraphs, told = [], set()
    for row in compared:
        entry = accuracy(row.key)
        text = entry.card.format(share=f"{val_mlm_probability:.0%}")
        if entry.task not in told:
            data = "masks" if entry.task == "mlm" else "pairs"
            text += (
                f" Beside it, on the same {data}: " + "; ".join(f"*{b.words}* {b.about}" for b in beside(entry)) + "."
            )
            told.add(entry.task)
        paragraphs.append(text)
    return "\n\n".join(paragraphs)


def model_card(cfg: Config, metrics: dict[str, Any]) -> str:
    """The checkpoint's README.md: how to load it, and each held-out accuracy beside its baselines."""
    compared = compared_accuracies(metrics)
    shown = {row.key for row in compared} | {baseline_key(b, a) for a in tables.ACCURACIES for b in beside(a)}
    shown |= {WITH_MEMORY + row.key for row in compared}
    rows = [
        f"| {row.name} | {row.value:.4f} | {'' if row.with_memory is None else f'{row.with_memory:.4f}'} | "
        f"{numbers_beside(row.baselines, 4, ' · ')} |"
        for row in compared
    ]
    rows += [
        f"| {k} | {v:.4f} | | |" if isinstance(v, float) else f"| {k} | {v} | | |"
        for k, v in metrics.items()
        if k not in shown and not isinstance(v, (list, dict))
    ]
    return f"""---
library_name: transformers
pipeline_tag: fill-mask
tags: [bert, pretraining, mlm, nsp, meditations]
---
# BERT pretrained on Marcus Aurelius' *Meditations* (profile `{cfg.profile}`)

A `BertForPreTraining` trained with both objectives, Masked Language Modeling and Next Sentence
Prediction, on George Long's public-domain translation of the *Meditations*. Source model: `{cfg.model}`.
It is a teaching model: small data, short training.

Load it with stock transformers:

```python
from transformers import pipeline, BertForNextSentencePrediction
fill = pipeline("fill-mask", model="PATH")
nsp = BertForNextSentencePrediction.from_pretrained("PATH")  # logit 0 = "B follows A", 1 = "B is random"
```

## Validation metrics (held-out paragraphs)

| metric | this model | {MEMORY_WORDS} | counting baselines on the same data |
|---|---|---|---|
{chr(10).join(rows)}

{_explained(cfg.val_mlm_probability, compared)}

*{MEMORY_WORDS.capitalize()}*: the model's answer at each [MASK] mixed with the context-count table's
(`{MEMORY_FILE}` in this folder, built from the training paragraphs only); the model weighs
{cfg.memory_strength} against the contexts the table matched. `helpers.serving.Predictor` reads it; stock
transformers loads the model alone.

The model has learned something only where it beats the baselines beside it. The full profile is in
`profile.json`, the metrics per epoch in `metrics.json`.
"""
