"""The model: stock ``BertForPreTraining`` from scratch, the hub or a folder, and its two losses."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertForPreTraining, PreTrainedTokenizerBase

from helpers.config import Config
from helpers.masking import IGNORE_INDEX
from helpers.tokens import HUB_HINT, ModelSourceError


def scratch_config(cfg: Config, tokenizer: PreTrainedTokenizerBase) -> BertConfig:
    """A small BERT sized by the profile, with the tokenizer's vocabulary and special ids."""
    return BertConfig(vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
                      num_attention_heads=cfg.num_attention_heads, intermediate_size=cfg.intermediate_size,
                      max_position_embeddings=max(512, cfg.max_length), type_vocab_size=2,
                      initializer_range=cfg.initializer_range,  # transformers draws every weight matrix at this spread
                      hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
                      pad_token_id=tokenizer.pad_token_id, attn_implementation="sdpa")


def load_model(cfg: Config, tokenizer: PreTrainedTokenizerBase) -> BertForPreTraining:
    """``cfg.model == "scratch"`` builds a fresh model (seed it first); else ``from_pretrained``."""
    if cfg.model == "scratch":
        model = BertForPreTraining(scratch_config(cfg, tokenizer))
        if cfg.position_init == "sinusoidal":
            sinusoidal_positions_(model.bert.embeddings.position_embeddings.weight, model.config.initializer_range)
        return model
    try:
        # safetensors only: no pickled weights are ever unpickled.
        model = BertForPreTraining.from_pretrained(cfg.model, use_safetensors=True, attn_implementation="sdpa")
    except (OSError, ValueError) as err:
        where = "directory" if Path(cfg.model).exists() else "hub model"
        raise ModelSourceError(f"Could not load the {where} {cfg.model!r} as a BERT with pretraining heads "
                               f"({str(err).splitlines()[0][:160]}). {HUB_HINT}") from None
    if model.config.vocab_size < len(tokenizer):
        raise ModelSourceError(f"The model {cfg.model!r} knows {model.config.vocab_size} tokens but its tokenizer "
                               f"has {len(tokenizer)}; use the tokenizer that came with the model.")
    return model


@torch.no_grad()
def sinusoidal_positions_(table: torch.Tensor, std: float) -> None:
    """Fill a (max_positions, hidden) position table with the Transformer's sinusoids, scaled to ``std``.

    The table stays a learned BERT parameter; only its starting point changes. Sinusoids let attention find
    "the token next to me" from the first step (their dot products depend on the offset between positions),
    where random rows must first be learned one position at a time.
    """
    n_positions, hidden = table.shape
    position = torch.arange(n_positions, dtype=torch.float32).unsqueeze(1)  # (max_positions, 1)
    frequency = torch.exp(torch.arange(0, hidden, 2, dtype=torch.float32) * (-math.log(10000.0) / hidden))  # (hidden/2,)
    waves = torch.zeros(n_positions, hidden)
    waves[:, 0::2] = torch.sin(position * frequency)  # (max_positions, hidden/2)
    waves[:, 1::2] = torch.cos(position * frequency)
    table.copy_(waves * (std / waves.std()))  # the same spread as BERT's random initialisation


class PretrainingLosses(nn.Module):
    """Wraps a stock ``BertForPreTraining`` and computes its two losses, MLM head only where labels are set.

    The stock forward runs the 30,522-way MLM decoder on every position; only ~15% of real tokens carry a
    label, so this evaluates the same head (same modules, same weights) on the labelled positions alone.
    The result equals the stock loss; the checkpoint stays a stock one.
    """

    def __init__(self, model: BertForPreTraining):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids, labels, next_sentence_label, nsp_weight: float = 1.0, **_):
        sequence, pooled = self.model.bert(input_ids=input_ids, attention_mask=attention_mask,
                                           token_type_ids=token_type_ids, return_dict=False)[:2]
        # sequence: (batch, seq_len, hidden); pooled: (batch, hidden), the [CLS] summary
        selected = labels != IGNORE_INDEX  # (batch, seq_len)
        mlm_logits = self.model.cls.predictions(sequence[selected])  # (n_selected, vocab)
        mlm_labels = labels[selected]  # (n_selected,)
        nsp_logits = self.model.cls.seq_relationship(pooled)  # (batch, 2)
        nsp_loss = F.cross_entropy(nsp_logits.float(), next_sentence_label.view(-1))
        if mlm_labels.numel():
            mlm_loss = F.cross_entropy(mlm_logits.float(), mlm_labels)
        else:  # a batch where nothing was selected: no MLM signal, but keep the graph whole
            mlm_loss = mlm_logits.sum() * 0.0
        # nsp_weight 0 trains MLM alone (the NSP head gets no gradient); 1 is BertForPreTraining's plain sum.
        return {"loss": mlm_loss + nsp_weight * nsp_loss, "mlm_loss": mlm_loss, "nsp_loss": nsp_loss,
                "mlm_logits": mlm_logits, "mlm_labels": mlm_labels, "nsp_logits": nsp_logits}


def stock_losses(model: BertForPreTraining, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same two losses from the stock forward (every position through the MLM head), for comparison."""
    out = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids", "labels",
                                         "next_sentence_label")})
    vocab = out.prediction_logits.shape[-1]
    mlm_loss = F.cross_entropy(out.prediction_logits.reshape(-1, vocab).float(), batch["labels"].reshape(-1),
                               ignore_index=IGNORE_INDEX)
    nsp_loss = F.cross_entropy(out.seq_relationship_logits.float(), batch["next_sentence_label"].view(-1))
    return {"loss": out.loss, "mlm_loss": mlm_loss, "nsp_loss": nsp_loss}
