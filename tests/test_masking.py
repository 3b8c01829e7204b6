"""MLM masking: the hand-written function (reference and bert modes) and its agreement with transformers' collator.

Shares are checked against their expected values within 4 binomial standard deviations, sqrt(p(1-p)/n):
a correct implementation fails about once in 16,000 runs, and every draw here is seeded, so never at random.
"""

import math

import pytest
import torch

from helpers.masking import (
    IGNORE_INDEX,
    MaskingRule,
    mask_tokens,
    masking_rule,
    pad_loss_share,
    select_positions,
    special_positions,
)
from helpers.pairs import make_pairs
from helpers.tokens import tokenize_pairs

SIGMAS = 4


def assert_share(hits: int, n: int, p: float, what: str) -> None:
    """``hits / n`` is within SIGMAS binomial standard deviations of ``p``."""
    std = math.sqrt(p * (1 - p) / n)
    share = hits / n
    assert abs(share - p) <= SIGMAS * std, f"{what}: {share:.4f} over {n} draws, expected {p} ± {SIGMAS * std:.4f}"


@pytest.fixture(scope="module")
def features(scratch_tokenizer, period_sentences):
    """Tokenized NSP pairs of the whole corpus (unpadded lists, as MeditationsDataset holds them)."""
    pairs = make_pairs(period_sentences, pairs_per_paragraph=2, seed=0)
    return tokenize_pairs(scratch_tokenizer, pairs, max_length=64)


@pytest.fixture(scope="module")
def batch(scratch_tokenizer, features):
    """The same pairs padded into one (n_pairs, 64) batch: [CLS], [SEP] and plenty of [PAD]."""
    padded = scratch_tokenizer.pad(
        {"input_ids": features["input_ids"], "attention_mask": features["attention_mask"]},
        padding="max_length",
        max_length=64,
        return_tensors="pt",
    )
    return padded["input_ids"], padded["attention_mask"]


def _special_ids(tokenizer) -> torch.Tensor:
    return torch.tensor(sorted(set(tokenizer.all_special_ids)))


def test_batch_has_every_kind_of_special_token(batch, scratch_tokenizer):
    input_ids, _ = batch
    tok = scratch_tokenizer
    for token_id in (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id):
        assert (input_ids == token_id).sum() >= input_ids.shape[0]
    ordinary = ~special_positions(input_ids, tok)
    assert ordinary.sum() > 10_000
    assert special_positions(input_ids, tok).equal(torch.isin(input_ids, _special_ids(tok)))


@pytest.mark.parametrize("mode", ["bert", "reference"])
def test_no_special_token_is_ever_selected(batch, scratch_tokenizer, mode):
    input_ids, _ = batch
    tok = scratch_tokenizer
    special = torch.isin(input_ids, _special_ids(tok))
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        # mlm_probability 0.9: a helper that selected specials would show it at once.
        masked, labels = mask_tokens(input_ids, tok, MaskingRule(mlm_probability=0.9), mode=mode, generator=generator)
        assert masked[special].equal(input_ids[special]), "a special token was replaced"
        if mode == "bert":
            assert (labels[special] == IGNORE_INDEX).all(), "a special token carries an MLM label"
    selected = select_positions(input_ids, tok, 0.9, generator=generator)
    assert not selected[special].any()
    assert selected[~special].float().mean() > 0.85


def test_selected_share_is_mlm_probability(batch, scratch_tokenizer):
    input_ids, _ = batch
    tok = scratch_tokenizer
    ordinary = ~torch.isin(input_ids, _special_ids(tok))
    generator = torch.Generator().manual_seed(1)
    hits, n = 0, 0
    for _ in range(4):
        _, labels = mask_tokens(input_ids, tok, mode="bert", generator=generator)
        selected = labels != IGNORE_INDEX
        hits, n = hits + int(selected[ordinary].sum()), n + int(ordinary.sum())
    assert n > 40_000
    assert_share(hits, n, 0.15, "selected share of ordinary tokens")
    # Another probability is honoured too.
    _, labels = mask_tokens(input_ids, tok, MaskingRule(mlm_probability=0.4), generator=generator)
    assert_share(int((labels != IGNORE_INDEX)[ordinary].sum()), int(ordinary.sum()), 0.4, "selected share at 0.4")


