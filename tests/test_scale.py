"""The scale table: this run beside the bert-base profile and BERT-base as published."""

from __future__ import annotations

import pytest

from helpers.config import get_profile


@pytest.fixture(scope="module")
def tiny_scale():
    """The tiny profile's data, steps per epoch, and its scale table after one epoch."""
    import math

    from helpers.dataset import prepare_data
    from helpers.scale import scale_table

    cfg = get_profile("tiny")
    data = prepare_data(cfg)
    per_epoch = math.ceil(len(data.train_pairs(cfg, 0)) / cfg.batch_size)
    return cfg, data, per_epoch, scale_table(cfg, data, per_epoch)


THIS, PROFILE, PAPER = (
    "this run (profile tiny)",
    "bert-base profile (continues bert-base-uncased; Colab GPU)",
    "BERT-base (Devlin et al., 2019)",
)


def test_scale_table_counts_this_runs_model_words_and_tokens(tiny_scale):
    from helpers.dataset import MeditationsDataset, make_loader
    from helpers.model import load_model
    from helpers.scale import readable

    cfg, data, per_epoch, table = tiny_scale
    assert list(table.columns) == [THIS, PROFILE, PAPER] and len(table) == 5
    numbers = table.attrs["numbers"][THIS]
    model = load_model(cfg, data.tokenizer)  # a real model, weights and all
    assert numbers["parameters"] == sum(p.numel() for p in model.parameters())
    assert table.loc["parameters", THIS] == readable(numbers["parameters"])
    assert numbers["words"] == sum(len(data.paragraphs[i].split()) for i in data.train_sentences)
    assert table.loc["optimizer steps × batch", THIS] == f"{per_epoch} × {cfg.batch_size}"
    # Tokens seen in one epoch are the real tokens (attention_mask ones) of the batches that epoch trains on.
    train_set = MeditationsDataset.from_pairs(data.tokenizer, data.train_pairs(cfg, 0), cfg.max_length)
    real = sum(int(b["attention_mask"].sum()) for b in make_loader(train_set, data.tokenizer, cfg, shuffle=True))
    assert numbers["tokens"] == real


def test_scale_table_tokens_grow_with_the_steps_taken(tiny_scale):
    from helpers.scale import scale_table

    cfg, data, per_epoch, one_epoch = tiny_scale
    tokens = one_epoch.attrs["numbers"][THIS]["tokens"]
    assert scale_table(cfg, data, 2 * per_epoch).attrs["numbers"][THIS]["tokens"] == 2 * tokens
    assert scale_table(cfg, data, per_epoch // 2).attrs["numbers"][THIS]["tokens"] == pytest.approx(tokens / 2, abs=1)


def test_scale_table_sets_bert_base_at_its_published_scale(tiny_scale):
    *_, table = tiny_scale
    paper, profile = table.attrs["numbers"][PAPER], table.attrs["numbers"][PROFILE]
    assert 105e6 < paper["parameters"] < 115e6  # "110M parameters"
    assert profile["parameters"] == paper["parameters"]  # the profile trains bert-base-uncased's shape
    assert paper["words"] == 3_300_000_000 and table.loc["words of training text", PAPER] == "3.3 B"
    assert table.loc["optimizer steps × batch", PAPER] == "1,000,000 × 256"
    assert paper["tokens"] == 128_000 * 1_000_000
    assert profile["steps"] > 0 and 0 < profile["tokens"] < 256 * profile["steps"] * profile["batch"]  # under the cap
    assert any("tokenizer" in note and "256" in note for note in table.attrs["notes"])  # the estimate is said
    # The profile continues a pretrained model: its column and a note say so, so no one reads it as pretraining.
    assert any(
        note.startswith("bert-base profile: it starts from bert-base-uncased, already pretrained")
        for note in table.attrs["notes"]
    )


def test_scale_table_compute_is_six_n_d_in_every_column(tiny_scale):
    from helpers.scale import readable

    *_, table = tiny_scale
    for column, numbers in table.attrs["numbers"].items():
        assert numbers["flops"] == 6 * numbers["parameters"] * numbers["tokens"], column
        assert table.loc["training compute in FLOPs (≈ 6 · N · D)", column] == readable(
            numbers["flops"], scientific=True
        )


def test_large_numbers_read_at_a_glance():
    from helpers.scale import readable

    assert [readable(n) for n in (950, 27_400, 4_100_000, 3_300_000_000, 1.2e15)] == [
        "950",
        "27.4 k",
        "4.1 M",
        "3.3 B",
        "1.2 × 10^15",
    ]
    assert readable(2_607_767_904, scientific=True) == "2.6 × 10^9"
