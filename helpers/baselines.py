"""What counting alone gets you: the baselines that every model metric is shown beside.

A model has learned something only where it beats these. All three are fitted on the training paragraphs
and scored on exactly the validation masks and pairs the model is scored on.

- ``unigram``: always guess the most frequent training token.
- ``neighbours``: guess the token seen most often between the same left and right neighbours in the
  training paragraphs (backing off to the left neighbour, then the right one, then the unigram guess).
- ``word_overlap``: say "B follows A" when A and B share at least ``threshold`` content words, the
  threshold that scores best on the training pairs (content words: all but the training text's most
  frequent words).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import torch
from transformers import PreTrainedTokenizerBase

from helpers.masking import IGNORE_INDEX
from helpers.pairs import IS_NEXT, IS_RANDOM, Pair

BASELINE_NAMES = {"unigram": "most frequent training token", "neighbours": "same left and right neighbours",
                  "word_overlap": "shared content words"}
_WORD = re.compile(r"[a-z]+")


class MaskBaselines:
    """The unigram and neighbour-counting guesses for [MASK] positions, counted on training text."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]):
        self.mask_id = tokenizer.mask_token_id
        self.unigram: Counter[int] = Counter()
        between: dict[tuple[int, int], Counter[int]] = defaultdict(Counter)
        after: dict[int, Counter[int]] = defaultdict(Counter)
        before: dict[int, Counter[int]] = defaultdict(Counter)
        for ids in tokenizer(list(texts), add_special_tokens=True, verbose=False)["input_ids"]:  # [CLS] text [SEP]
            self.unigram.update(ids[1:-1])  # special tokens are never masked, so never an answer
            for left, mid, right in zip(ids, ids[1:-1], ids[2:]):
                between[left, right][mid] += 1
                after[left][mid] += 1
                before[right][mid] += 1
        self.top = self.unigram.most_common(1)[0][0]
        # Keep only each context's winner: the table is then a plain lookup.
        self.between = {k: c.most_common(1)[0][0] for k, c in between.items()}
        self.after = {k: c.most_common(1)[0][0] for k, c in after.items()}
        self.before = {k: c.most_common(1)[0][0] for k, c in before.items()}

    def guess(self, left: int, right: int) -> int:
        """The neighbour-counting guess for a [MASK] between ``left`` and ``right`` (either may be [MASK])."""
        if (left, right) in self.between:
            return self.between[left, right]
        if left != self.mask_id and left in self.after:
            return self.after[left]
        if right != self.mask_id and right in self.before:
            return self.before[right]
        return self.top

    def score(self, batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, float]:
        """Accuracy of both guesses at the labelled positions of ``batches``."""
        hits = Counter()
        total = 0
        for batch in batches:
            ids, labels = batch["input_ids"].tolist(), batch["labels"]
            for row, col in (labels != IGNORE_INDEX).nonzero().tolist():
                answer = int(labels[row, col])
                hits["unigram"] += answer == self.top
                right = ids[row][col + 1] if col + 1 < len(ids[row]) else self.mask_id
                hits["neighbours"] += answer == self.guess(ids[row][col - 1], right)
                total += 1
        return {name: hits[name] / max(total, 1) for name in ("unigram", "neighbours")}


class OverlapBaseline:
    """Say "B follows A" when A and B share at least ``threshold`` content words."""

    def __init__(self, texts: Iterable[str], train_pairs: Sequence[Pair], n_function_words: int = 100):
        counts = Counter(word for text in texts for word in _WORD.findall(text.lower()))
        # The most frequent words of the text are its function words (the, and, of, ...): not evidence.
        self.function_words = {word for word, _ in counts.most_common(n_function_words)}
        shared = [self.shared(p.sentence_a, p.sentence_b) for p in train_pairs]
        truth = [p.next_sentence_label for p in train_pairs]
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