def test_bert_mode_labels_and_80_10_10(batch, scratch_tokenizer):
    input_ids, _ = batch
    tok = scratch_tokenizer
    original = input_ids.clone()
    generator = torch.Generator().manual_seed(2)
    counts = {"mask": 0, "random": 0, "same": 0}
    n_selected = 0
    for _ in range(8):
        masked, labels = mask_tokens(input_ids, tok, mode="bert", generator=generator)
        assert input_ids.equal(original), "mask_tokens must not change its input"
        selected = labels != IGNORE_INDEX
        # Labels: the original id where selected, -100 everywhere else.
        assert labels[selected].equal(input_ids[selected])
        assert (labels[~selected] == IGNORE_INDEX).all()
        # Unselected positions are never changed.
        assert masked[~selected].equal(input_ids[~selected])
        is_mask = selected & (masked == tok.mask_token_id)
        is_random = selected & (masked != tok.mask_token_id) & (masked != input_ids)
        counts["mask"] += int(is_mask.sum())
        counts["random"] += int(is_random.sum())
        counts["same"] += int((selected & (masked == input_ids)).sum())
        n_selected += int(selected.sum())
        assert not torch.isin(masked[is_random], _special_ids(tok)).any()
    assert n_selected > 10_000
    assert sum(counts.values()) == n_selected
    n_ordinary = len(tok) - len(_special_ids(tok))
    assert_share(counts["mask"], n_selected, 0.8, "[MASK] share of selected")
    # A random replacement equals the original token once in n_ordinary draws; that counts as unchanged.
    assert_share(counts["random"], n_selected, 0.1 * (1 - 1 / n_ordinary), "random share of selected")
    assert_share(counts["same"], n_selected, 0.1 + 0.1 / n_ordinary, "unchanged share of selected")


def test_random_replacements_are_never_special(batch, scratch_tokenizer):
    input_ids, _ = batch
    tok = scratch_tokenizer
    generator = torch.Generator().manual_seed(3)
    # Every selected token gets a random replacement: tens of thousands of draws from the vocabulary.
    masked, labels = mask_tokens(
        input_ids, tok, MaskingRule(0.99, mask_replace_prob=0.0, random_replace_prob=1.0), generator=generator
    )
    selected = labels != IGNORE_INDEX
    assert selected.sum() > 15_000
    assert not torch.isin(masked[selected], _special_ids(tok)).any()
    assert not (masked == tok.mask_token_id)[selected].any()
    # The draws cover the ordinary vocabulary (a helper drawing from a few ids only would fail here).
    assert masked[selected].unique().numel() > 0.9 * (len(tok) - 5)


def test_reference_mode(batch, scratch_tokenizer):
    input_ids, attention_mask = batch
    tok = scratch_tokenizer
    ordinary = ~torch.isin(input_ids, _special_ids(tok))
    generator = torch.Generator().manual_seed(4)
    masked, labels = mask_tokens(input_ids, tok, mode="reference", generator=generator)
    # Labels are a plain copy of the input, [PAD] included: nothing is -100.
    assert labels.equal(input_ids)
    assert (labels[attention_mask == 0] == tok.pad_token_id).all()
    changed = masked != input_ids
    assert (masked[changed] == tok.mask_token_id).all(), "reference mode only ever writes [MASK]"
    assert_share(int(changed[ordinary].sum()), int(ordinary.sum()), 0.15, "reference selected share")


def test_same_generator_seed_same_masks(batch, scratch_tokenizer):
    input_ids, _ = batch
    first = mask_tokens(input_ids, scratch_tokenizer, generator=torch.Generator().manual_seed(9))
    second = mask_tokens(input_ids, scratch_tokenizer, generator=torch.Generator().manual_seed(9))
    other = mask_tokens(input_ids, scratch_tokenizer, generator=torch.Generator().manual_seed(10))
    assert first[0].equal(second[0]) and first[1].equal(second[1])
    assert not first[1].equal(other[1])


def test_unknown_mode(batch, scratch_tokenizer):
    with pytest.raises(ValueError, match="Unknown masking mode 'roberta'"):
        mask_tokens(batch[0], scratch_tokenizer, mode="roberta")


def test_pad_loss_share(scratch_tokenizer, period_sentences):
    tok = scratch_tokenizer
    # The reference recipe: every pair padded to max_length 256, labels a copy of input_ids.
    padded = tokenize_pairs(tok, make_pairs(period_sentences, seed=0), max_length=256, pad_to_max_length=True)
    input_ids, attention_mask = torch.tensor(padded["input_ids"]), torch.tensor(padded["attention_mask"])
    _, reference_labels = mask_tokens(input_ids, tok, mode="reference", generator=torch.Generator().manual_seed(5))
    expected = float((attention_mask == 0).sum()) / attention_mask.numel()
    assert expected > 0.5  # most of the reference recipe's loss positions are [PAD]
    assert pad_loss_share(reference_labels, attention_mask) == pytest.approx(expected)
    # BERT's labels never point at [PAD].
    _, bert_labels = mask_tokens(input_ids, tok, mode="bert", generator=torch.Generator().manual_seed(5))
    assert pad_loss_share(bert_labels, attention_mask) == 0.0
    # Hand-made: 2 of 5 counted positions are padding.
    labels = torch.tensor([[5, 6, 7, 0, 0], [IGNORE_INDEX] * 5])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    assert pad_loss_share(labels, mask) == pytest.approx(2 / 5)


