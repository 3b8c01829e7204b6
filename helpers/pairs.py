"""Sentences, the bag of random sentences, and 50/50 Next Sentence Prediction pairs."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

# BertForPreTraining's convention: index 0 = "B follows A", index 1 = "B is random".
IS_NEXT = 0
IS_RANDOM = 1
LABEL_NAMES = {IS_NEXT: "B follows A", IS_RANDOM: "B is random"}


class PairError(ValueError):
    """The corpus cannot give NSP pairs; the message says why and what to do."""


class Pair(NamedTuple):
    """One NSP example; the paragraph indices record where A and B came from."""

    sentence_a: str
    sentence_b: str
    next_sentence_label: int
    paragraph_a: int
    paragraph_b: int


def split_period(paragraph: str) -> list[str]:
    """The reference recipe's splitter: cut on every '.', drop empty pieces."""
    return [piece.strip() for piece in paragraph.split(".") if piece.strip()]


# Words whose trailing '.' does not end a sentence.
ABBREVIATIONS = {"mr", "mrs", "dr", "st", "e.g", "i.e", "viz", "cf", "vol", "ch", "no", "ib", "ibid", "lib", "ep"}
_END = re.compile(r"[.!?]+[\"'’”)\]]*\s+")


def split_smart(paragraph: str) -> list[str]:
    """Split after '.', '?' or '!' (kept), not after abbreviations or initials; ';' and ':' never split.

    >>> split_smart("Is it so? Yes; it is. Ask Mr. Rusticus.")
    ['Is it so?', 'Yes; it is.', 'Ask Mr. Rusticus.']
    """
    sentences, start = [], 0
    for match in _END.finditer(paragraph):
        before = paragraph[start : match.start()].split()
        word = before[-1].lower().rstrip(".") if before else ""
        following = paragraph[match.end() : match.end() + 1]
        ends_with_period_only = paragraph[match.start()] == "." and len(match.group().strip()) == 1
        if ends_with_period_only and (word in ABBREVIATIONS or (len(word) == 1 and word.isalpha())):
            continue  # "Mr. Rusticus", "M. Antoninus": not a sentence end
        if following and following.islower():
            continue  # "..., and so on. and then" is one sentence in this text's style
        sentences.append(paragraph[start : match.end()].strip())
        start = match.end()
    sentences.append(paragraph[start:].strip())
    # A piece with no letter or digit (e.g. a lone "...") is not a sentence.
    return [s for s in sentences if any(ch.isalnum() for ch in s)]


SPLITTERS = {"period": split_period, "smart": split_smart}


def split_corpus(paragraphs: Sequence[str], splitter: str = "period") -> dict[int, list[str]]:
    """Paragraph index -> its sentences."""
    if splitter not in SPLITTERS:
        raise PairError(f"Unknown splitter {splitter!r}: use one of {', '.join(SPLITTERS)}.")
    split = SPLITTERS[splitter]
    return {index: split(paragraph) for index, paragraph in enumerate(paragraphs)}


def sentences_with_paragraph(sentences: Mapping[int, list[str]]) -> list[tuple[int, str]]:
    """Every sentence of every paragraph, in order, each with the index of its paragraph."""
    return [(index, sentence) for index in sorted(sentences) for sentence in sentences[index]]


def build_bag(sentences: Mapping[int, list[str]]) -> list[str]:
    """The reference recipe's bag: every sentence of every paragraph, in order."""
    return [sentence for _, sentence in sentences_with_paragraph(sentences)]


