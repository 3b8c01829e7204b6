"""Explorers for the notebooks: each a static function (a DataFrame or a Figure) and ipywidgets controls wired to it.

Call the static function once with fixed values where the notebook's output is checked (nbval); build the explorer
to try other values by hand. Bad input gives one sentence in the output area, never a stack trace. A stored notebook
(GitHub, say) keeps no widget, so ``first_view(explorer)`` gives the explorer's first view as a plain output, a table
or a picture, to show under it.

    pair_tokens / pair_tokens_explorer          notebook 02: a pair's tokens, input_ids, token_type_ids, attention_mask
    mask_sentence / masking_explorer            notebook 03: one sentence masked by a rule, at a rate, with a seed
    fill_mask_frame / fill_mask_explorer        notebook 05: a trained model's top-k guesses at each [MASK]
    attention_figure / attention_explorer       notebook 05: one head's attention over a typed pair
    memory_frame / memory_explorer              notebook 05: the model's, the memory's and the mix's top-k at a [MASK]
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from transformers import BertForPreTraining, PreTrainedTokenizerBase

from helpers.config import get_profile
from helpers.inference import encode, fill_mask_top_k, mask_logits, pair_attentions, top_k_tokens
from helpers.masking import IGNORE_INDEX, MaskingRule, mask_tokens, masking_rule
from helpers.memory import MODEL_STRENGTH, ContextCounts, mix
from helpers.pairs import IS_NEXT, Pair
from helpers.plots import plot_attention
from helpers.tokens import model_max_length, tokenize_pairs

SENTENCE_A = "Begin the morning by saying to thyself, I shall meet with the busy-body, the ungrateful, arrogant."
SENTENCE_B = "All these things happen to them by reason of their ignorance of what is good and evil."
PAIR_COLUMNS = ["token", "input_ids", "token_type_ids", "attention_mask", "special_tokens_mask"]

# The reference recipe is a way of scoring (mask_tokens' mode), not a profile: 15% selected, each one a [MASK].
REFERENCE_RULE = MaskingRule(mask_replace_prob=1.0, random_replace_prob=0.0)


def describe_rule(rule: MaskingRule) -> str:
    """A rule in words, from its own fields: '40% selected; each one a [MASK]'."""
    unchanged = 1 - rule.mask_replace_prob - rule.random_replace_prob
    if rule.mask_replace_prob == 1:
        fate = "each one a [MASK]"
    else:
        fate = (
            f"{rule.mask_replace_prob:.0%} [MASK], {rule.random_replace_prob:.0%} a random token, "
            f"{unchanged:.0%} unchanged"
        )
    return f"{rule.mlm_probability:.0%} selected; {fate}"


def masking_rules() -> dict[str, tuple[str, str, MaskingRule]]:
    """Notebook 03's rules: name -> (label shown, mask_tokens' mode, the rule); each profile's read from the profile."""
    default, paper = get_profile("default"), get_profile("bert-base")
    rules = {
        "default profile": ("bert", masking_rule(default)),
        "validation": ("bert", masking_rule(default, validation=True)),
        "bert-base profile": ("bert", masking_rule(paper)),
        "reference": ("reference", REFERENCE_RULE),
    }
    words = {
        "default profile": "the default profile, training",
        "validation": "validation's fixed masks",
        "bert-base profile": "the bert-base profile (BERT's paper)",
        "reference": "the tutorial's reference, every position scored",
    }
    return {name: (f"{words[name]}: {describe_rule(rule)}", mode, rule) for name, (mode, rule) in rules.items()}


# What masking did to a position, as the "what happened" column says it.
KEPT, SPECIAL, MASKED, RANDOM, UNCHANGED = (
    "kept",
    "special: never selected",
    "[MASK]",
    "random token",
    "unchanged but selected",
)
FILL_COLUMNS = ["mask", "rank", "token", "probability"]


def _require(name: str, text: str) -> None:
    if not text or not text.strip():
        raise ValueError(f"{name} is empty: type some text in it.")


def _require_rule(rule: str) -> None:
    if rule not in masking_rules():
        raise ValueError(f"rule={rule!r} is not one of the rules: use one of {', '.join(map(repr, masking_rules()))}.")


def _rule_and_mode(rule: str | MaskingRule, mlm_probability: float | None) -> tuple[MaskingRule, str]:
    """The rule to apply and mask_tokens' mode: a named rule or a MaskingRule, at its own rate unless one is given."""
    if isinstance(rule, MaskingRule):
        chosen, mode = rule, "bert"
    else:
        _require_rule(rule)
        _, mode, chosen = masking_rules()[rule]
    if mlm_probability is None:
        return chosen, mode
    if not 0.0 <= mlm_probability <= 1.0:
        raise ValueError(f"mlm_probability={mlm_probability} is not a rate: use a value from 0 to 1.")
    return replace(chosen, mlm_probability=mlm_probability), mode


def pair_tokens(
    tokenizer: PreTrainedTokenizerBase,
    sentence_a: str = SENTENCE_A,
    sentence_b: str = SENTENCE_B,
    max_length: int | None = None,
    pad: bool = False,
) -> pd.DataFrame:
    """One row per token of the pair as training encodes it (tokenize_pairs), with the tokenizer's own fields."""
    _require("Sentence A", sentence_a)
    _require("Sentence B", sentence_b)
    max_length = max_length or model_max_length(tokenizer)
    # The label and paragraph numbers are not read by tokenize_pairs' encoding: any will do.
    encoded = tokenize_pairs(
        tokenizer, [Pair(sentence_a, sentence_b, IS_NEXT, 0, 0)], max_length=max_length, pad_to_max_length=pad
    )  # each field: [[one value per token]]
    table = pd.DataFrame({key: encoded[key][0] for key in PAIR_COLUMNS[1:]})
    table.insert(0, "token", tokenizer.convert_ids_to_tokens(encoded["input_ids"][0]))
    table.index.name = "position"
    return table


