"""What counting alone gets you: the one table of the baselines that every accuracy is shown beside.

A model has learned something only where it beats these. The counted ones are fitted on the training paragraphs and
scored on exactly the validation masks and pairs the model is scored on; chance is a fixed figure.

``ACCURACIES`` lists the held-out accuracies, ``BASELINES`` what stands beside them. The keys of a run's metrics, the
training printout, metrics.json, the model card, W&B, the figures, the demo's panel and benchmarks/learning.py all
read these two tables, so adding a baseline is one class and one entry of ``BASELINES``, and adding an accuracy
(a new part of the masks or pairs, say) one entry of ``ACCURACIES``.

MLM accuracy is also split by the token hidden: the training text's ``FREQUENT_TOKENS`` most frequent tokens (where
the unigram guess scores) and the rest. Every MLM baseline is scored on both parts, on the same masks.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from transformers import PreTrainedTokenizerBase

from helpers.masking import IGNORE_INDEX
from helpers.memory import ContextCounts
from helpers.pairs import IS_NEXT, IS_RANDOM, Pair

FREQUENT_TOKENS = 100
_WORD = re.compile(r"[a-z]+")


def everything(truth: torch.Tensor, frequent: torch.Tensor) -> torch.Tensor:
    """Every item counts: (n,) True."""
    return torch.ones_like(truth, dtype=torch.bool)


def frequent_tokens(truth: torch.Tensor, frequent: torch.Tensor) -> torch.Tensor:
    """The positions whose hidden token is one of the training text's most frequent: (n,) bool."""
    return torch.isin(truth, frequent)


def other_tokens(truth: torch.Tensor, frequent: torch.Tensor) -> torch.Tensor:
    """The positions whose hidden token is not one of the most frequent: (n,) bool."""
    return ~torch.isin(truth, frequent)


@dataclass(frozen=True)
class Accuracy:
    """A held-out accuracy: its key in a run's metrics, its words, its task, which items it counts, its card sentence.

    Every predictor (the model and each counted baseline) gives one top guess per item of its task: the hidden token
    at each [MASK] (``mlm``) or the verdict on each pair (``nsp``). An accuracy is the share of the items it counts
    where that guess is the truth, so the model and its baselines are scored by the same entry on the same items.
    """

    key: str
    words: str
    task: str  # "mlm" or "nsp": the baselines of the same task stand beside it
    card: str  # what it counts, for the model card; {share} is the share of held-out tokens masked
    counts: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = everything  # (truth (n,), frequent) -> (n,) bool
    part: str | None = None  # a part of another accuracy's items: the suffix of its baselines' keys; None: the whole


ACCURACIES = (
    Accuracy(
        "mlm_accuracy_at_mask",
        "MLM accuracy at [MASK]",
        "mlm",
        "**MLM accuracy at [MASK]** counts, over the held-out paragraphs with {share} of their tokens selected and "
        "every selected token replaced by [MASK], how often the model's top guess is the original token.",
    ),
    Accuracy(
        "mlm_accuracy_frequent",
        f"MLM accuracy at [MASK], the {FREQUENT_TOKENS} most frequent tokens",
        "mlm",
        f"**MLM accuracy at [MASK], the {FREQUENT_TOKENS} most frequent tokens** counts the same positions where the "
        f"hidden token is one of the {FREQUENT_TOKENS} most frequent tokens of the training text.",
        frequent_tokens,
        "frequent",
    ),
    Accuracy(
        "mlm_accuracy_rest",
        "MLM accuracy at [MASK], the other tokens",
        "mlm",
        "**MLM accuracy at [MASK], the other tokens** counts the rest of those positions.",
        other_tokens,
        "rest",
    ),
    Accuracy(
        "nsp_accuracy",
        "NSP accuracy",
        "nsp",
        '**NSP accuracy** counts how often the verdict ("B follows A" or "B is random") is right on held-out '
        "sentence pairs, half of them true next sentences and half with B drawn from another paragraph.",
    ),
)


def score(accuracy: Accuracy, guesses: torch.Tensor, truth: torch.Tensor, frequent: torch.Tensor) -> float:
    """The share of the items ``accuracy`` counts where the guess (n,) is the truth (n,)."""
    counted = accuracy.counts(truth, frequent)  # (n,) bool
    return ((guesses == truth) & counted).sum().item() / max(counted.sum().item(), 1)


def scores(
    answers: dict[str, tuple[torch.Tensor, torch.Tensor]], frequent: torch.Tensor, prefix: str = ""
) -> dict[str, float]:
    """Every accuracy of a task in ``answers`` ({task: (guesses, truth)}), by its key (after ``prefix``)."""
    return {prefix + a.key: score(a, *answers[a.task], frequent) for a in ACCURACIES if a.task in answers}


# The model with the memory beside it (helpers.memory.mix: the two answers at each [MASK] interpolated) is scored by
# the same MLM accuracies, kept under this prefix: with_memory_mlm_accuracy_at_mask, and so on.
WITH_MEMORY = "with_memory_"


