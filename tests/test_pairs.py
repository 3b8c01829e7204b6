"""Sentence splitters and NSP pairs: labels, balance, seeds, epochs, the split, and the reference recipe's leak."""

import doctest
from collections import Counter

import pytest

import helpers.pairs as pairs_module
from helpers.config import get_profile
from helpers.dataset import prepare_data
from helpers.pairs import (
    IS_NEXT,
    IS_RANDOM,
    PairError,
    build_bag,
    count_leaks,
    make_pairs,
    reference_pairs,
    split_corpus,
    split_period,
    split_smart,
    train_val_split,
)

SEEDS = range(20)


# --- splitters ---------------------------------------------------------------------------------


def test_period_splitter_is_the_reference_one():
    assert split_period("Is it so? Yes; it is. Ask Mr. Rusticus.") == ["Is it so? Yes; it is", "Ask Mr", "Rusticus"]
    assert split_period("One. . Two...  ") == ["One", "Two"]  # empty pieces dropped
    assert split_period("") == []


def test_period_splitter_on_the_corpus_matches_the_field_notes(period_sentences):
    # The reference recipe's numbers: 317 paragraphs with 2+ sentences, 1,372 sentences in the bag.
    assert sum(len(s) >= 2 for s in period_sentences.values()) == 317
    assert len(build_bag(period_sentences)) == 1372


def test_default_splitter_is_documented_as_period():
    # split_corpus's default is the reference recipe; the profiles choose explicitly.
    assert split_corpus(["A b. C d."]) == {0: ["A b", "C d"]}
    assert get_profile("bert-base").splitter == "period"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Is it so? Yes; it is. Ask Mr. Rusticus.", ["Is it so?", "Yes; it is.", "Ask Mr. Rusticus."]),
        ("Wait! Then think: is it good? It is.", ["Wait!", "Then think: is it good?", "It is."]),
        ("From M. Antoninus I learned this. Then more.", ["From M. Antoninus I learned this.", "Then more."]),
        ("Dr. Who met St. Paul at no. 5. Fine.", ["Dr. Who met St. Paul at no. 5.", "Fine."]),
        ("See e.g. this one. And i.e. that.", ["See e.g. this one.", "And i.e. that."]),
        ('He said "Go." Then he left.', ['He said "Go."', "Then he left."]),
        ("It costs 3.5 obols. Cheap.", ["It costs 3.5 obols.", "Cheap."]),
        ("First; second; third.", ["First; second; third."]),
        ("No full stop at the end", ["No full stop at the end"]),
        ("Wait... what? No!", ["Wait... what?", "No!"]),
        ("Begin. and go on. Then stop.", ["Begin. and go on.", "Then stop."]),
    ],
)
def test_smart_splitter(text, expected):
    assert split_smart(text) == expected
    # Nothing is lost: the sentences rebuild the text up to whitespace.
    assert "".join(split_smart(text)).replace(" ", "") == text.replace(" ", "")


def test_smart_splitter_doctest():
    result = doctest.testmod(pairs_module, verbose=False)
    assert result.attempted >= 1 and result.failed == 0


def test_smart_splitter_keeps_all_text_of_the_corpus(paragraphs, smart_sentences):
    for index, paragraph in enumerate(paragraphs):
        joined = "".join(smart_sentences[index]).replace(" ", "")
        assert joined == "".join(ch for ch in paragraph if ch != " "), index
    assert all(
        s[-1] in ".?!\"')’”]" or s is smart_sentences[i][-1] for i in smart_sentences for s in smart_sentences[i]
    )


def test_unknown_splitter():
    with pytest.raises(PairError, match="Unknown splitter"):
        split_corpus(["A. B."], "comma")


# --- make_pairs --------------------------------------------------------------------------------


def _check_pair(pair, sentences):
    own = sentences[pair.paragraph_a]
    positions = [i for i in range(len(own) - 1) if own[i] == pair.sentence_a]
    assert positions, "A must be a sentence of its paragraph (and not the paragraph's last)"
    if pair.next_sentence_label == IS_NEXT:
        assert pair.paragraph_b == pair.paragraph_a
        assert any(own[i + 1] == pair.sentence_b for i in positions), "B must be the sentence after A"
    else:
        assert pair.next_sentence_label == IS_RANDOM
        assert pair.paragraph_b != pair.paragraph_a, "a random B must come from another paragraph"
        assert pair.sentence_b in sentences[pair.paragraph_b]
        assert not any(own[i + 1] == pair.sentence_b for i in positions)