def _mask_once(
    input_ids: torch.Tensor, tokenizer: PreTrainedTokenizerBase, rule: MaskingRule, mode: str, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The one call of helpers.masking in this module: (masked input_ids, labels), each (1, seq_len)."""
    generator = torch.Generator().manual_seed(seed)
    return mask_tokens(input_ids, tokenizer, rule, mode=mode, generator=generator)


def _outcomes(
    original: list[int],
    masked: list[int],
    labels: list[int],
    tokenizer: PreTrainedTokenizerBase,
    scores_every_position: bool,
) -> list[str]:
    """What happened at each position, read from the ids before and after masking and the labels."""
    special = set(tokenizer.all_special_ids)
    out = []
    for before, after, label in zip(original, masked, labels):
        # The reference labels every position, so there only a change tells which tokens were selected.
        selected = before != after if scores_every_position else label != IGNORE_INDEX
        if before in special:
            out.append(SPECIAL)
        elif not selected:
            out.append(KEPT)
        elif after == tokenizer.mask_token_id:
            out.append(MASKED)
        else:
            out.append(RANDOM if after != before else UNCHANGED)
    return out


def mask_sentence(
    tokenizer: PreTrainedTokenizerBase,
    sentence: str = SENTENCE_A,
    rule: str | MaskingRule = "default profile",
    mlm_probability: float | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """One sentence masked once: each token, the id the model reads instead, what happened, and its label.

    ``rule`` is a name of ``masking_rules()`` or a ``MaskingRule`` (``masking_rule(cfg)``, say); ``mlm_probability``
    replaces the rule's own rate when given.
    """
    _require("The sentence", sentence)
    chosen, mode = _rule_and_mode(rule, mlm_probability)
    # split_special_tokens: a typed "[MASK]" is text here, as in training.
    original = tokenizer(sentence, truncation=True, split_special_tokens=True, return_tensors="pt")["input_ids"]
    masked, labels = _mask_once(original, tokenizer, chosen, mode, seed)  # each (1, seq_len)
    ids, masked_ids, label_ids = original[0].tolist(), masked[0].tolist(), labels[0].tolist()
    table = pd.DataFrame(
        {
            "token": tokenizer.convert_ids_to_tokens(ids),
            "input_ids after masking": masked_ids,  # not the original ids: those are the "token" column's
            "model reads": tokenizer.convert_ids_to_tokens(masked_ids),
            "what happened": _outcomes(ids, masked_ids, label_ids, tokenizer, mode == "reference"),
            "labels": label_ids,
        }
    )
    table.index.name = "position"
    return table


def _max_length(model: BertForPreTraining, tokenizer: PreTrainedTokenizerBase, max_length: int | None) -> int:
    return max_length or model_max_length(tokenizer, model.config.max_position_embeddings)


def fill_mask_frame(
    model: BertForPreTraining, tokenizer: PreTrainedTokenizerBase, text: str, k: int = 5, max_length: int | None = None
) -> pd.DataFrame:
    """The model's ``k`` likeliest tokens at each [MASK] of ``text``: one row per (mask, rank), as fill_mask_top_k."""
    _require("The text", text)
    if k < 1:
        raise ValueError(f"k={k} asks for no guesses: use k=1 or more.")
    max_length = _max_length(model, tokenizer, max_length)
    ids = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]  # what fill_mask_top_k reads
    mask = tokenizer.mask_token
    if mask not in text:
        raise ValueError(f"The text has no {mask}: put {mask} where a word is missing, as in 'The {mask} is short.'")
    if tokenizer.mask_token_id not in ids:
        raise ValueError(
            f"The text's {mask} comes after its first {max_length} tokens, all that the model reads: "
            f"put it earlier or shorten the text."
        )
    guesses = fill_mask_top_k(model, tokenizer, [text], k=min(k, len(tokenizer)), max_length=max_length)[0]
    rows = [
        (number, rank, token, probability)
        for number, options in enumerate(guesses, 1)
        for rank, (token, probability) in enumerate(options, 1)
    ]
    return pd.DataFrame(rows, columns=FILL_COLUMNS)


def attention_figure(
    model: BertForPreTraining,
    tokenizer: PreTrainedTokenizerBase,
    sentence_a: str = SENTENCE_A,
    sentence_b: str = SENTENCE_B,
    layer: int = 0,
    head: int = 0,
    max_length: int | None = None,
) -> Figure:
    """One head's attention weights over the pair ``[CLS] A [SEP] B [SEP]`` (plots.plot_attention)."""
    _require("Sentence A", sentence_a)
    _require("Sentence B", sentence_b)
    layers, heads = model.config.num_hidden_layers, model.config.num_attention_heads
    if not 0 <= layer < layers or not 0 <= head < heads:
        raise ValueError(
            f"layer={layer}, head={head} does not exist: this model has layers 0 to {layers - 1} "
            f"and heads 0 to {heads - 1} in each."
        )
    tokens, attentions = pair_attentions(
        model, tokenizer, sentence_a, sentence_b, _max_length(model, tokenizer, max_length)
    )  # (layers, heads, seq, seq)
    return plot_attention(
        tokens,
        attentions,
        sep_token=tokenizer.sep_token,
        layer=layer,
        heads=[head],
        title=f"layer {layer}, head {head}",
    )


