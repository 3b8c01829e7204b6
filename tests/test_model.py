"""The scratch model: a stock BertForPreTraining, with the profile's dropout, starting spread and position table."""

from __future__ import annotations

import torch
from transformers import BertForPreTraining

from helpers.config import get_profile
from helpers.model import PretrainingLosses, load_model, sinusoidal_positions_


def test_sinusoidal_table_has_berts_spread_and_depends_only_on_the_offset():
    table = torch.empty(512, 128)
    sinusoidal_positions_(table, std=0.02)
    assert abs(table.std().item() - 0.02) < 1e-6
    # What attention needs to find a neighbour: <p_i, p_(i+k)> is the same for every i (a function of k alone).
    gram = table @ table.T  # (512, 512)
    for offset in (1, 2, 5):
        along = torch.diagonal(gram, offset)  # <p_i, p_(i+offset)> for every i
        assert (along.max() - along.min()).item() < 1e-6 * gram.abs().max().item() + 1e-7
    assert not torch.allclose(torch.diagonal(gram, 1)[0], torch.diagonal(gram, 9)[0])


def test_scratch_model_is_stock_and_takes_the_profiles_choices(scratch_tokenizer, tmp_path):
    cfg = get_profile("tiny", position_init="sinusoidal", dropout=0.0)
    torch.manual_seed(0)
    model = load_model(cfg, scratch_tokenizer)
    assert model.config.hidden_dropout_prob == model.config.attention_probs_dropout_prob == 0.0
    table = model.bert.embeddings.position_embeddings.weight.detach().clone()
    expected = torch.empty_like(table)
    sinusoidal_positions_(expected, model.config.initializer_range)
    assert torch.equal(table, expected)
    # Still a stock checkpoint: saved and loaded by transformers alone, the table intact.
    model.save_pretrained(tmp_path)
    again = BertForPreTraining.from_pretrained(tmp_path)
    assert torch.equal(again.bert.embeddings.position_embeddings.weight, table)
    torch.manual_seed(0)
    random = load_model(get_profile("tiny"), scratch_tokenizer).bert.embeddings.position_embeddings.weight
    assert not torch.allclose(random, table)


def test_initializer_range_sets_the_spread_of_every_weight_matrix(scratch_tokenizer, tmp_path):
    # The profile's initializer_range reaches transformers' own initialisation: every embedding table and every
    # linear layer starts with that standard deviation, LayerNorm at 1 and 0, and the value is kept in config.json.
    for std in (0.02, 0.05):
        torch.manual_seed(0)
        model = load_model(get_profile("tiny", initializer_range=std), scratch_tokenizer)
        assert model.config.initializer_range == std
        for name, param in model.named_parameters():
            if param.ndim == 2 and param.numel() >= 2048:  # enough entries for a spread within 5%
                assert abs(param.std().item() / std - 1) < 0.05, (name, param.std().item(), std)
            elif "LayerNorm" in name:
                assert torch.equal(param, torch.full_like(param, 1.0 if name.endswith("weight") else 0.0)), name
        model.save_pretrained(tmp_path / str(std))
        assert BertForPreTraining.from_pretrained(tmp_path / str(std)).config.initializer_range == std


def test_nsp_weight_zero_trains_mlm_alone(scratch_tokenizer):
    cfg = get_profile("tiny")
    torch.manual_seed(0)
    model = load_model(cfg, scratch_tokenizer)
    ids = scratch_tokenizer(["the gods are just"], ["a man is good"], return_tensors="pt")
    labels = torch.full_like(ids["input_ids"], -100)
    labels[0, 2] = ids["input_ids"][0, 2]
    out = PretrainingLosses(model)(**ids, labels=labels, next_sentence_label=torch.tensor([0]), nsp_weight=0.0)
    out["loss"].backward()
    assert torch.equal(out["loss"], out["mlm_loss"])
    assert model.cls.seq_relationship.weight.grad is None or not model.cls.seq_relationship.weight.grad.any()
    assert model.cls.predictions.transform.dense.weight.grad.any()
