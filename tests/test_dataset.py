"""MeditationsDataset, prepare_data and make_loader: features, dynamic padding, seeded masks, bucketing, a forward."""

import math

import pytest
import torch
from transformers import BertConfig, BertForPreTraining

from helpers.config import get_profile
from helpers.dataset import BucketSampler, MeditationsDataset, make_loader, padding_efficiency, prepare_data
from helpers.masking import IGNORE_INDEX

BATCH_KEYS = {"input_ids", "token_type_ids", "attention_mask", "labels", "next_sentence_label"}


@pytest.fixture(scope="module")
def tiny(scratch_tokenizer):
    """The tiny profile's data with the shared scratch tokenizer, and one epoch of training pairs as a dataset."""
    cfg = get_profile("tiny")
    data = prepare_data(cfg, tokenizer=scratch_tokenizer)
    dataset = MeditationsDataset.from_pairs(scratch_tokenizer, data.train_pairs(cfg, 0), cfg.max_length)
    return cfg, data, dataset


def test_items_carry_every_feature(tiny):
    cfg, data, dataset = tiny
    pairs = data.train_pairs(cfg, 0)
    assert len(dataset) == len(pairs) > 20
    item = dataset[0]
    assert set(item) == {"input_ids", "token_type_ids", "attention_mask", "special_tokens_mask", "next_sentence_label"}
    assert item["next_sentence_label"] == pairs[0].next_sentence_label
    assert (
        len(item["input_ids"])
        == len(item["token_type_ids"])
        == len(item["attention_mask"])
        == len(item["special_tokens_mask"])
        == dataset.lengths[0]
        <= cfg.max_length
    )
    assert [dataset[i]["next_sentence_label"] for i in range(len(dataset))] == [p.next_sentence_label for p in pairs]
    with pytest.raises(ValueError, match="one value per pair"):
        MeditationsDataset({"input_ids": [[1, 2]], "next_sentence_label": [0, 1]})


def test_prepare_data_summary_and_split(tiny):
    cfg, data, _ = tiny
    assert len(data.paragraphs) == cfg.max_paragraphs
    assert len(data.train_sentences) + len(data.val_sentences) == cfg.max_paragraphs
    assert data.val_pairs and all(p.paragraph_a in data.val_sentences for p in data.val_pairs)
    assert "validation pairs" in data.summary() and "1000 tokens" in data.summary()


def test_batches_are_consistent_dynamically_padded_tensors(tiny, scratch_tokenizer):
    _, data, _ = tiny
    cfg = get_profile("tiny", bucket_by_length=False, max_length=256)
    dataset = MeditationsDataset.from_pairs(scratch_tokenizer, data.train_pairs(cfg, 0), cfg.max_length)
    loader = make_loader(dataset, scratch_tokenizer, cfg, shuffle=False, seed=0)
    batches = list(loader)
    assert len(batches) == math.ceil(len(dataset) / cfg.batch_size)
    start = 0
    for batch in batches:
        assert set(batch) == BATCH_KEYS
        assert all(isinstance(value, torch.Tensor) and value.dtype == torch.long for value in batch.values())
        size = batch["input_ids"].shape[0]
        lengths = dataset.lengths[start : start + size]
        # Dynamic padding: as wide as the longest pair of this batch, not max_length.
        assert batch["input_ids"].shape == (size, max(lengths))
        for key in ("token_type_ids", "attention_mask", "labels"):
            assert batch[key].shape == batch["input_ids"].shape
        assert batch["next_sentence_label"].shape == (size,)
        assert batch["attention_mask"].sum(1).tolist() == lengths
        padding = batch["attention_mask"] == 0
        assert (batch["labels"][padding] == IGNORE_INDEX).all()
        assert (batch["token_type_ids"][padding] == 0).all()
        assert batch["next_sentence_label"].tolist() == [
            dataset[i]["next_sentence_label"] for i in range(start, start + size)
        ]
        start += size
    assert start == len(dataset)
    assert any(b["input_ids"].shape[1] < cfg.max_length for b in batches)


def test_pad_to_multiple_of(tiny, scratch_tokenizer):
    cfg, _, dataset = tiny
    for batch in make_loader(dataset, scratch_tokenizer, cfg, shuffle=True, seed=0, pad_to_multiple_of=8):
        width = batch["input_ids"].shape[1]
        assert width % 8 == 0 and width - 8 < int(batch["attention_mask"].sum(1).max()) <= width


def _all_batches(dataset, tokenizer, cfg, seed, shuffle=True):
    return list(make_loader(dataset, tokenizer, cfg, shuffle=shuffle, seed=seed))


def _same(first, second):
    return len(first) == len(second) and all(
        a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a) for a, b in zip(first, second)
    )


