"""The scratch model: a stock BertForPreTraining, with the profile's dropout, starting spread and position table."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import BertForPreTraining

from helpers.config import get_profile
from helpers.model import PretrainingModel, load_model, sinusoidal_positions_, sinusoids


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
    out = PretrainingModel(model)(**ids, labels=labels, next_sentence_label=torch.tensor([0]), nsp_weight=0.0)
    out["loss"].backward()
    assert torch.equal(out["loss"], out["mlm_loss"])
    assert model.cls.seq_relationship.weight.grad is None or not model.cls.seq_relationship.weight.grad.any()
    assert model.cls.predictions.transform.dense.weight.grad.any()


def _step0_attention(model: BertForPreTraining, layer: int, seed: int = 0) -> torch.Tensor:
    """Layer ``layer``'s attention weights (batch, heads, query, key) on random tokens, eager attention."""
    model.config._attn_implementation = "eager"  # sdpa returns no weights
    ids = torch.randint(5, model.config.vocab_size, (4, 96), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.bert(input_ids=ids, output_attentions=True).attentions[layer]


@pytest.mark.parametrize("offsets, heads, layer", [("-1,1", 2, 0), ("-2,-1,1,2", 4, 0), ("-1,1", 2, 1)])
def test_neighbour_heads_attend_where_they_are_set_at_step_0(scratch_tokenizer, offsets, heads, layer):
    cfg = get_profile(
        "default", output_bias_init="zero", num_attention_heads=heads, neighbour_offsets=offsets, neighbour_layer=layer
    )
    torch.manual_seed(0)
    attention = _step0_attention(load_model(cfg, scratch_tokenizer), layer)  # (4, heads, 96, 96)
    queries = torch.arange(2, 94)  # every query whose neighbours at -2..+2 exist
    for head, offset in enumerate(int(o) for o in offsets.split(",")):
        weights = attention[:, head, queries]  # (4, 92, 96)
        # Most queries' largest weight sits on the token at their offset (not all: LayerNorm scales each key's
        # position part by its word's length), and it carries a large share of the weight at step 0. Measured:
        # 0.78 / 0.65 for the default's two heads, 0.95 / 0.80 for four at +-1 and +-2, 0.59 / 0.51 in layer 1
        # (whose input has been through layer 0); a random start gives about 0.01 / 0.01.
        hits = (weights.argmax(-1) == queries + offset).float().mean().item()
        share = weights[:, torch.arange(len(queries)), queries + offset].mean().item()
        print(f"offset {offset:+d} in layer {layer}: largest at the neighbour for {hits:.2f}, share {share:.2f}")
        assert hits > 0.5 and share > 0.4, (head, offset, hits, share)


def test_neighbour_scale_sets_the_share_on_the_neighbour(scratch_tokenizer):
    shares = []
    for scale in (1.2, 2.0, 3.0):
        torch.manual_seed(0)
        model = load_model(get_profile("default", output_bias_init="zero", neighbour_scale=scale), scratch_tokenizer)
        attention = _step0_attention(model, 0)  # (4, 2, 96, 96)
        i = torch.arange(1, 95)
        shares.append(attention[:, 0, i, i - 1].mean().item())  # head 0 looks left
    # Measured: 0.43 / 0.65 / 0.75 of head 0's weight on the token to the left (the issue measured 0.65 at 2.0).
    assert shares[0] < shares[1] < shares[2]
    assert 0.55 < shares[1] < 0.75, shares


def test_a_random_start_attends_nowhere_in_particular(scratch_tokenizer):
    # The control: BERT's random start puts about 1/96 on each token, nothing on the neighbour.
    torch.manual_seed(0)
    model = load_model(
        get_profile("default", output_bias_init="zero", position_dims=0, neighbour_offsets=""), scratch_tokenizer
    )
    attention = _step0_attention(model, 0)
    i = torch.arange(1, 95)
    assert attention[:, 0, i, i - 1].mean() < 0.05


def test_positions_own_their_dimensions_and_the_checkpoint_is_stock(scratch_tokenizer, tmp_path):
    cfg = get_profile("default", output_bias_init="zero")  # the heads alone (the bias start is tested below)
    torch.manual_seed(0)
    model = load_model(cfg, scratch_tokenizer)
    embeddings, dims = model.bert.embeddings, cfg.position_dims
    assert not embeddings.word_embeddings.weight[:, :dims].any()  # words start with nothing in the position dims
    assert not embeddings.token_type_embeddings.weight[:, :dims].any()
    table = embeddings.position_embeddings.weight
    assert not table[:, dims:].any()  # zero outside the position dimensions
    waves = sinusoids(table.shape[0], dims // 2, cfg.hidden_size)  # (max_positions, dims), the 32 highest frequencies
    assert torch.allclose(
        table[:, :dims] / (table[:, :dims].norm() / waves.norm()), waves, atol=1e-5
    )  # sinusoids there
    # Each position row is as long as a random row of spread initializer_range.
    assert abs(table.norm(dim=1).mean().item() / (cfg.initializer_range * cfg.hidden_size**0.5) - 1) < 0.01
    # <p_i, p_(i+1)> is the same for every i: what lets one rotation find "the next token" anywhere.
    gram = table[:200] @ table[:200].T
    along = torch.diagonal(gram, 1)
    assert (along.max() - along.min()).item() < 1e-5 * gram.abs().max().item()
    before = _step0_attention(model, 0)
    model.save_pretrained(tmp_path)
    again = BertForPreTraining.from_pretrained(tmp_path)  # stock transformers, no project code
    assert torch.equal(
        again.bert.encoder.layer[0].attention.self.query.weight, model.bert.encoder.layer[0].attention.self.query.weight
    )
    assert torch.allclose(_step0_attention(again, 0), before, atol=1e-6)


def test_the_unigram_start_makes_the_first_guess_the_unigram_baselines(tiny_cfg):
    from helpers.dataset import prepare_data, validation_batches

    cfg = get_profile("tiny", output_bias_init="unigram")
    data = prepare_data(cfg)
    text = data.training_text(cfg)
    with pytest.raises(ValueError, match="counts"):  # the start needs the counts: one sentence saying how to pass them
        load_model(cfg, data.tokenizer)
    torch.manual_seed(0)
    model = load_model(cfg, data.tokenizer, text.unigram).eval()
    bias = model.cls.predictions.bias
    total = sum(text.unigram.values()) + 0.5 * (len(bias) - len(text.unigram))
    top, count = text.unigram.most_common(1)[0]
    assert bias[top].item() == pytest.approx(math.log(count / total), abs=1e-5)  # log P(token) in the training text
    assert torch.logsumexp(bias, 0).item() == pytest.approx(0.0, abs=1e-5)  # a distribution over the vocabulary
    # Fresh, it already guesses what the unigram baseline guesses, at every [MASK] of the validation pairs.
    batches = validation_batches(data, cfg)
    guesses = torch.cat([PretrainingModel(model)(**batch)["mlm_logits"].argmax(-1) for batch in batches])
    assert (guesses == top).float().mean().item() > 0.95
    # ... and its first MLM loss is about the unigram cross-entropy of the hidden tokens, far below ln(vocabulary).
    labels = torch.cat([batch["labels"][batch["labels"] != -100] for batch in batches])
    cross_entropy = -bias[labels].mean().item()
    loss = sum(PretrainingModel(model)(**b)["mlm_loss"].item() * (b["labels"] != -100).sum().item() for b in batches)
    assert loss / len(labels) == pytest.approx(cross_entropy, abs=0.15) and cross_entropy < math.log(len(bias)) - 1
    torch.manual_seed(0)
    zero = load_model(get_profile("tiny"), data.tokenizer)  # BERT's start: the bias at zero
    assert torch.count_nonzero(zero.cls.predictions.bias) == 0
