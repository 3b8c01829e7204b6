"""Every metric beside its baselines: the one place that pairs them and writes them out.

A held-out accuracy means little alone: 0.19 at [MASK] is a finding only beside the 0.05 of always guessing the
most frequent token. The training printout, metrics.json, the model card, `make demo`'s printout and the demo's
panel all take their pairs and their wording from here, so a figure never appears without the bar it must clear.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from helpers.config import Config

# The validation metrics of every epoch. mlm_accuracy_at_mask: share of the validation [MASK] positions (15%,
# every selected token a [MASK]) whose top guess is the hidden token, which is what fill-mask does.
METRICS = ("nsp_accuracy", "mlm_accuracy_at_mask", "mlm_loss", "mlm_perplexity", "nsp_loss")
CHANCE = 0.5  # NSP pairs are half true next sentences, half random ones
# Each held-out accuracy in metrics.json's "final", and what it is shown beside: the counting baselines of
# helpers.baselines (a key of "final", guessed on the same masks and pairs) or a fixed figure (chance).
ACCURACIES = (
    ("mlm_accuracy_at_mask", "MLM accuracy at [MASK]", (("unigram", "baseline_unigram"),
                                                         ("neighbours", "baseline_neighbours"))),
    ("nsp_accuracy", "NSP accuracy", (("word overlap", "baseline_word_overlap"), ("chance", CHANCE))),
)
BASELINES = tuple(ref for *_, beside in ACCURACIES for _, ref in beside if isinstance(ref, str))
_NUMBER = (int, float)


def first_above(epochs: list[dict[str, Any]], baselines: dict[str, float], baseline: str = "baseline_neighbours",
                metric: str = "mlm_accuracy_at_mask") -> dict[str, Any] | None:
    """Time to quality: the first epoch's row whose ``metric`` is above ``baseline`` (None: never)."""
    return next((row for row in epochs if row[metric] > baselines[baseline]), None)


class Compared(NamedTuple):
    """One held-out accuracy and the baselines beside it, as (label, value) pairs."""

    key: str
    name: str
    value: float
    baselines: list[tuple[str, float]]


def compared_accuracies(final: dict[str, Any]) -> list[Compared]:
    """Each held-out accuracy in ``final`` with its baselines; baselines a run did not record are left out."""
    rows = []
    for key, name, beside in ACCURACIES:
        if isinstance(final.get(key), _NUMBER):
            baselines = [(label, ref if isinstance(ref, float) else final[ref]) for label, ref in beside
                         if isinstance(ref, float) or isinstance(final.get(ref), _NUMBER)]
            rows.append(Compared(key, name, final[key], baselines))
    return rows


def beside(baselines: list[tuple[str, float]], digits: int = 3, sep: str = ", ") -> str:
    """'unigram 0.059, neighbours 0.216': the baselines, each with its label."""
    return sep.join(f"{label} {value:.{digits}f}" for label, value in baselines)


def accuracy_beside(row: Compared, digits: int = 3) -> str:
    """'MLM accuracy at [MASK] 0.232 (unigram 0.059, neighbours 0.216)'."""
    return f"{row.name} {row.value:.{digits}f}" + (f" ({beside(row.baselines, digits)})" if row.baselines else "")