@dataclass(frozen=True)
class Baseline:
    """One baseline: its name (keys baseline_<name>[_<part>]), its words, its rule, its task, its line in figures."""

    name: str
    words: str
    about: str  # what it does, for the model card: "*{words}* {about}"
    task: str
    colour: str
    linestyle: str
    count: type | None = None  # the class that counts it: an accuracy, measured on the data the model is scored on
    chance: float | None = None  # or a fixed figure


def baseline_key(baseline: Baseline, accuracy: Accuracy) -> str:
    """'baseline_unigram' beside the whole MLM accuracy, 'baseline_unigram_frequent' beside its frequent part."""
    return f"baseline_{baseline.name}" + (f"_{accuracy.part}" if accuracy.part else "")


def beside(accuracy: Accuracy) -> list[Baseline]:
    """The baselines that stand beside ``accuracy``, in the table's order."""
    return [baseline for baseline in BASELINES if baseline.task == accuracy.task]


def accuracy(key: str) -> Accuracy:
    """The accuracy of that key."""
    return next(entry for entry in ACCURACIES if entry.key == key)


def named(name: str) -> Baseline:
    """The baseline of that name."""
    return next(baseline for baseline in BASELINES if baseline.name == name)


@dataclass
class TrainingText:
    """What the counted baselines are fitted on: the training paragraphs, their tokens, and the training pairs."""

    tokenizer: PreTrainedTokenizerBase
    texts: list[str]
    pairs: list[Pair]

    @cached_property
    def ids(self) -> list[list[int]]:
        """Each paragraph's token ids, [CLS] text [SEP]."""
        return self.tokenizer(list(self.texts), add_special_tokens=True, verbose=False)["input_ids"]

    @cached_property
    def unigram(self) -> Counter[int]:
        """How often each token occurs (special tokens are never masked, so never counted)."""
        counts: Counter[int] = Counter()
        for ids in self.ids:
            counts.update(ids[1:-1])
        return counts

    @cached_property
    def memory(self) -> ContextCounts:
        """The context-count table of these paragraphs (helpers.memory): what counting remembers of the book."""
        return ContextCounts.build(self.ids, self.tokenizer)

    @cached_property
    def frequent(self) -> torch.Tensor:
        """(FREQUENT_TOKENS,) ids of the most frequent tokens: the 'frequent' part of the MLM split."""
        return torch.tensor([token for token, _ in self.unigram.most_common(FREQUENT_TOKENS)])


