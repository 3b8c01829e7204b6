"""The model: stock ``BertForPreTraining`` from scratch, the hub or a folder, and its two losses."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertForPreTraining, PreTrainedTokenizerBase

from helpers.config import Config, parse_offsets
from helpers.masking import IGNORE_INDEX
from helpers.tokens import HUB_HINT, ModelSourceError


def scratch_config(cfg: Config, tokenizer: PreTrainedTokenizerBase) -> BertConfig:
    """A small BERT sized by the profile, with the tokenizer's vocabulary and special ids."""
    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=max(512, cfg.max_length),
        type_vocab_size=2,
        initializer_range=cfg.initializer_range,  # transformers draws every weight matrix at this spread
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        pad_token_id=tokenizer.pad_token_id,
        attn_implementation="sdpa",
    )


def load_model(
    cfg: Config, tokenizer: PreTrainedTokenizerBase, counts: Mapping[int, int] | None = None
) -> BertForPreTraining:
    """``cfg.model == "scratch"`` builds a fresh model (seed it first); else ``from_pretrained``.

    ``counts`` (token id -> occurrences in the training text, ``TrainingText.unigram``) is what
    ``--output-bias-init unigram`` starts the MLM output bias from.
    """
    if cfg.model == "scratch":
        model = BertForPreTraining(scratch_config(cfg, tokenizer))
        if cfg.output_bias_init == "unigram":
            if counts is None:
                raise ValueError(
                    "--output-bias-init unigram starts the MLM output bias from the training text's token "
                    "counts: pass load_model(cfg, tokenizer, counts=data.training_text(cfg).unigram)."
                )
            unigram_bias_(model, counts)
        if cfg.position_init == "sinusoidal":
            sinusoidal_positions_(model.bert.embeddings.position_embeddings.weight, model.config.initializer_range)
        if cfg.position_dims:
            own_position_dims_(model, cfg.position_dims)
        if cfg.neighbour_offsets:
            neighbour_heads_(
                model, cfg.neighbour_layer, parse_offsets(cfg.neighbour_offsets), cfg.position_dims, cfg.neighbour_scale
            )
        return model
    try:
        # safetensors only: no pickled weights are ever unpickled.
        model = BertForPreTraining.from_pretrained(cfg.model, use_safetensors=True, attn_implementation="sdpa")
    except (OSError, ValueError) as err:
        where = "directory" if Path(cfg.model).exists() else "hub model"
        raise ModelSourceError(
            f"Could not load the {where} {cfg.model!r} as a BERT with pretraining heads "
            f"({str(err).splitlines()[0][:160]}). {HUB_HINT}"
        ) from None
    if model.config.vocab_size < len(tokenizer):
        raise ModelSourceError(
            f"The model {cfg.model!r} knows {model.config.vocab_size} tokens but its tokenizer "
            f"has {len(tokenizer)}; use the tokenizer that came with the model."
        )
    return model


@torch.no_grad()
def unigram_bias_(model: BertForPreTraining, counts: Mapping[int, int]) -> None:
    """Start the MLM output bias at each token's log-frequency in the training text: the unigram baseline's guess.

    With every other weight small, the first logits are about this bias, so a fresh model already ranks tokens by how
    often they occur (its top guess is the unigram guess) instead of spreading its bets evenly over the vocabulary.
    """
    bias = model.cls.predictions.bias  # (vocab,); the output layer adds it to every position's logits
    occurrences = torch.full_like(bias, 0.5)  # a token the text never has gets half an occurrence: a finite log
    ids = torch.tensor(list(counts), dtype=torch.long)
    occurrences[ids] = torch.tensor([float(counts[i]) for i in counts.keys()], dtype=bias.dtype)
    bias.copy_(torch.log(occurrences / occurrences.sum()))  # log P(token), summing to 1 over the vocabulary