@pytest.mark.parametrize("splitter", ["period", "smart"])
def test_labels_mean_what_they_say_over_many_seeds(paragraphs, splitter):
    sentences = split_corpus(paragraphs, splitter)
    pairable = [i for i in sentences if len(sentences[i]) >= 2]
    for seed in SEEDS:
        pairs = make_pairs(sentences, seed=seed)
        assert len(pairs) == len(pairable)
        assert sorted(p.paragraph_a for p in pairs) == pairable  # one pair per paragraph
        for pair in pairs:
            _check_pair(pair, sentences)
        counts = Counter(p.next_sentence_label for p in pairs)
        assert abs(counts[IS_NEXT] - counts[IS_RANDOM]) <= 1, counts
        assert count_leaks(pairs, sentences) == {
            "random_pairs": counts[IS_RANDOM],
            "same_paragraph": 0,
            "true_next_labelled_random": 0,
        }


def test_exhaustive_pairs_use_every_position_twice(period_sentences):
    pairs = make_pairs(period_sentences, exhaustive=True, seed=3)
    positions = sum(len(s) - 1 for s in period_sentences.values() if len(s) >= 2)
    assert len(pairs) == 2 * positions
    counts = Counter(p.next_sentence_label for p in pairs)
    assert counts[IS_NEXT] == counts[IS_RANDOM] == positions
    for pair in pairs:
        _check_pair(pair, period_sentences)


def test_same_seed_same_pairs_other_seed_other_pairs(period_sentences):
    assert make_pairs(period_sentences, seed=5) == make_pairs(period_sentences, seed=5)
    assert make_pairs(period_sentences, seed=5) != make_pairs(period_sentences, seed=6)
    assert reference_pairs(period_sentences, seed=5) == reference_pairs(period_sentences, seed=5)
    assert reference_pairs(period_sentences, seed=5) != reference_pairs(period_sentences, seed=6)


@pytest.mark.parametrize("per_paragraph", [2, 3, 7])
def test_several_pairs_per_paragraph(period_sentences, per_paragraph):
    pairs = make_pairs(period_sentences, pairs_per_paragraph=per_paragraph, seed=1)
    pairable = [i for i in period_sentences if len(period_sentences[i]) >= 2]
    per = Counter(p.paragraph_a for p in pairs)
    assert set(per) == set(pairable)
    assert all(per[i] == per_paragraph for i in pairable)
    counts = Counter(p.next_sentence_label for p in pairs)
    assert abs(counts[IS_NEXT] - counts[IS_RANDOM]) <= 1
    for pair in pairs:
        _check_pair(pair, period_sentences)
    # Positions are drawn without replacement while they last: a paragraph with enough positions
    # never repeats its A sentence position.
    for index in pairable:
        n_positions = len(period_sentences[index]) - 1
        if n_positions >= per_paragraph:
            starts = [p.sentence_a for p in pairs if p.paragraph_a == index]
            assert len(starts) == per_paragraph
            own = period_sentences[index]
            if len(set(own)) == len(own):  # no duplicate sentence text in this paragraph
                assert len(set(starts)) == per_paragraph


# --- epochs and the split ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_data(scratch_tokenizer):
    return prepare_data(get_profile("tiny"), tokenizer=scratch_tokenizer)


def test_new_pairs_each_epoch_only_when_resampling(tiny_data):
    cfg = get_profile("tiny", resample_pairs=True)
    epoch0, epoch1 = tiny_data.train_pairs(cfg, 0), tiny_data.train_pairs(cfg, 1)
    assert epoch0 != epoch1
    assert epoch0 == tiny_data.train_pairs(cfg, 0)
    fixed = get_profile("tiny", resample_pairs=False)
    assert tiny_data.train_pairs(fixed, 0) == tiny_data.train_pairs(fixed, 1) == tiny_data.train_pairs(fixed, 5)


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_split_by_paragraph_leaks_no_paragraph(scratch_tokenizer, seed):
    cfg = get_profile("default", seed=seed, pairs_per_paragraph=4)
    data = prepare_data(cfg, tokenizer=scratch_tokenizer)
    assert set(data.train_sentences).isdisjoint(data.val_sentences)
    assert set(data.train_sentences) | set(data.val_sentences) == set(range(len(data.paragraphs)))
    assert len(data.val_sentences) == round(len(data.paragraphs) * cfg.val_fraction)
    val_text = {s for i in data.val_sentences for s in data.val_sentences[i]}
    train_text = {s for i in data.train_sentences for s in data.train_sentences[i]}
    shared = val_text & train_text  # the same sentence text may occur in two paragraphs (e.g. a refrain)
    for epoch in range(3):
        for pair in data.train_pairs(cfg, epoch):
            assert pair.paragraph_a in data.train_sentences and pair.paragraph_b in data.train_sentences
            assert pair.sentence_a not in val_text - shared and pair.sentence_b not in val_text - shared
    for pair in data.val_pairs:
        assert pair.paragraph_a in data.val_sentences and pair.paragraph_b in data.val_sentences
        _check_pair(pair, data.val_sentences)