@pytest.mark.parametrize("bucket", [True, False])
def test_masks_and_order_follow_the_seed(tiny, scratch_tokenizer, bucket):
    cfg, _, dataset = tiny
    cfg = get_profile("tiny", bucket_by_length=bucket)
    assert _same(_all_batches(dataset, scratch_tokenizer, cfg, 3), _all_batches(dataset, scratch_tokenizer, cfg, 3))
    assert not _same(_all_batches(dataset, scratch_tokenizer, cfg, 3), _all_batches(dataset, scratch_tokenizer, cfg, 4))
    # Same order (no shuffle), other seed: the masks alone differ.
    fixed_a = _all_batches(dataset, scratch_tokenizer, cfg, 3, shuffle=False)
    fixed_b = _all_batches(dataset, scratch_tokenizer, cfg, 4, shuffle=False)
    assert all(a["next_sentence_label"].equal(b["next_sentence_label"]) for a, b in zip(fixed_a, fixed_b))
    assert not all(a["labels"].equal(b["labels"]) for a, b in zip(fixed_a, fixed_b))
    # Two passes over one loader (two epochs) draw fresh masks.
    loader = make_loader(dataset, scratch_tokenizer, cfg, shuffle=False, seed=3)
    first, second = list(loader), list(loader)
    assert not all(a["labels"].equal(b["labels"]) for a, b in zip(first, second))


def test_bucket_sampler_visits_every_pair_once_in_batches_of_similar_length():
    lengths = [(i * 37) % 101 + 5 for i in range(1000)]
    sampler = BucketSampler(lengths, batch_size=16, generator=torch.Generator().manual_seed(0), window_batches=50)
    order = list(sampler)
    assert sorted(order) == list(range(1000)) and len(sampler) == 1000
    batches = [order[i : i + 16] for i in range(0, 1000, 16)]
    # Only the last batch is short, and each batch spans a narrow band of lengths.
    assert [len(b) for b in batches[:-1]] == [16] * 62 and len(batches[-1]) == 1000 % 16
    spans = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    assert max(spans) <= 16 and sum(spans) / len(spans) <= 5  # lengths run from 5 to 105
    # The batches come in random order, not longest first, and differ between epochs.
    widths = [max(lengths[i] for i in b) for b in batches[:-1]]
    assert widths != sorted(widths, reverse=True) and widths != sorted(widths)
    assert list(sampler) != order


@pytest.fixture(scope="module")
def full_corpus():
    """The default profile at max_length 256, batch 16, on the whole corpus (its own 8,000-token tokenizer)."""
    cfg = get_profile("default", max_length=256, batch_size=16)
    data = prepare_data(cfg)
    return cfg, data


def test_bucketing_removes_most_padding(full_corpus):
    cfg, data = full_corpus
    tok = data.tokenizer
    pairs = data.train_pairs(cfg, 0)
    dataset = MeditationsDataset.from_pairs(tok, pairs, cfg.max_length)
    for seed in (0, 1):
        bucketed = _all_batches(dataset, tok, cfg, seed)
        assert sum(b["input_ids"].shape[0] for b in bucketed) == len(dataset)
        assert padding_efficiency(bucketed) >= 0.9
    dynamic = _all_batches(
        dataset, tok, get_profile("default", max_length=256, batch_size=16, bucket_by_length=False), 0
    )
    assert padding_efficiency(dynamic) < 0.9
    # The reference recipe: every pair padded to max_length.
    reference = MeditationsDataset.from_pairs(tok, pairs, cfg.max_length, pad_to_max_length=True)
    padded = _all_batches(reference, tok, cfg, 0, shuffle=False)
    assert {b["input_ids"].shape[1] for b in padded} == {256}
    assert padding_efficiency(padded) == pytest.approx(0.3, abs=0.1)


def test_padding_efficiency_by_hand():
    batches = [{"attention_mask": torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])}, {"attention_mask": torch.ones(1, 2)}]
    assert padding_efficiency(batches) == pytest.approx(8 / 10)
    assert padding_efficiency([]) == 0.0


def test_a_batch_feeds_a_tiny_bert(tiny, scratch_tokenizer):
    cfg, _, dataset = tiny
    batch = next(iter(make_loader(dataset, scratch_tokenizer, cfg, shuffle=True, seed=0)))
    torch.manual_seed(0)
    model = BertForPreTraining(
        BertConfig(
            vocab_size=len(scratch_tokenizer),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            pad_token_id=scratch_tokenizer.pad_token_id,
        )
    )
    out = model(**batch)
    size, width = batch["input_ids"].shape
    assert out.prediction_logits.shape == (size, width, len(scratch_tokenizer))
    assert out.seq_relationship_logits.shape == (size, 2)
    assert torch.isfinite(out.loss) and out.loss.item() > 0
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