def train_val_split(n_paragraphs: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split paragraph indices so that no paragraph feeds both sides."""
    if n_paragraphs < 2:
        raise PairError(
            f"A train/validation split needs at least 2 paragraphs, and the corpus has {n_paragraphs}; put each "
            f"paragraph on a line of its own, as data/meditations.txt does."
        )
    order = list(range(n_paragraphs))
    random.Random(seed).shuffle(order)
    n_val = min(max(1, round(n_paragraphs * val_fraction)), n_paragraphs - 1)
    return sorted(order[n_val:]), sorted(order[:n_val])


def _pairable(sentences: Mapping[int, list[str]]) -> list[int]:
    return [index for index in sorted(sentences) if len(sentences[index]) >= 2]


def _random_other(
    sentences: Mapping[int, list[str]], flat: list[tuple[int, str]], paragraph: int, true_next: str, rng: random.Random
) -> tuple[int, str]:
    """A sentence from another paragraph that is not, by text, the true next sentence."""
    for _ in range(100):  # fast path: rejection sampling, almost always done in one or two draws
        source, sentence = flat[rng.randrange(len(flat))]
        if source != paragraph and sentence != true_next:
            return source, sentence
    # A lopsided corpus (one huge paragraph): draw from the eligible sentences directly.
    eligible = [(source, sentence) for source, sentence in flat if source != paragraph and sentence != true_next]
    if eligible:
        return eligible[rng.randrange(len(eligible))]
    raise PairError(
        "Could not find a random sentence from another paragraph: the corpus needs sentences "
        "in at least two different paragraphs."
    )


def _span(sentences: list[str], start: int, length: int) -> str:
    return " ".join(sentences[start : start + length])


def make_pairs(
    sentences: Mapping[int, list[str]],
    pairs_per_paragraph: int = 1,
    seed: int = 0,
    exhaustive: bool = False,
    max_segment_sentences: int = 1,
) -> list[Pair]:
    """Balanced NSP pairs; label-1 B sentences always come from another paragraph.

    ``exhaustive=True`` uses every consecutive position once as "follows" and once as "random"
    (a fixed validation set); otherwise ``pairs_per_paragraph`` positions are drawn per paragraph.
    ``max_segment_sentences > 1`` makes A and B spans of up to that many sentences, as BERT packed its
    segments (A ends at the split point, B starts there; a random B is a span of the same length).
    """
    rng = random.Random(seed)
    pairable = _pairable(sentences)
    if not pairable:
        raise PairError(
            "No paragraph holds two or more sentences, so there is no 'B follows A' pair; "
            "use a corpus with one multi-sentence paragraph per line."
        )
    flat = sentences_with_paragraph(sentences)
    if len({index for index, _ in flat}) < 2:
        raise PairError(
            "All sentences come from one paragraph, so no 'B is random' pair can come from another; "
            "use a corpus with at least two paragraphs."
        )
    if exhaustive:
        draws = [
            (p, i, label) for p in pairable for i in range(len(sentences[p]) - 1) for label in (IS_NEXT, IS_RANDOM)
        ]
    else:
        positions = []
        for p in pairable:
            n = len(sentences[p]) - 1
            # Without replacement while positions last, then again from the start.
            for round_start in range(0, pairs_per_paragraph, n):
                chosen = rng.sample(range(n), min(n, pairs_per_paragraph - round_start))
                positions.extend((p, i) for i in chosen)
        labels = [k % 2 for k in range(len(positions))]  # exactly balanced (±1) ...
        rng.shuffle(labels)  # ... but in random order
        draws = [(p, i, label) for (p, i), label in zip(positions, labels)]
    pairs = []
    for p, i, label in draws:
        own = sentences[p]
        a_len = rng.randint(1, min(max_segment_sentences, i + 1))
        b_len = rng.randint(1, min(max_segment_sentences, len(own) - i - 1))
        a, true_next = _span(own, i - a_len + 1, a_len), _span(own, i + 1, b_len)
        if label == IS_NEXT:
            pairs.append(Pair(a, true_next, IS_NEXT, p, p))
        else:
            source, first = _random_other(sentences, flat, p, own[i + 1], rng)
            other = sentences[source]
            start = other.index(first)
            pairs.append(Pair(a, _span(other, start, b_len), IS_RANDOM, p, source))
    rng.shuffle(pairs)
    return pairs


def reference_pairs(sentences: Mapping[int, list[str]], seed: int = 0) -> list[Pair]:
    """The tutorial's recipe, for comparison: one pair per paragraph, B drawn from the whole bag.

    Its flaw: the bag includes A's own paragraph, so a "random" B can be A's true next sentence.
    """
    rng = random.Random(seed)
    bag = sentences_with_paragraph(sentences)
    pairs = []
    for p in _pairable(sentences):
        start = rng.randint(0, len(sentences[p]) - 2)
        a = sentences[p][start]
        if rng.random() >= 0.5:
            pairs.append(Pair(a, sentences[p][start + 1], IS_NEXT, p, p))
        else:
            source, b = bag[rng.randrange(len(bag))]
            pairs.append(Pair(a, b, IS_RANDOM, p, source))
    return pairs


def count_leaks(pairs: Sequence[Pair], sentences: Mapping[int, list[str]]) -> dict[str, int]:
    """How many "random" pairs took B from A's own paragraph, and how many got A's true next sentence."""
    same, true_next = 0, 0
    for pair in pairs:
        if pair.next_sentence_label != IS_RANDOM:
            continue
        same += pair.paragraph_a == pair.paragraph_b
        own = sentences[pair.paragraph_a]
        true_next += any(own[i] == pair.sentence_a and own[i + 1] == pair.sentence_b for i in range(len(own) - 1))
    return {
        "random_pairs": sum(p.next_sentence_label == IS_RANDOM for p in pairs),
        "same_paragraph": same,
        "true_next_labelled_random": true_next,
    }
