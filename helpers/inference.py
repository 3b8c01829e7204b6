"""Reading a trained BertForPreTraining: its two heads, forward and read out.

Inference is three steps: tokenize, one forward pass without gradients, a softmax. Next Sentence Prediction
reads the two logits of the NSP head on ``[CLS] A [SEP] B [SEP]``; fill-mask reads the MLM head's scores
over the whole vocabulary at each ``[MASK]``. The model must be in ``eval()`` mode (no dropout).

What a served model needs on top (checking a checkpoint folder, cleaning pasted text, notes on what was cut,
bad input returned as a value, one request at a time) is plumbing, kept in ``helpers.serving``; its
``Predictor`` is importable from here as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import BatchEncoding, BertForPreTraining, PreTrainedTokenizerBase

from helpers.checkpoint import read_json  # noqa: F401 - part of this module's public API
from helpers.tokens import clip_to_tokens

# Importable from here, defined in helpers.serving (which imports this module, hence the lazy lookup below).
_SERVING = ("Predictor", "NSPResult", "FillMaskResult", "InferenceError", "MAX_CHARS", "PRETRAINING_ARCHITECTURES",
            "check_checkpoint_folder")


def encode(tokenizer: PreTrainedTokenizerBase, first: Sequence[str], second: Sequence[str] | None = None,
           max_length: int = 512) -> BatchEncoding:
    """input_ids, token_type_ids and attention_mask, each (batch, seq_len): texts, or A/B pairs, padded and cut."""
    first, second = list(first), (list(second) if second is not None else None)
    if second is not None:  # see clip_to_tokens: long pairs would otherwise cost quadratic memory
        first = clip_to_tokens(tokenizer, first, max_length)
        second = clip_to_tokens(tokenizer, second, max_length)
    # token_type_ids: 0 for [CLS] A [SEP], 1 for B [SEP]; the NSP head needs to know where B starts.
    return tokenizer(first, second, truncation="longest_first", max_length=max_length, padding=True,
                     return_tensors="pt", return_token_type_ids=True, return_attention_mask=True)


@torch.no_grad()
def nsp_logits(model: BertForPreTraining, batch: BatchEncoding) -> torch.Tensor:
    """The NSP head's logits, (n_pairs, 2): index 0 = "B follows A", index 1 = "B is random"."""
    # Only the NSP head: the full forward would also build (n_pairs, seq_len, vocab) MLM logits.
    pooled = model.bert(**batch, return_dict=False)[1]  # (n_pairs, hidden): the [CLS] summary
    return model.cls.seq_relationship(pooled).float()


@torch.no_grad()
def mask_logits(model: BertForPreTraining, batch: BatchEncoding,
                mask_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The MLM head's logits at every [MASK], (n_masks, vocab), and where those masks were, (batch, seq_len)."""
    selected = (batch["input_ids"] == mask_token_id) & batch["attention_mask"].bool()
    sequence = model.bert(**batch, return_dict=False)[0]  # (batch, seq_len, hidden)
    # Only the [MASK] positions go through the MLM head (hidden -> vocab), as in training.
    return model.cls.predictions(sequence[selected]).float(), selected


def nsp_probabilities(model: BertForPreTraining, tokenizer: PreTrainedTokenizerBase,
                      pairs: Sequence[tuple[str, str]], max_length: int = 512) -> torch.Tensor:
    """P("B follows A") and P("B is random") for each (A, B) pair: (n_pairs, 2), rows sum to 1."""
    batch = encode(tokenizer, [a for a, _ in pairs], [b for _, b in pairs], max_length).to(model.device)
    return nsp_logits(model, batch).softmax(dim=-1)


def top_k_tokens(tokenizer: PreTrainedTokenizerBase, logits: torch.Tensor, k: int) -> list[list[tuple[str, float]]]:
    """Per row of ``logits`` (n, vocab): the ``k`` likeliest tokens and their probabilities, likeliest first."""
    top = logits.softmax(dim=-1).topk(k, dim=-1)  # .values and .indices: (n, k)
    return [list(zip(tokenizer.convert_ids_to_tokens(ids), probs))
            for ids, probs in zip(top.indices.tolist(), top.values.tolist())]


def fill_mask_top_k(model: BertForPreTraining, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                    k: int = 5, max_length: int = 512) -> list[list[list[tuple[str, float]]]]:
    """Per text, per [MASK] in it (up to ``max_length`` tokens), the ``k`` likeliest tokens and their probabilities."""
    batch = encode(tokenizer, texts, max_length=max_length).to(model.device)
    logits, selected = mask_logits(model, batch, tokenizer.mask_token_id)
    guesses = top_k_tokens(tokenizer, logits, k)  # the masks of all texts, row by row
    ends = selected.sum(dim=1).cumsum(dim=0).tolist()  # where each text's masks end in ``guesses``
    return [guesses[start:end] for start, end in zip([0] + ends[:-1], ends)]


def __getattr__(name: str):
    if name in _SERVING:
        import helpers.serving
        return getattr(helpers.serving, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