@torch.no_grad()
def sinusoidal_positions_(table: torch.Tensor, std: float) -> None:
    """Fill a (max_positions, hidden) position table with the Transformer's sinusoids, scaled to ``std``.

    The table stays a learned BERT parameter; only its starting point changes. Sinusoids let attention find
    "the token next to me" from the first step (their dot products depend on the offset between positions),
    where random rows must first be learned one position at a time.
    """
    n_positions, hidden = table.shape
    waves = sinusoids(n_positions, hidden // 2, hidden)  # (max_positions, hidden)
    table.copy_(waves * (std / waves.std()))  # the same spread as BERT's random initialisation


def frequencies(n: int, hidden: int) -> torch.Tensor:
    """(n,): the Transformer's ``n`` highest frequencies for a model of width ``hidden``, from 1 toward 1/10000."""
    return torch.exp(torch.arange(n, dtype=torch.float32) * (-2 * math.log(10000.0) / hidden))


def sinusoids(n_positions: int, n_frequencies: int, hidden: int) -> torch.Tensor:
    """(n_positions, 2 * n_frequencies): the (sin, cos) pair of each position at each of the highest frequencies."""
    position = torch.arange(n_positions, dtype=torch.float32).unsqueeze(1)  # (n_positions, 1)
    frequency = frequencies(n_frequencies, hidden)  # (n_frequencies,)
    waves = torch.empty(n_positions, 2 * n_frequencies)
    waves[:, 0::2] = torch.sin(position * frequency)  # (n_positions, n_frequencies)
    waves[:, 1::2] = torch.cos(position * frequency)
    return waves


@torch.no_grad()
def own_position_dims_(model: BertForPreTraining, dims: int) -> None:
    """Give positions the first ``dims`` embedding dimensions: sinusoids there, words and segments at zero."""
    embeddings, std = model.bert.embeddings, model.config.initializer_range
    table = embeddings.position_embeddings.weight  # (max_positions, hidden)
    waves = sinusoids(table.shape[0], dims // 2, table.shape[1])  # (max_positions, dims)
    table.zero_()
    # Each row as long as a random row of spread ``std`` (the same energy, now in ``dims`` dimensions).
    table[:, :dims] = waves * (std * (table.shape[1] / dims) ** 0.5 / waves.pow(2).mean().sqrt())
    embeddings.word_embeddings.weight[:, :dims] = 0.0  # (vocab, hidden); tied to the MLM decoder
    embeddings.token_type_embeddings.weight[:, :dims] = 0.0  # (2, hidden)


def rotation(angle: torch.Tensor) -> torch.Tensor:
    """(n, 2, 2) rotations that turn each (sin a, cos a) pair into (sin(a + angle), cos(a + angle))."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    # [sin(a+t), cos(a+t)] = [sin a cos t + cos a sin t, cos a cos t - sin a sin t]: rows act on (sin a, cos a).
    return torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)


@torch.no_grad()
def neighbour_heads_(
    model: BertForPreTraining, layer: int, offsets: list[int], position_dims: int, scale: float
) -> None:
    """Start head h of ``layer`` attending from position i to i + offsets[h], through the position dimensions.

    The key reads a position's sinusoids; the query reads them rotated by ``offset`` steps, so query i and
    key j agree most where j = i + offset. Run this after ``own_position_dims_``, on a fresh model.
    """
    config = model.config
    head_dim = config.hidden_size // config.num_attention_heads
    n_freq = min(position_dims, head_dim) // 2  # frequency pairs a head can hold
    frequency = frequencies(n_freq, config.hidden_size)  # (n_freq,)
    attention = model.bert.encoder.layer[layer].attention.self
    for head, offset in enumerate(offsets):
        rows = slice(head * head_dim, (head + 1) * head_dim)  # this head's slice of the query/key outputs
        for linear in (attention.query, attention.key):
            linear.weight[rows] = 0.0  # (head_dim, hidden): only positions, no words, at the start
            linear.bias[rows] = 0.0
        query = torch.block_diag(*rotation(offset * frequency))  # (2 n_freq, 2 n_freq): a step of ``offset``
        # nn.Linear computes x @ W.T, so the block that maps the sinusoid pairs x to R x is R itself.
        block = (slice(head * head_dim, head * head_dim + 2 * n_freq), slice(0, 2 * n_freq))
        attention.query.weight[block] = scale * query
        attention.key.weight[block] = scale * torch.eye(2 * n_freq)


class PretrainingModel(nn.Module):
    """What the loop trains: a stock ``BertForPreTraining`` whose forward gives both losses, MLM head at labels only."""

    # The stock forward runs the 30,522-way MLM decoder on every position; only ~15% of real tokens carry a label,
    # so this runs the same head (same modules, same weights) on the labelled positions alone. The losses equal the
    # stock ones; ``stock`` is the plain BertForPreTraining, the one a checkpoint saves.

    def __init__(self, stock: BertForPreTraining, nsp_dropout: float = 0.0):
        super().__init__()
        self.stock = stock
        self.nsp_dropout = nsp_dropout  # on the pooled [CLS] vector, in training only: no module added to the model

    def forward(
        self, input_ids, attention_mask, token_type_ids, labels, next_sentence_label, nsp_weight: float = 1.0, **_
    ):
        sequence, pooled = self.stock.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=False
        )[:2]
        # sequence: (batch, seq_len, hidden); pooled: (batch, hidden), the [CLS] summary
        selected = labels != IGNORE_INDEX  # (batch, seq_len)
        mlm_logits = self.stock.cls.predictions(sequence[selected])  # (n_selected, vocab)
        mlm_labels = labels[selected]  # (n_selected,)
        pooled = F.dropout(pooled, self.nsp_dropout, training=self.training)  # (batch, hidden)
        nsp_logits = self.stock.cls.seq_relationship(pooled)  # (batch, 2)
        nsp_loss = F.cross_entropy(nsp_logits.float(), next_sentence_label.view(-1))
        if mlm_labels.numel():
            mlm_loss = F.cross_entropy(mlm_logits.float(), mlm_labels)
        else:  # a batch where nothing was selected: no MLM signal, but keep the graph whole
            mlm_loss = mlm_logits.sum() * 0.0
        # nsp_weight 0 trains MLM alone (the NSP head gets no gradient); 1 is BertForPreTraining's plain sum.
        return {
            "loss": mlm_loss + nsp_weight * nsp_loss,
            "mlm_loss": mlm_loss,
            "nsp_loss": nsp_loss,
            "mlm_logits": mlm_logits,
            "mlm_labels": mlm_labels,
            "nsp_logits": nsp_logits,
        }