class MaskGuess:
    """An MLM baseline: one guess per [MASK] from its two neighbours, scored like the model on every MLM accuracy."""

    def __init__(self, text: TrainingText):
        self.mask_id = text.tokenizer.mask_token_id
        self.top = text.unigram.most_common(1)[0][0]

    def guess(self, left: int, right: int) -> int:
        raise NotImplementedError

    def guesses(self, batches: Sequence[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """One guess per labelled position of ``batches``, and the hidden tokens there: (n,) and (n,)."""
        guesses, truth = [], []
        for batch in batches:
            ids, labels = batch["input_ids"].tolist(), batch["labels"]
            for row, col in (labels != IGNORE_INDEX).nonzero().tolist():  # row by row, as labels[labels != -100]
                right = ids[row][col + 1] if col + 1 < len(ids[row]) else self.mask_id
                guesses.append(self.guess(ids[row][col - 1], right))
                truth.append(int(labels[row, col]))
        return torch.tensor(guesses, dtype=torch.long), torch.tensor(truth, dtype=torch.long)

    def score(self, batches: Sequence[dict[str, torch.Tensor]], frequent: torch.Tensor) -> dict[str, float]:
        """Every MLM accuracy of these guesses at the labelled positions of ``batches``, by key."""
        return scores({"mlm": self.guesses(batches)}, frequent)


class UnigramGuess(MaskGuess):
    """Always the most frequent training token."""

    def guess(self, left: int, right: int) -> int:
        return self.top


class NeighbourGuess(MaskGuess):
    """The token seen most often between the same left and right neighbours (backing off to one side, then unigram)."""

    def __init__(self, text: TrainingText):
        super().__init__(text)
        between: dict[tuple[int, int], Counter[int]] = defaultdict(Counter)
        after: dict[int, Counter[int]] = defaultdict(Counter)
        before: dict[int, Counter[int]] = defaultdict(Counter)
        for ids in text.ids:
            for left, mid, right in zip(ids, ids[1:-1], ids[2:]):
                between[left, right][mid] += 1
                after[left][mid] += 1
                before[right][mid] += 1
        # Keep only each context's winner: the table is then a plain lookup.
        self.between = {k: c.most_common(1)[0][0] for k, c in between.items()}
        self.after = {k: c.most_common(1)[0][0] for k, c in after.items()}
        self.before = {k: c.most_common(1)[0][0] for k, c in before.items()}

    def guess(self, left: int, right: int) -> int:
        """The guess for a [MASK] between ``left`` and ``right`` (either may be [MASK])."""
        if (left, right) in self.between:
            return self.between[left, right]
        if left != self.mask_id and left in self.after:
            return self.after[left]
        if right != self.mask_id and right in self.before:
            return self.before[right]
        return self.top


class ContextGuess:
    """The context-count table's most likely token at each [MASK]: counting with up to two neighbours on each side."""

    def __init__(self, text: TrainingText):
        self.memory = text.memory

    def guesses(self, batches: Sequence[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """One guess per labelled position of ``batches``, and the hidden tokens there: (n,) and (n,)."""
        guesses, truth = [], []
        for batch in batches:
            labelled = batch["labels"] != IGNORE_INDEX  # (batch, seq_len): every one a [MASK] in validation
            guesses.append(self.memory.probabilities(batch["input_ids"], labelled).probs.argmax(-1))  # (n_masked,)
            truth.append(batch["labels"][labelled])
        return torch.cat(guesses), torch.cat(truth)


class OverlapBaseline:
    """Say "B follows A" when A and B share at least ``threshold`` content words."""

    def __init__(self, text: TrainingText, n_function_words: int = 100):
        counts = Counter(word for paragraph in text.texts for word in _WORD.findall(paragraph.lower()))
        # The most frequent words of the text are its function words (the, and, of, ...): not evidence.
        self.function_words = {word for word, _ in counts.most_common(n_function_words)}
        shared = [self.shared(p.sentence_a, p.sentence_b) for p in text.pairs]
        truth = [p.next_sentence_label for p in text.pairs]
        # The threshold that scores best on the training pairs; ties go to the smaller threshold.
        candidates = range(0, max(shared, default=0) + 2)
        self.threshold = max(candidates, key=lambda t: (self._accuracy(shared, truth, t), -t))

    def shared(self, a: str, b: str) -> int:
        """How many distinct content words A and B have in common."""
        words = lambda text: set(_WORD.findall(text.lower())) - self.function_words  # noqa: E731
        return len(words(a) & words(b))

    def verdicts(self, shared: Sequence[int], threshold: int) -> torch.Tensor:
        """(n,): "B follows A" where a pair shares ``threshold`` content words or more, else "B is random"."""
        return torch.tensor([IS_NEXT if count >= threshold else IS_RANDOM for count in shared], dtype=torch.long)

    def _accuracy(self, shared: Sequence[int], truth: Sequence[int], threshold: int) -> float:
        return (self.verdicts(shared, threshold) == torch.tensor(truth)).float().mean().item() if truth else 0.0

    def guesses(self, pairs: Sequence[Pair]) -> tuple[torch.Tensor, torch.Tensor]:
        """The rule's verdict on each pair, and the truth: (n_pairs,) and (n_pairs,)."""
        verdicts = self.verdicts([self.shared(p.sentence_a, p.sentence_b) for p in pairs], self.threshold)
        return verdicts, torch.tensor([p.next_sentence_label for p in pairs], dtype=torch.long)

    def score(self, pairs: Sequence[Pair]) -> float:
        """Accuracy of the rule on ``pairs``."""
        return score(accuracy("nsp_accuracy"), *self.guesses(pairs), torch.tensor([]))


# The one table. Adding a baseline: a class above with guesses(batches) for MLM (a MaskGuess: guess(left, right)) or
# guesses(pairs) for NSP, and an entry here; every place that shows a baseline reads this.
BASELINES = (
    Baseline(
        "unigram",
        "unigram",
        "always guesses the most frequent training token",
        "mlm",
        "tab:blue",
        "--",
        count=UnigramGuess,
    ),
    Baseline(
        "neighbours",
        "neighbour counting",
        "guesses the token seen most often between the same left and right neighbours in the training text",
        "mlm",
        "tab:cyan",
        "--",
        count=NeighbourGuess,
    ),
    Baseline(
        "context_counting",
        "context counting",
        "guesses the token the training text holds most often with the same neighbours, up to two tokens on each "
        "side, every context it has seen weighed by how often it saw it",
        "mlm",
        "tab:purple",
        "-.",
        count=ContextGuess,
    ),
    Baseline(
        "word_overlap",
        "word overlap",
        'says "B follows A" when A and B share enough content words',
        "nsp",
        "tab:orange",
        "--",
        count=OverlapBaseline,
    ),
    Baseline("chance", "chance", "is a coin flip", "nsp", "black", ":", chance=0.5),  # half the pairs are true
)


def count_baselines(
    text: TrainingText, batches: Sequence[dict[str, torch.Tensor]], pairs: Sequence[Pair]
) -> dict[str, float]:
    """Every counted baseline, fitted on ``text``, scored on the validation ``batches`` and ``pairs``, by its key."""
    inputs = {"mlm": batches, "nsp": pairs}  # what each task's rules guess on: masked batches, or sentence pairs
    values = {}
    for baseline in (b for b in BASELINES if b.count is not None):
        guesses, truth = baseline.count(text).guesses(inputs[baseline.task])
        values |= {baseline_key(baseline, a): score(a, guesses, truth, text.frequent) for a in beside_task(baseline)}
    return values


def beside_task(baseline: Baseline) -> list[Accuracy]:
    """The accuracies ``baseline`` stands beside: every one of its task."""
    return [a for a in ACCURACIES if a.task == baseline.task]