def _explorer(static: Callable[..., Any], **controls) -> Any:
    """``ipywidgets.interactive``: the controls, and an output area showing ``static(**values)`` after each change."""
    # The widget's .result is the last value shown: a DataFrame, a Figure, or the one sentence of bad input.
    import ipywidgets as widgets
    from IPython.display import display

    def show(**values):
        try:
            result = static(**values)
        except ValueError as err:  # bad input: its sentence, not a stack trace
            print(err)
            return str(err)
        display(result)
        if isinstance(result, Figure):
            plt.close(result)  # shown once, and not kept open by pyplot as the controls move
        return result

    explorer = widgets.interactive(show, **controls)
    if explorer.result is None:  # ipywidgets 8 runs it once at once; 7 only when it is first displayed
        explorer.update()
    return explorer


class FirstView:
    """An explorer's first view as a plain output (an HTML table, a PNG, or its one sentence): what a stored copy keeps.

    It renders ``explorer.result``, the very object the explorer's output area showed first, so it cannot differ from
    what the controls draw before they are moved.
    """

    def __init__(self, result: Any):
        if not isinstance(result, (pd.DataFrame, Figure, str)):
            raise ValueError(f"An explorer shows a table, a figure or a sentence, not {type(result).__name__}.")
        self.result = result

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        if isinstance(self.result, pd.DataFrame):
            return {"text/html": self.result.to_html(), "text/plain": self.result.to_string()}
        if isinstance(self.result, Figure):
            buffer = io.BytesIO()
            self.result.savefig(buffer, format="png", bbox_inches="tight")
            return {"image/png": buffer.getvalue(), "text/plain": "the explorer's first view (a figure)"}
        return {"text/plain": self.result}


def first_view(explorer: Any) -> FirstView:
    """The explorer's first view, to display under it: ``display(explorer); first_view(explorer)``."""
    if getattr(explorer, "result", None) is None:
        raise ValueError("This explorer has shown nothing yet; build it with one of the *_explorer functions.")
    return FirstView(explorer.result)


def _text(value: str, description: str):
    import ipywidgets as widgets

    # Typing updates on Enter or leaving the box, not on every key.
    return widgets.Text(
        value=value,
        description=description,
        continuous_update=False,
        layout=widgets.Layout(width="95%"),
        style={"description_width": "initial"},
    )


def pair_tokens_explorer(
    tokenizer: PreTrainedTokenizerBase,
    sentence_a: str = SENTENCE_A,
    sentence_b: str = SENTENCE_B,
    max_length: int = 64,
    pad: bool = True,
):
    """Type a pair and see its tokens, input_ids, token_type_ids and attention_mask (notebook 02)."""
    import ipywidgets as widgets

    limit = model_max_length(tokenizer)
    return _explorer(
        lambda **values: pair_tokens(tokenizer, **values),
        sentence_a=_text(sentence_a, "Sentence A"),
        sentence_b=_text(sentence_b, "Sentence B"),
        max_length=widgets.IntSlider(
            value=min(max_length, limit), min=8, max=min(limit, 256), description="max_length", continuous_update=False
        ),
        pad=widgets.Checkbox(value=pad, description="pad to max_length"),
    )


def masking_explorer(
    tokenizer: PreTrainedTokenizerBase,
    sentence: str = SENTENCE_A,
    rule: str = "default profile",
    mlm_probability: float | None = None,
    seed: int = 0,
):
    """A rule, a rate and a seed: see what masking does to each token of a sentence and its label (notebook 03)."""
    import ipywidgets as widgets

    _require_rule(rule)  # before the dropdown, which would refuse it less clearly
    rules = masking_rules()
    rate = widgets.FloatSlider(
        value=rules[rule][2].mlm_probability if mlm_probability is None else mlm_probability,
        min=0.0,
        max=1.0,
        step=0.05,
        description="masking rate",
        continuous_update=False,
    )
    choice = widgets.Dropdown(
        options=[(label, name) for name, (label, *_) in rules.items()],
        value=rule,
        description="rule",
        layout=widgets.Layout(width="95%"),
    )
    explorer = _explorer(
        lambda **values: mask_sentence(tokenizer, **values),
        sentence=_text(sentence, "Sentence"),
        rule=choice,
        mlm_probability=rate,
        seed=widgets.IntSlider(value=seed, min=0, max=99, description="seed", continuous_update=False),
    )
    # Choosing a rule moves the slider to that rule's own rate; the slider can then try any other.
    choice.observe(lambda change: setattr(rate, "value", rules[change["new"]][2].mlm_probability), names="value")
    return explorer


def fill_mask_explorer(
    model: BertForPreTraining,
    tokenizer: PreTrainedTokenizerBase,
    text: str | None = None,
    k: int = 5,
    max_length: int | None = None,
):
    """Type a text with [MASK]s and see the model's top-k guesses at each (notebook 05)."""
    import ipywidgets as widgets

    text = text or f"For the soul is dyed by the {tokenizer.mask_token}."
    return _explorer(
        lambda **values: fill_mask_frame(model, tokenizer, max_length=max_length, **values),
        text=_text(text, "Text"),
        k=widgets.IntSlider(value=k, min=1, max=20, description="top-k", continuous_update=False),
    )


def attention_explorer(
    model: BertForPreTraining,
    tokenizer: PreTrainedTokenizerBase,
    sentence_a: str = SENTENCE_A,
    sentence_b: str = SENTENCE_B,
    layer: int = 0,
    head: int = 0,
    max_length: int | None = None,
):
    """Type a pair, pick a layer and a head, and see that head's attention (notebook 05)."""
    import ipywidgets as widgets

    def slider(value: int, count: int, description: str):
        return widgets.IntSlider(value=value, min=0, max=count - 1, description=description, continuous_update=False)

    return _explorer(
        lambda **values: attention_figure(model, tokenizer, max_length=max_length, **values),
        sentence_a=_text(sentence_a, "Sentence A"),
        sentence_b=_text(sentence_b, "Sentence B"),
        layer=slider(layer, model.config.num_hidden_layers, "layer"),
        head=slider(head, model.config.num_attention_heads, "head"),
    )