def _shares(masked, labels, original, attention_mask, tokenizer):
    """Counts of (ordinary, selected, [MASK], random, unchanged) over one batch."""
    special = torch.isin(original, _special_ids(tokenizer))
    ordinary = ~special & (attention_mask == 1)
    selected = labels != IGNORE_INDEX
    assert not selected[special].any()
    assert labels[selected].equal(original[selected])
    is_mask = selected & (masked == tokenizer.mask_token_id)
    same = selected & (masked == original)
    return {
        "ordinary": int(ordinary.sum()),
        "selected": int(selected.sum()),
        "mask": int(is_mask.sum()),
        "random": int((selected & ~is_mask & ~same).sum()),
        "same": int(same.sum()),
    }


def test_hand_written_bert_mode_agrees_with_the_collator(features, scratch_tokenizer):
    tok = scratch_tokenizer
    items = [{key: values[i] for key, values in features.items()} for i in range(len(features["input_ids"]))]
    collator = MaskingRule().collator(tok, seed=11)  # BERT's 15% and 80/10/10
    generator = torch.Generator().manual_seed(11)
    ours = {k: 0 for k in ("ordinary", "selected", "mask", "random", "same")}
    theirs = dict(ours)
    for _ in range(4):
        for start in range(0, len(items), 64):
            chunk = items[start : start + 64]
            batch = collator(chunk)  # pads, masks; keeps token_type_ids and next_sentence_label
            assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels", "next_sentence_label"}
            original = tok.pad({"input_ids": [item["input_ids"] for item in chunk]}, return_tensors="pt")["input_ids"]
            assert original.shape == batch["input_ids"].shape
            for key, value in _shares(
                batch["input_ids"], batch["labels"], original, batch["attention_mask"], tok
            ).items():
                theirs[key] += value
            masked, labels = mask_tokens(original, tok, mode="bert", generator=generator)
            for key, value in _shares(masked, labels, original, batch["attention_mask"], tok).items():
                ours[key] += value
    assert ours["ordinary"] == theirs["ordinary"] > 40_000
    for name, hits, n, p in (
        ("selected", "selected", "ordinary", 0.15),
        ("[MASK]", "mask", "selected", 0.8),
        ("random", "random", "selected", 0.1),
        ("unchanged", "same", "selected", 0.1),
    ):
        # Each against the expected value, and the two against each other (difference of two binomials).
        assert_share(ours[hits], ours[n], p, f"hand-written {name} share")
        assert_share(theirs[hits], theirs[n], p, f"collator {name} share")
        std = math.sqrt(p * (1 - p) * (1 / ours[n] + 1 / theirs[n]))
        gap = ours[hits] / ours[n] - theirs[hits] / theirs[n]
        assert abs(gap) <= SIGMAS * std, f"{name} share differs by {gap:.4f} (allowed {SIGMAS * std:.4f})"


def test_the_config_chooses_the_rule_for_training_and_for_the_fixed_validation_masks():
    from helpers.config import get_profile

    default, paper = get_profile("default"), get_profile("bert-base")
    assert masking_rule(paper) == MaskingRule(0.15, 0.8, 0.1)  # BERT's recipe
    assert masking_rule(default) == MaskingRule(default.mlm_probability, 1.0, 0.0)  # 40%, every one a [MASK]
    for cfg in (default, paper):  # validation: the profile's own share, every selected token a [MASK]
        assert masking_rule(cfg, validation=True) == MaskingRule(cfg.val_mlm_probability, 1.0, 0.0)


def test_training_and_validation_batches_follow_the_rule_the_config_chooses(scratch_tokenizer, smart_sentences):
    from helpers.config import get_profile
    from helpers.dataset import MeditationsDataset, make_loader

    cfg = get_profile("default")
    pairs = make_pairs({i: smart_sentences[i] for i in range(120)}, seed=0)
    dataset = MeditationsDataset.from_pairs(scratch_tokenizer, pairs, max_length=cfg.max_length)
    for validation, share in ((False, cfg.mlm_probability), (True, cfg.val_mlm_probability)):
        batches = list(make_loader(dataset, scratch_tokenizer, cfg, shuffle=False, seed=1, validation=validation))
        assert len(batches[0]["input_ids"]) == (64 if validation else cfg.batch_size)
        labelled = torch.cat([b["labels"].flatten() != IGNORE_INDEX for b in batches])
        shown = torch.cat([b["input_ids"].flatten() for b in batches])[labelled]
        ordinary = sum(
            int(
                (
                    ~special_positions(
                        torch.where(b["labels"] != IGNORE_INDEX, b["labels"], b["input_ids"]), scratch_tokenizer
                    )
                ).sum()
            )
            for b in batches
        )
        assert_share(int(labelled.sum()), ordinary, share, f"selected share (validation={validation})")
        assert (shown == scratch_tokenizer.mask_token_id).all()  # the default profile and validation: all [MASK]
