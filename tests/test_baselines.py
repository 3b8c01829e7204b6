"""The counting baselines: what each guesses, on which positions, fitted on training text only; and the one table."""

from __future__ import annotations

import pytest
import torch

from helpers.baselines import (
    FREQUENT_TOKENS,
    NeighbourGuess,
    OverlapBaseline,
    TrainingText,
    UnigramGuess,
    count_baselines,
)
from helpers.config import get_profile
from helpers.dataset import prepare_data, validation_batches
from helpers.masking import IGNORE_INDEX
from helpers.pairs import IS_NEXT, IS_RANDOM, Pair

WHOLE = "mlm_accuracy_at_mask"


def _text(tokenizer, texts, pairs=()) -> TrainingText:
    return TrainingText(tokenizer, list(texts), list(pairs))


def _batch(tokenizer, text: str, masked_words: set[int]) -> dict[str, torch.Tensor]:
    """One row: ``text`` with the word positions in ``masked_words`` (1-based, after [CLS]) replaced by [MASK]."""
    ids = tokenizer(text)["input_ids"]
    masked, labels = list(ids), [IGNORE_INDEX] * len(ids)
    for position in masked_words:
        labels[position], masked[position] = ids[position], tokenizer.mask_token_id
    return {"input_ids": torch.tensor([masked]), "labels": torch.tensor([labels])}


def test_unigram_guesses_the_most_frequent_training_token(scratch_tokenizer):
    text = _text(scratch_tokenizer, ["the gods are just", "the man is good", "the end"])
    base = UnigramGuess(text)
    assert base.top == scratch_tokenizer.convert_tokens_to_ids("the")
    # "the" is hidden in one row and "are" in the other: the unigram guess gets exactly one of two.
    batches = [_batch(scratch_tokenizer, "the gods are", {1}), _batch(scratch_tokenizer, "the gods are", {3})]
    scores = base.score(batches, text.frequent)
    assert scores[WHOLE] == 0.5


def test_neighbours_use_both_sides_then_back_off(scratch_tokenizer):
    tok = scratch_tokenizer
    the, gods, are, life, a, man, is_ = (
        tok.convert_tokens_to_ids(w) for w in ("the", "gods", "are", "life", "a", "man", "is")
    )
    assert tok.unk_token_id not in (the, gods, are, life, a, man, is_)  # whole words of this vocabulary
    text = _text(tok, ["the gods are just", "a man is good", "a man is good", "the life are just"])
    base = NeighbourGuess(text)
    assert base.guess(the, are) in (gods, life)  # seen between "the" and "are"
    assert base.guess(a, is_) == man
    # A neighbour that is itself [MASK] (or unseen): the other side alone, then the unigram guess.
    assert base.guess(a, tok.mask_token_id) == man
    assert base.guess(tok.mask_token_id, is_) == man
    assert base.guess(tok.mask_token_id, tok.mask_token_id) == base.top
    assert base.score([_batch(tok, "a man is good", {2})], text.frequent)[WHOLE] == 1.0


def test_scores_count_only_the_labelled_positions(scratch_tokenizer):
    text = _text(scratch_tokenizer, ["the gods are"] * 3)
    batch = _batch(scratch_tokenizer, "the gods are", {1, 2})
    batch["labels"][0, 1] = IGNORE_INDEX  # a [MASK] without a label ("the", the unigram guess) must not count
    assert UnigramGuess(text).score([batch], text.frequent)[WHOLE] == 0.0
    assert NeighbourGuess(text).score([batch], text.frequent)[WHOLE] == 1.0


def test_the_split_counts_the_frequent_tokens_apart_from_the_rest(scratch_tokenizer):
    tok = scratch_tokenizer
    texts = ["the gods are just and the man is good"] * 3 + ["a wise man"]
    text = _text(tok, texts)
    frequent = set(text.frequent.tolist())
    assert len(frequent) == min(FREQUENT_TOKENS, len(text.unigram))
    assert tok.convert_tokens_to_ids("the") in frequent  # counted on the training paragraphs, as the unigram guess is
    text.frequent = torch.tensor([tok.convert_tokens_to_ids("the")])  # one frequent token, to read the parts by hand
    # Two hidden tokens: "the" (frequent, the unigram guess gets it) and "gods" (the rest, it does not).
    scores = UnigramGuess(text).score([_batch(tok, "the gods are just", {1, 2})], text.frequent)
    assert scores == {WHOLE: 0.5, "mlm_accuracy_frequent": 1.0, "mlm_accuracy_rest": 0.0}


def test_overlap_rule_picks_the_best_threshold_on_training_pairs():
    texts = ["wisdom is virtue and virtue is wisdom"] + ["the of and a to"] * 5
    follows = [Pair("wisdom of reason", "reason and wisdom", IS_NEXT, 0, 0)] * 4
    random = [Pair("wisdom of reason", "the sea is wide", IS_RANDOM, 0, 1)] * 4
    rule = OverlapBaseline(TrainingText(None, texts, follows + random), n_function_words=5)
    assert rule.shared("Wisdom, of reason.", "reason AND wisdom") == 2  # "of" and "and" are function words
    assert rule.threshold in (1, 2)
    assert rule.score(follows + random) == 1.0
    assert rule.score([Pair("a b", "c d", IS_NEXT, 0, 0)]) == 0.0  # nothing shared: says "random"


@pytest.mark.slow
def test_run_baselines_are_fitted_on_training_paragraphs_and_beat_chance(tmp_path):
    cfg = get_profile("tiny", wandb="disabled")
    data = prepare_data(cfg)
    batches = validation_batches(data, cfg)
    # Every labelled validation position holds [MASK]: the baselines face exactly what the model faces.
    for batch in batches:
        assert (batch["input_ids"][batch["labels"] != IGNORE_INDEX] == data.tokenizer.mask_token_id).all()
    texts = [" ".join(sentences) for sentences in data.train_sentences.values()]
    values = count_baselines(_text(data.tokenizer, texts, data.train_pairs(cfg, 0)), batches, data.val_pairs)
    assert 0 < values["baseline_unigram"] < values["baseline_neighbours"] < 1
    assert values["baseline_word_overlap"] > 0.55  # the topic signal that NSP can use is there
    for name in ("unigram", "neighbours"):  # the split: the frequent tokens are the easier part for counting
        assert values[f"baseline_{name}_rest"] < values[f"baseline_{name}"] < values[f"baseline_{name}_frequent"]