# Notebook 05: the memory beside the model (helpers.memory). Appended here, after the module's other explorers.
MEMORY_COLUMNS = ["mask", "rank", "model", "P(model)", "memory", "P(memory)", "mix", "P(mix)", "model's share"]


def memory_frame(
    model: BertForPreTraining,
    tokenizer: PreTrainedTokenizerBase,
    memory: ContextCounts,
    text: str,
    strength: float = MODEL_STRENGTH,
    k: int = 5,
    max_length: int | None = None,
) -> pd.DataFrame:
    """At each [MASK] of ``text``, the ``k`` likeliest tokens of the model, the memory and their mix, side by side.

    ``strength`` is the model's weight against the table's evidence (helpers.memory.mix): its share in the mix is
    strength / (strength + evidence), shown in the last column; 0 leaves the table alone, a large value the model.
    The three lists are the ones ``Predictor.fill_mask_result`` gives at the Predictor's own ``memory_strength``.
    """
    _require("The text", text)
    if memory is None:
        raise ValueError("This checkpoint has no memory (context_counts.safetensors): the model alone can answer.")
    if k < 1:
        raise ValueError(f"k={k} asks for no guesses: use k=1 or more.")
    if not strength >= 0:  # also refuses NaN
        raise ValueError(f"strength={strength} is not a weight: use 0 (the table alone) or more.")
    max_length = _max_length(model, tokenizer, max_length)
    mask = tokenizer.mask_token
    if mask not in text:
        raise ValueError(f"The text has no {mask}: put {mask} where a word is missing, as in 'The {mask} is short.'")
    batch = encode(tokenizer, [text], max_length=max_length).to(model.device)  # (1, seq_len) each
    if not (batch["input_ids"] == tokenizer.mask_token_id).any():
        raise ValueError(
            f"The text's {mask} comes after its first {max_length} tokens, all that the model reads: "
            f"put it earlier or shorten the text."
        )
    logits, selected = mask_logits(model, batch, tokenizer.mask_token_id)  # (n_masks, vocab), (1, seq_len)
    table = memory.probabilities(batch["input_ids"], selected)  # .probs (n_masks, vocab), rows sum to 1
    mixed = mix(logits.softmax(-1), table, strength=strength)  # (n_masks, vocab)
    share = (strength / (strength + table.evidence)).tolist()  # (n_masks,): the model's share at each mask
    k = min(k, len(tokenizer))
    # top_k_tokens reads logits; the log of a distribution gives the distribution back through its softmax.
    lists = [top_k_tokens(tokenizer, scores, k) for scores in (logits, table.probs.log(), mixed.log())]
    rows = [
        (m + 1, r + 1, *lists[0][m][r], *lists[1][m][r], *lists[2][m][r], share[m])
        for m in range(len(share))
        for r in range(k)
    ]
    return pd.DataFrame(rows, columns=MEMORY_COLUMNS)


def memory_explorer(
    model: BertForPreTraining,
    tokenizer: PreTrainedTokenizerBase,
    memory: ContextCounts,
    text: str | None = None,
    strength: float = MODEL_STRENGTH,
    k: int = 5,
    max_length: int | None = None,
):
    """Type a text with [MASK]s and move the model's strength against the table: three top-k lists (notebook 05)."""
    import ipywidgets as widgets

    text = text or f"For the soul is dyed by the {tokenizer.mask_token}."
    return _explorer(
        lambda **values: memory_frame(model, tokenizer, memory, max_length=max_length, **values),
        text=_text(text, "Text"),
        # A log scale: from 0.01 (the table speaks almost alone) to 100 (the model almost alone).
        strength=widgets.FloatLogSlider(
            value=strength, base=10, min=-2, max=2, step=0.05, description="model's strength", continuous_update=False
        ),
        k=widgets.IntSlider(value=k, min=1, max=20, description="top-k", continuous_update=False),
    )


# ----- notebook 04: the fill-mask answers of every epoch, scrubbed by an epoch slider -----

EPOCH_ANSWER_COLUMNS = ["prompt", "the book's word", "its rank", "its probability", "the model's top guesses"]


