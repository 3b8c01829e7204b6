"""What counting alone gets you: the one table of the baselines that every accuracy is shown beside.

A model has learned something only where it beats these. The counted ones are fitted on the training paragraphs and
scored on exactly the validation masks and pairs the model is scored on; chance is a fixed figure.

``ACCURACIES`` lists the held-out accuracies, ``BASELINES`` what stands beside them. The keys of a run's metrics, the
training printout, metrics.json, the model card, W&B, the figures, the demo's panel and benchmarks/learning.py all
read these two tables, so adding a baseline is one class and one entry of ``BASELINES``.

MLM accuracy is also split by the token hidden: the training text's ``FREQUENT_TOKENS`` most frequent tokens (where
the unigram guess scores) and the rest. Every MLM baseline is scored on both parts, on the same masks.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from transformers import PreTrainedTokenizerBase

from helpers.masking import IGNORE_INDEX
from helpers.pairs import IS_NEXT, IS_RANDOM, Pair

FREQUENT_TOKENS = 100
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class Accuracy:
    """A held-out accuracy: its key in a run's metrics, its words, its task, and which positions it counts."""

    key: str
    words: str
    task: str  # "mlm" or "nsp": the baselines of the same task stand beside it
    part: str | None = None  # None: every position; "frequent" / "rest": those whose hidden token is (not) frequent


ACCURACIES = (
    Accuracy("mlm_accuracy_at_mask", "MLM accuracy at [MASK]", "mlm"),
    Accuracy(
        "mlm_accuracy_frequent",
        f"MLM accuracy at [MASK], the {FREQUENT_TOKENS} most frequent tokens",
        "mlm",
        "frequent",
    ),
    Accuracy("mlm_accuracy_rest", "MLM accuracy at [MASK], the other tokens", "mlm", "rest"),
    Accuracy("nsp_accuracy", "NSP accuracy", "nsp"),
)


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


def positions_of(accuracy: Accuracy, labels: torch.Tensor, frequent: torch.Tensor) -> torch.Tensor:
    """Which of the hidden tokens ``labels`` (n,) count for ``accuracy``; (n,) bool."""
    if accuracy.part is None:
        return torch.ones_like(labels, dtype=torch.bool)
    is_frequent = torch.isin(labels, frequent)
    return is_frequent if accuracy.part == "frequent" else ~is_frequent


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

    def score(self, batches: Sequence[dict[str, torch.Tensor]], frequent: torch.Tensor) -> dict[str, float]:
        """Accuracy at the labelled positions of ``batches``, per MLM accuracy key."""
        hits, answers = [], []
        for batch in batches:
            ids, labels = batch["input_ids"].tolist(), batch["labels"]
            for row, col in (labels != IGNORE_INDEX).nonzero().tolist():
                right = ids[row][col + 1] if col + 1 < len(ids[row]) else self.mask_id
                answers.append(int(labels[row, col]))
                hits.append(answers[-1] == self.guess(ids[row][col - 1], right))
        hit, answer = torch.tensor(hits, dtype=torch.bool), torch.tensor(answers, dtype=torch.long)
        scores = {}
        for accuracy in ACCURACIES:
            if accuracy.task == "mlm":
                counted = positions_of(accuracy, answer, frequent)
                scores[accuracy.key] = (hit & counted).sum().item() / max(counted.sum().item(), 1)
        return scores


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

    @staticmethod
    def _accuracy(shared: Sequence[int], truth: Sequence[int], threshold: int) -> float:
        guesses = [IS_NEXT if s >= threshold else IS_RANDOM for s in shared]
        return sum(g == t for g, t in zip(guesses, truth)) / max(len(truth), 1)

    def score(self, pairs: Sequence[Pair]) -> float:
        """Accuracy of the rule on ``pairs``."""
        shared = [self.shared(p.sentence_a, p.sentence_b) for p in pairs]
        return self._accuracy(shared, [p.next_sentence_label for p in pairs], self.threshold)


# The one table. Adding a baseline: a class above (a MaskGuess for MLM, or one with score(pairs) for NSP) and an
# entry here; every place that shows a baseline reads this.
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
    values = {}
    for baseline in BASELINES:
        if baseline.count is None:
            continue
        rule = baseline.count(text)
        if baseline.task == "mlm":
            scores = rule.score(batches, text.frequent)
            values |= {baseline_key(baseline, a): scores[a.key] for a in ACCURACIES if a.key in scores}
        else:
            values |= {baseline_key(baseline, a): rule.score(pairs) for a in ACCURACIES if a.task == baseline.task}
    return values