def test_train_val_split_is_seeded_and_complete():
    train, val = train_val_split(100, 0.2, seed=3)
    assert len(val) == 20 and sorted(train + val) == list(range(100))
    assert train_val_split(100, 0.2, seed=3) == (train, val)
    assert train_val_split(100, 0.2, seed=4) != (train, val)
    assert train_val_split(2, 0.01, seed=0)[1] and train_val_split(2, 0.99, seed=0)[0]  # both sides non-empty
    with pytest.raises(PairError, match="at least 2 paragraphs"):
        train_val_split(1, 0.2, seed=0)


# --- the reference recipe's flaw ---------------------------------------------------------------


def test_reference_bag_hands_back_same_paragraph_sentences(period_sentences):
    same, true_next, random_pairs = 0, 0, 0
    for seed in range(200):
        leaks = count_leaks(reference_pairs(period_sentences, seed=seed), period_sentences)
        same += leaks["same_paragraph"]
        true_next += leaks["true_next_labelled_random"]
        random_pairs += leaks["random_pairs"]
    # The bag holds A's own paragraph: about 1 random pair in 300 takes B from it.
    assert same > 0
    assert true_next <= same
    assert 0.4 < random_pairs / (200 * 317) < 0.6
    assert (
        sum(count_leaks(make_pairs(period_sentences, seed=s), period_sentences)["same_paragraph"] for s in range(200))
        == 0
    )


def test_reference_pairs_are_otherwise_well_formed(period_sentences):
    pairs = reference_pairs(period_sentences, seed=0)
    assert len(pairs) == 317
    for pair in pairs:
        own = period_sentences[pair.paragraph_a]
        assert pair.sentence_a in own[:-1]
        if pair.next_sentence_label == IS_NEXT:
            assert any(own[i] == pair.sentence_a and own[i + 1] == pair.sentence_b for i in range(len(own) - 1))
        else:
            assert pair.sentence_b in period_sentences[pair.paragraph_b]


def test_count_leaks_counts():
    sentences = {0: ["a", "b", "c"], 1: ["x", "y"]}
    from helpers.pairs import Pair

    pairs = [
        Pair("a", "b", IS_RANDOM, 0, 0),
        Pair("a", "c", IS_RANDOM, 0, 0),
        Pair("a", "x", IS_RANDOM, 0, 1),
        Pair("a", "b", IS_NEXT, 0, 0),
    ]
    assert count_leaks(pairs, sentences) == {"random_pairs": 3, "same_paragraph": 2, "true_next_labelled_random": 1}


# --- corpora that cannot give pairs ------------------------------------------------------------


@pytest.mark.parametrize(
    "paragraphs, words",
    [
        (["One sentence only.", "Another single one.", "A third"], "No paragraph holds two or more sentences"),
        (["Only one paragraph. With two sentences. Or three."], "at least two paragraphs"),
        ([], "No paragraph holds two or more sentences"),
    ],
)
def test_corpora_without_pairs(paragraphs, words):
    for splitter in ("period", "smart"):
        sentences = split_corpus(paragraphs, splitter)
        for kwargs in ({"seed": 0}, {"exhaustive": True}):
            with pytest.raises(PairError, match=words) as info:
                make_pairs(sentences, **kwargs)
            assert str(info.value).endswith(".")


def test_random_b_never_equals_the_true_next_by_text():
    # Paragraph 1 repeats paragraph 0's second sentence; a random B must still differ from the true next.
    sentences = {0: ["A one", "Refrain"], 1: ["Refrain", "Other"]}
    for seed in range(50):
        for pair in make_pairs(sentences, pairs_per_paragraph=2, seed=seed):
            _check_pair(pair, sentences)
            if pair.next_sentence_label == IS_RANDOM and pair.paragraph_a == 0:
                assert pair.sentence_b != "Refrain"