def _answer_rows(asked: list[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """The recorded answers as a table, checked for the columns ``epoch_answers`` reads."""
    rows = asked if isinstance(asked, pd.DataFrame) else pd.DataFrame(list(asked))
    needed = {"epoch", "prompt", "word", "rank", "probability", "guesses"}
    if rows.empty:
        raise ValueError("No answers are recorded yet: train with on_epoch recording them, then look again.")
    if missing := needed - set(rows.columns):
        raise ValueError(f"The recorded answers lack {', '.join(sorted(missing))}: record {', '.join(sorted(needed))}.")
    return rows


def epoch_answers(asked: list[dict[str, Any]] | pd.DataFrame, epoch: int, k: int = 5) -> pd.DataFrame:
    """The fill-mask answers recorded after ``epoch``: per prompt, the book's word, its rank among all tokens and its
    probability, and the model's ``k`` likeliest tokens then.

    ``asked``: one row per prompt per epoch, with ``epoch``, ``prompt``, ``word`` (the book's word), ``rank``,
    ``probability`` and ``guesses`` (the top guesses as (token, probability) pairs, likeliest first), as notebook 04's
    ``on_epoch`` records them.
    """
    rows = _answer_rows(asked)
    if k < 1:
        raise ValueError(f"k={k} asks for no guesses: use k=1 or more.")
    epochs = sorted(set(rows["epoch"]))
    if epoch not in epochs:
        raise ValueError(f"No answers were recorded after epoch {epoch}: choose one from {epochs[0]} to {epochs[-1]}.")
    chosen = rows[rows["epoch"] == epoch]
    table = pd.DataFrame(
        {
            "prompt": chosen["prompt"].tolist(),
            "the book's word": chosen["word"].tolist(),
            "its rank": chosen["rank"].astype(int).tolist(),
            "its probability": chosen["probability"].round(3).tolist(),
            "the model's top guesses": [
                " · ".join(f"{token} {p:.2f}" for token, p in list(guesses)[:k]) for guesses in chosen["guesses"]
            ],
        },
        columns=EPOCH_ANSWER_COLUMNS,
    )
    table.index = pd.RangeIndex(1, len(table) + 1, name=f"after epoch {epoch}")
    return table


def epoch_answers_explorer(asked: list[dict[str, Any]] | pd.DataFrame, epoch: int | None = None, k: int = 5):
    """An epoch slider over the fill-mask answers recorded after each epoch (notebook 04); it starts at ``epoch``,
    by default the last."""
    import ipywidgets as widgets

    epochs = sorted(set(_answer_rows(asked)["epoch"]))
    epoch = epochs[-1] if epoch is None else epoch
    epoch_answers(asked, epoch, k)  # bad input: its sentence here, before a slider would clamp it
    slider = widgets.IntSlider(value=epoch, min=epochs[0], max=epochs[-1], description="epoch", continuous_update=False)
    return _explorer(lambda **values: epoch_answers(asked, k=k, **values), epoch=slider)


# Notebook 06's queue lesson, its plumbing kept out of the cell: a batched function whose first call waits (a slow
# model's stand-in, so the other requests queue behind it on any machine), a poll, and tables compared to 4 decimals.


def held_first_call(fn: Callable, seconds: float = 30.0) -> Callable:
    """``fn`` for ``batch=True``, its first call held until ``.release()``; ``.calls`` lists each call's first input.

    Gradio reads the signature of ``fn`` (kept by functools.wraps). After ``release()`` no call waits.
    """
    import functools
    import threading

    gate = threading.Event()

    @functools.wraps(fn)
    def held(*inputs):
        gate.wait(timeout=seconds)  # only the first call finds the gate shut
        held.calls.append(list(inputs[0]))  # e.g. the texts of this call, one per queued request
        return fn(*inputs)

    held.calls = []
    held.release = gate.set
    return held


def wait_until(ready: Callable[[], bool], seconds: float = 30.0) -> None:
    """Poll ``ready()`` every 10 ms until it holds (a client's job status follows the server's messages)."""
    import time

    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready after {seconds:g} s: is the server still running?")
        time.sleep(0.01)


def same_rows(a: list[list], b: list[list], tol: float = 1e-4) -> bool:
    """The same cells, probabilities (floats) equal to ``tol``: a batch's answers against single calls'."""
    return len(a) == len(b) and all(
        len(x) == len(y) and all(abs(u - v) <= tol if isinstance(u, float) else u == v for u, v in zip(x, y))
        for x, y in zip(a, b)
    )


# Notebook 05, appended: the readings behind its tables, so that the notebook shows the lines that teach.

ATTENTION_PLACES = ("left", "itself", "right", "own sentence, other words", "[CLS]/[SEP]", "other sentence")


def attention_places(
    tokens: list[str], attentions: torch.Tensor, cls_token: str = "[CLS]", sep_token: str = "[SEP]"
) -> pd.DataFrame:
    """Per (layer, head): the mean weight a word token puts on each of six places; every row sums to 1.

    A word's places: the word just left and just right of it in its own sentence, itself, the other words of its own
    sentence, the special tokens ([CLS] and both [SEP]s), and the words of the other sentence. ``attentions``:
    (layers, heads, seq_len, seq_len), as helpers.inference.pair_attentions gives them for ``[CLS] A [SEP] B [SEP]``.
    """
    n = len(tokens)
    special = torch.tensor([t in (cls_token, sep_token) for t in tokens])  # (seq_len,)
    in_b = torch.arange(n) > tokens.index(sep_token)  # (seq_len,): B's tokens (and its [SEP])
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]  # attending row, attended column
    same, word = in_b[:, None] == in_b[None, :], ~special[None, :]  # (seq_len, seq_len)
    place = torch.full((n, n), 3)  # (seq_len, seq_len): index into ATTENTION_PLACES, by default "own sentence"
    place[same & word & (j == i - 1)] = 0
    place[same & word & (j == i + 1)] = 2
    place[(j == i).expand(n, n)] = 1
    place[special[None, :].expand(n, n)] = 4
    place[~same & word] = 5
    rows = torch.arange(n)[~special]  # the attending words
    one_hot = torch.nn.functional.one_hot(place[rows], len(ATTENTION_PLACES)).to(attentions.dtype)  # (rows, n, 6)
    weights = torch.einsum("lhrs,rsp->lhp", attentions[..., rows, :], one_hot) / len(rows)  # (layers, heads, 6)
    layers, heads = attentions.shape[:2]
    return pd.DataFrame(
        weights.reshape(layers * heads, -1).numpy(),
        index=pd.MultiIndex.from_product([range(layers), range(heads)], names=["layer", "head"]),
        columns=list(ATTENTION_PLACES),
    )


EXPOSURE_BINS = ((0, 0), (1, 2), (3, 5), (6, 10), (11, None))  # times a true pair was shown as "B follows A"


def nsp_exposure_groups(
    epoch_pairs: Sequence[Sequence[Pair]],
    nsp_from: int,
    train_sentences: dict[int, list[str]],
    val_pairs: Sequence[Pair],
    seed: int,
) -> dict[str, list[Pair]]:
    """Every true pair of the training paragraphs, grouped by how often NSP training showed it, and three references.

    ``epoch_pairs[e]``: the pairs epoch ``e`` trained on (``PreparedData.train_pairs``, the same draw training made).
    NSP joined the loss at epoch ``nsp_from``, so only the epochs from there on count as showing a pair. The true pairs
    are the positions of ``make_pairs(train_sentences, exhaustive=True, seed=seed)``; its random Bs that no epoch built
    are "training sentences never paired": familiar sentences, in pairs the model never saw.
    """
    from helpers.pairs import IS_RANDOM, make_pairs

    shown = Counter(p[:2] for pairs in epoch_pairs[nsp_from:] for p in pairs if p.next_sentence_label == IS_NEXT)
    ever = {p[:2] for pairs in epoch_pairs for p in pairs}  # every (A, B) any epoch built, before NSP joined too
    every = make_pairs(train_sentences, exhaustive=True, seed=seed)
    true = [p for p in every if p.next_sentence_label == IS_NEXT]
    groups = {}
    for low, high in EXPOSURE_BINS:
        times = f"{low}+" if high is None else str(low) if low == high else f"{low}-{high}"
        groups[f"training, true, shown {times} times"] = [
            p for p in true if low <= shown[p[:2]] and (high is None or shown[p[:2]] <= high)
        ]
    groups["held-out, true"] = [p for p in val_pairs if p.next_sentence_label == IS_NEXT]
    groups["training sentences never paired, random"] = [
        p for p in every if p.next_sentence_label == IS_RANDOM and p[:2] not in ever
    ]
    groups["held-out, random"] = [p for p in val_pairs if p.next_sentence_label == IS_RANDOM]
    return groups


def judged_follows(
    groups: dict[str, Sequence[Pair]], judge: Callable[[list[tuple[str, str]]], list[bool]], chunk: int = 64
) -> pd.DataFrame:
    """Per group: its number of pairs and the share that ``judge`` (a list of (A, B) -> one bool each: "B follows
    A"?) says follow. Each distinct pair is judged once, ``chunk`` pairs of similar length a call (less padding)."""
    asked = sorted({p[:2] for pairs in groups.values() for p in pairs}, key=lambda ab: (len(ab[0]) + len(ab[1]), ab))
    verdict = {}
    for start in range(0, len(asked), chunk):
        verdict.update(zip(asked[start : start + chunk], judge(asked[start : start + chunk])))
    return pd.DataFrame(
        {
            "pairs": {label: len(pairs) for label, pairs in groups.items()},
            "judged 'B follows A'": {
                label: sum(verdict[p[:2]] for p in pairs) / max(len(pairs), 1) for label, pairs in groups.items()
            },
        }
    )


def times_hidden(
    epoch_pairs: Sequence[Sequence[Pair]], tokenizer: PreTrainedTokenizerBase, mlm_probability: float
) -> Counter:
    """Per token id: how often training hid it, expected: ``mlm_probability`` x its appearances in every epoch's pairs.

    Each sentence is tokenized alone and counted whole (a pair cut at max_length overcounts a little); the draw the
    collator made is not replayed.
    """
    ids: dict[str, list[int]] = {}
    appearances = Counter()
    for pairs in epoch_pairs:
        for sentence, times in Counter(s for p in pairs for s in p[:2]).items():
            if sentence not in ids:
                ids[sentence] = tokenizer(sentence, add_special_tokens=False, verbose=False)["input_ids"]
            for token in ids[sentence]:
                appearances[token] += times
    return Counter({token: mlm_probability * n for token, n in appearances.items()})


def scored_masks(
    model: BertForPreTraining,
    tokenizer: PreTrainedTokenizerBase,
    memory: ContextCounts,
    strength: float,
    batches: Sequence[dict],
    counts: Counter,
    hidden: Counter,
) -> pd.DataFrame:
    """One row per [MASK] of ``batches`` (masked with labels, as helpers.dataset.validation_batches gives them).

    Columns: whether the model, the memory's argmax (context counting) and their mix at ``strength`` guessed the
    hidden token (1.0 or 0.0); how often the training text holds it (``counts``, e.g. TrainingText.unigram); how often
    training hid it (``hidden``, from times_hidden); the widest context of it the table had seen, in tokens.
    """
    columns: dict[str, list] = {key: [] for key in ("model", "context counting", "model + memory")}
    truths, widest = [], []
    for batch in batches:
        inputs = {key: batch[key] for key in ("input_ids", "token_type_ids", "attention_mask")}
        with torch.no_grad():
            scores, at_mask = mask_logits(model, inputs, tokenizer.mask_token_id)  # (n_masks, vocab), (batch, seq)
        if not torch.equal(at_mask, batch["labels"] != IGNORE_INDEX):
            raise ValueError("Every labelled position must be a [MASK] and every [MASK] labelled (validation masking).")
        truth = batch["labels"][at_mask]  # (n_masks,)
        table = memory.probabilities(batch["input_ids"], at_mask)  # .probs: (n_masks, vocab)
        mixed = mix(scores.softmax(-1), table, strength=strength)  # (n_masks, vocab)
        for key, probs in zip(columns, (scores, table.probs, mixed)):
            columns[key] += (probs.argmax(-1) == truth).float().tolist()
        truths += truth.tolist()
        widest += table.widest.tolist()
    return pd.DataFrame(
        columns
        | {
            "in the training text": [counts[t] for t in truths],
            "times hidden in training": [hidden[t] for t in truths],
            "widest context seen": widest,
        }
    )


# ----- notebook 04: the departures from BERT-base's recipe, with the runs that measured each -----

# Per row: the setting, BERT-base's choice, ours (from the profile), the other choice as run ("≈": a nearby value,
# not BERT's own), the two variants of benchmarks/learning.json (the other choice, ours) or None where the notebook
# measures it, the Config fields in which the two runs' recipes differ (checked), the write-up, and the reason.
DEPARTURES: list[tuple[str, str, Callable[[Any], str], str, tuple[str, str] | None, set[str], str, str]] = [
    (
        "model size",
        "12 layers × 768, 12 heads",
        lambda c: f"{c.num_hidden_layers} layers × {c.hidden_size}, {c.num_attention_heads} heads",
        "≈ 256 wide, 10 epochs (not 24)",
        ("width_256", "dropout_0.1"),
        {"hidden_size", "num_attention_heads", "intermediate_size", "epochs"},
        "kept",
        "more weights need more text than one book holds",
    ),
    (
        "vocabulary",
        "30,522 WordPiece tokens",
        lambda c: f"WordPiece trained on the book, up to {c.vocab_size:,}",
        "",
        None,
        set(),
        "",
        "one book has few distinct words: a bigger table stays unused",
    ),
    (
        "tokens per pair",
        "128, then 512 for the last 10% of steps",
        lambda c: f"{c.max_length}",
        "",
        None,
        set(),
        "",
        "single-sentence pairs are short: nearly all fit",
    ),
    (
        "a segment (A or B)",
        "several sentences, packed up to the length",
        lambda c: f"{c.max_segment_sentences} sentence",
        "≈ up to 2 sentences, 16 epochs (not 24)",
        ("spans_2", "dropout_0.1"),
        {"max_segment_sentences", "epochs"},
        "kept",
        "longer segments mean fewer pairs from one book",
    ),
    (
        "tokens selected for MLM",
        "15%",
        lambda c: f"{c.mlm_probability:.0%}",
        "15% together with 80/10/10, NSP from step 0, batch 32, 30 epochs",
        ("old_default", "dropout_0.1"),
        {"mlm_probability", "mask_replace_prob", "random_replace_prob", "mlm_only_ratio", "batch_size", "epochs"},
        "kept",
        "more hidden words per pass give more to learn from a small book",
    ),
    (
        "what a selected token becomes",
        "80% [MASK], 10% a random token, 10% itself",
        lambda c: f"{c.mask_replace_prob:.0%} [MASK]",
        "80/10/10",
        ("default_80_10_10", "round5_default"),
        {"mask_replace_prob", "random_replace_prob"},
        "time",
        "80/10/10 prepares for fine-tuning, which never shows [MASK]; we only pretrain. All tokens: a tie",
    ),
    (
        "when NSP joins the loss",
        "from step 0",
        lambda c: f"after {c.mlm_only_ratio:.0%} of the steps",
        "from step 0",
        ("nsp_from_start", "dropout_0.1"),
        {"mlm_only_ratio"},
        "kept",
        "NSP from the start slows MLM; MLM builds what NSP reads",
    ),
    (
        "dropout",
        "0.1",
        lambda c: f"{c.dropout:g}",
        "0.1",
        ("dropout_0.1", "init_0.02"),
        {"dropout"},
        "kept",
        "dropout fights overfitting in a big model; here it only slowed learning",
    ),
    (
        "initial spread of the weights",
        "0.02",
        lambda c: f"{c.initializer_range:g}",
        "0.02",
        ("init_0.02", "random_attention"),
        {"initializer_range"},
        "kept",
        "a small model moves faster from a wider start",
    ),
    (
        "layer 0's attention at the start",
        "random",
        lambda c: f"heads on the tokens at offsets {c.neighbour_offsets}",
        "random",
        ("random_attention", "round4_default"),
        {"position_dims", "neighbour_offsets"},
        "attention",
        "the neighbours matter most (counting shows it): start there",
    ),
    (
        "MLM output bias at the start",
        "0",
        lambda c: "log-frequency of each token",
        "0",
        ("short_linear", "short_unigram_bias"),
        {"output_bias_init"},
        "time",
        "the first guess is the unigram one, not even bets",
    ),
    (
        "peak learning rate",
        "1e-4",
        lambda c: f"{c.lr:g}",
        "≈ 1.5e-3",
        ("lr_1.5e-3", "init_0.02"),
        {"lr"},
        "kept",
        "a small model takes a larger rate, but 1.5e-3 is too large",
    ),
    (
        "schedule after the warm-up",
        "linear decay to 0",
        lambda c: f"held, then linear decay over the last {c.decay_ratio:.0%} (wsd)",
        "linear decay",
        ("short_linear", "short_wsd"),
        {"lr_schedule"},
        "time",
        "more steps at the peak rate in a short run",
    ),
    (
        "word embeddings' and output bias's rate",
        "the same as the rest",
        lambda c: f"{c.embedding_lr or c.lr:g} (the rest {c.lr:g})",
        "the same",
        ("short_linear", "short_embedding_lr"),
        {"embedding_lr"},
        "time",
        "a rare word's row is updated seldom: larger steps help it",
    ),
    (
        "pairs per batch",
        "256",
        lambda c: f"{c.batch_size}",
        "≈ 16",
        ("default_batch_16_same_lr", "round5_default"),
        {"batch_size"},
        "time",
        "smaller batches give more steps per pass over the book",
    ),
    (
        "training length",
        "1,000,000 steps (about 40 passes over 3.3 B words)",
        lambda c: f"{c.epochs} epochs",
        "≈ 11 epochs",
        ("default_11_epochs", "round5_default"),
        {"epochs"},
        "time",
        "a CPU's budget; one epoch fewer already loses rare words",
    ),
]

WRITE_UPS = {
    "kept": ("what was kept and why", "../docs/experiments.md#what-was-kept-and-why"),
    "attention": ("where attention starts", "../docs/experiments.md#fourth-round-where-attention-starts"),
    "time": ("time to quality", "../docs/experiments.md#fifth-round-time-to-quality"),
}


def _mean_accuracy(runs: list[dict[str, Any]], seeds: set[int], key: str) -> float | None:
    """Runs' held-out MLM accuracy ``key`` over ``seeds`` (over each run's fresh draws of masks where it kept them);
    None where a run kept only the whole accuracy."""
    values = []
    for run in (r for r in runs if r["seed"] in seeds):
        if "draws" in run:
            values.append(sum(draw[key] for draw in run["draws"]) / len(run["draws"]))
        elif key in run["final"]:
            values.append(run["final"][key])
        else:
            return None
    return sum(values) / len(values)


def _commits(runs: list[dict[str, Any]]) -> str:
    """'commit b31a34d*, cbaefb7* of 2026-11-29': each run's commit by date; '*': with edits not yet committed."""
    by_date: dict[str, dict[str, bool]] = {}
    for run in runs:
        commit = run["code_version"].split()[0]
        edited = commit.endswith("+changes")
        hashes = by_date.setdefault(run["date"], {})
        hashes[commit.removesuffix("+changes")] = hashes.get(commit.removesuffix("+changes"), False) or edited
    return "; ".join(
        "commit " + ", ".join(h + "*" * edited for h, edited in sorted(hashes.items())) + f" of {date}"
        for date, hashes in sorted(by_date.items())
    )


def departures_frame(learning: dict[str, Any], cfg: Any, measured: dict[str, str] | None = None) -> pd.DataFrame:
    """Every way ``cfg`` departs from BERT-base's recipe: setting, BERT-base, ours, the evidence and the reason.

    ``learning``: benchmarks/learning.json. The evidence of a row is two variants run on the same seeds, one with the
    other choice and one with ours: "other choice: a → b", the mean held-out MLM accuracy at [MASK] (the other's →
    ours), "; rare" the same on the tokens outside the 100 most frequent where the runs measured it, the seeds, and
    each run's commit and date. ``measured`` gives the evidence of the rows a notebook measures itself (vocabulary,
    tokens per pair). ``.attrs["decided"]``: per row with runs, (other, ours) on the figure that decides it, the rare
    tokens where measured, else all tokens. Raises ValueError where a row's runs differ in more than its fields.
    """
    measured = measured or {}
    runs: dict[str, list[dict[str, Any]]] = {}
    for run in learning["runs"]:
        runs.setdefault(run["variant"], []).append(run)
    rows, decided = [], {}
    for setting, bert, ours, other, variants, fields, write_up, reason in DEPARTURES:
        row = {"setting": setting, "BERT-base": bert, "ours": ours(cfg)}
        if variants is None:
            rows.append(row | {"evidence": measured.get(setting, "–"), "reason": reason})
            continue
        recipes = [{**learning["base_profile"], **runs[v][0]["overrides"]} for v in variants]
        differ = {key for key in recipes[0].keys() | recipes[1].keys() if recipes[0].get(key) != recipes[1].get(key)}
        if differ != fields:
            raise ValueError(f"The runs behind '{setting}' differ in {sorted(differ)}, not {sorted(fields)}.")
        seeds = {r["seed"] for r in runs[variants[0]]} & {r["seed"] for r in runs[variants[1]]}
        alls, rares = (
            [_mean_accuracy(runs[v], seeds, key) for v in variants]
            for key in ("mlm_accuracy_at_mask", "mlm_accuracy_rest")
        )
        decided[setting] = tuple(rares if rares[0] is not None else alls)
        figures = f"{alls[0]:.3f} → {alls[1]:.3f}" + (
            f"; rare {rares[0]:.3f} → {rares[1]:.3f}" if rares[0] is not None else ""
        )
        used = [r for v in variants for r in runs[v] if r["seed"] in seeds]
        seeds_text = f"{len(seeds)} seed{'s' * (len(seeds) > 1)}"
        evidence = f"{other}: {figures}, {seeds_text}, {_commits(used)} ({WRITE_UPS[write_up][0]})"
        rows.append(row | {"evidence": evidence, "reason": reason})
    frame = pd.DataFrame(rows).set_index("setting")
    frame.attrs["decided"] = decided
    return frame


def accuracy_by_kind(final: dict[str, float]) -> pd.DataFrame:
    """A run's held-out MLM accuracies at [MASK] (``metrics.json``'s "final" and "baselines" merged) as a table:
    one row per counting baseline, then the model and the model with its memory; columns ``all``, ``frequent`` (the
    100 most frequent training tokens) and ``rest``."""
    from helpers.baselines import ACCURACIES, BASELINES, WITH_MEMORY, baseline_key

    kinds = {"all": None, "frequent": "frequent", "rest": "rest"}
    mlm = {name: next(a for a in ACCURACIES if a.task == "mlm" and a.part == part) for name, part in kinds.items()}
    rows = {b.words: {k: final[baseline_key(b, a)] for k, a in mlm.items()} for b in BASELINES if b.task == "mlm"}
    rows["model"] = {k: final[a.key] for k, a in mlm.items()}
    rows["model + memory"] = {k: final[WITH_MEMORY + a.key] for k, a in mlm.items()}
    return pd.DataFrame(rows).T[list(kinds)]