def as_json(final: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """metrics.json's pairing: {accuracy: {"value": ..., "baselines": {label: value}}}."""
    return {row.key: {"value": row.value, "baselines": dict(row.baselines)} for row in compared_accuracies(final)}


# ----- the training printout -----

def format_baselines(values: dict[str, float]) -> str:
    """The baselines alone, before training starts: what each accuracy will have to beat."""
    return (f"MLM at [MASK]: unigram {values['baseline_unigram']:.3f}, neighbours {values['baseline_neighbours']:.3f}; "
            f"NSP: word overlap {values['baseline_word_overlap']:.3f} (chance {CHANCE:.3f})")


def headline(final: dict[str, float]) -> str:
    """The two held-out accuracies, each beside the baselines it has to beat."""
    return "Held-out " + "; ".join(accuracy_beside(row) for row in compared_accuracies(final))


def memorised(final: dict[str, float]) -> str:
    """The same accuracies on training pairs (same masking), for the gap between seen and unseen text."""
    return (f"The same on training pairs (seen text; the gap above held-out is memorised): MLM accuracy at [MASK] "
            f"{final['train_mlm_accuracy_at_mask']:.3f}, NSP accuracy {final['train_nsp_accuracy']:.3f}")


def format_table(rows: list[dict[str, float]], header: bool = True) -> str:
    """Per-epoch validation metrics as a fixed-width text table."""
    width = max(map(len, METRICS))
    lines = [f"{'epoch':>5}  {'seconds':>7}  " + "  ".join(f"{m:>{width}}" for m in METRICS)] if header else []
    lines += [f"{r['epoch']:>5}  {r.get('seconds', 0):>7.0f}  " + "  ".join(f"{r[m]:>{width}.4f}" for m in METRICS)
              for r in rows]
    return "\n".join(lines)


# ----- a finished checkpoint: `make demo`'s printout and the demo's panel -----

def aligned_lines(final: dict[str, Any], others: tuple[str, ...]) -> list[str]:
    """One line per accuracy (its baselines beside it), then one per key of ``others`` in ``final``; one column."""
    compared = compared_accuracies(final)
    shown = [key for key in others if isinstance(final.get(key), _NUMBER)]
    width = max(map(len, [row.key for row in compared] + shown), default=0)
    lines = [f"  {row.key:<{width}} {row.value:.4f}" + (f"  (baselines: {beside(row.baselines, 4)})"
                                                         if row.baselines else "") for row in compared]
    return lines + [f"  {key:<{width}} {final[key]:.4f}" for key in shown]


def nsp_in_words(final: dict[str, Any]) -> str:
    """One sentence for beside every NSP answer: how often this checkpoint is right, against a rule and chance."""
    accuracy, overlap = final.get("nsp_accuracy"), final.get("baseline_word_overlap")
    if not isinstance(accuracy, _NUMBER):
        return (f"This checkpoint has no held-out NSP accuracy on record; chance is {CHANCE:.2f}, so read the "
                f"verdict as a guess.")
    rule = f"; a shared-words rule gets {overlap:.2f}" if isinstance(overlap, _NUMBER) else ""
    return f"This checkpoint is right on {accuracy:.2f} of held-out pairs{rule}; chance is {CHANCE:.2f}."


# ----- the model card -----

def _card_explanations(cfg: Config) -> dict[str, str]:
    share = f"{cfg.val_mlm_probability:.0%}"
    return {
        "mlm_accuracy_at_mask": f"**MLM accuracy at [MASK]** counts, over the held-out paragraphs with {share} of "
                                f"their tokens selected and every selected token replaced by [MASK], how often the "
                                f"model's top guess is the original token. Beside it, on the same masks: *unigram* "
                                f"always guesses the most frequent training token; *neighbours* guesses the token "
                                f"seen most often between the same left and right neighbours in the training text.",
        "nsp_accuracy": "**NSP accuracy** counts how often the verdict (\"B follows A\" or \"B is random\") is "
                        "right on held-out sentence pairs, half of them true next sentences and half with B drawn "
                        "from another paragraph. Beside it, on the same pairs: *word overlap* says \"B follows A\" "
                        "when A and B share enough content words; *chance* is a coin flip.",
    }


def model_card(cfg: Config, metrics: dict[str, Any]) -> str:
    """The checkpoint's README.md: how to load it, and each held-out accuracy beside its baselines."""
    compared = compared_accuracies(metrics)
    shown = {row.key for row in compared} | set(BASELINES)
    rows = [f"| {row.name} | {row.value:.4f} | {beside(row.baselines, 4, ' · ')} |" for row in compared]
    rows += [f"| {k} | {v:.4f} | |" if isinstance(v, float) else f"| {k} | {v} | |" for k, v in metrics.items()
             if k not in shown and not isinstance(v, (list, dict))]
    explanations = _card_explanations(cfg)
    explained = "\n\n".join(explanations[row.key] for row in compared)
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

| metric | this model | counting baselines on the same data |
|---|---|---|
{chr(10).join(rows)}

{explained}

The model has learned something only where it beats the baselines beside it. The full profile is in
`profile.json`, the metrics per epoch in `metrics.json`.
"""
