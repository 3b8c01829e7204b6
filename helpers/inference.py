"""Reading a trained BertForPreTraining: its two heads, forward and read out.

Inference is three steps: tokenize, one forward pass without gradients, a softmax. Next Sentence Prediction
reads the two logits of the NSP head on ``[CLS] A [SEP] B [SEP]``; fill-mask reads the MLM head's scores
over the whole vocabulary at each ``[MASK]``. The model must be in ``eval()`` mode (no dropout).

What a served model needs on top (checking a checkpoint folder, cleaning pasted text, notes on what was cut,
bad input returned as a value, one request at a time) is plumbing, kept in ``helpers.serving`` (``Predictor``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from transformers import BatchEncoding, BertForPreTraining, PreTrainedTokenizerBase

from helpers.pairs import LABEL_NAMES
from helpers.tokens import clip_to_tokens


def encode(
    tokenizer: PreTrainedTokenizerBase, first: Sequence[str], second: Sequence[str] | None = None, max_length: int = 512
) -> BatchEncoding:
    """input_ids, token_type_ids and attention_mask, each (batch, seq_len): texts, or A/B pairs, padded and cut."""
    first, second = list(first), (list(second) if second is not None else None)
    if second is not None:  # see clip_to_tokens: long pairs would otherwise cost quadratic memory
        first = clip_to_tokens(tokenizer, first, max_length)
        second = clip_to_tokens(tokenizer, second, max_length)
    # token_type_ids: 0 for [CLS] A [SEP], 1 for B [SEP]; the NSP head needs to know where B starts.
    return tokenizer(
        first,
        second,
        truncation="longest_first",
        max_length=max_length,
        padding=True,
        return_tensors="pt",
        return_token_type_ids=True,
        return_attention_mask=True,
    )


@torch.no_grad()
def nsp_logits(model: BertForPreTraining, batch: BatchEncoding) -> torch.Tensor:
    """The NSP head's logits, (n_pairs, 2): index 0 = "B follows A", index 1 = "B is random"."""
    # Only the NSP head: the full forward would also build (n_pairs, seq_len, vocab) MLM logits.
    pooled = model.bert(**batch, return_dict=False)[1]  # (n_pairs, hidden): the [CLS] summary
    return model.cls.seq_relationship(pooled).float()


@torch.no_grad()
def mask_logits(
    model: BertForPreTraining, batch: BatchEncoding, mask_token_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The MLM head's logits at every [MASK], (n_masks, vocab), and where those masks were, (batch, seq_len)."""
    selected = (batch["input_ids"] == mask_token_id) & batch["attention_mask"].bool()
    sequence = model.bert(**batch, return_dict=False)[0]  # (batch, seq_len, hidden)
    # Only the [MASK] positions go through the MLM head (hidden -> vocab), as in training.
    return model.cls.predictions(sequence[selected]).float(), selected


def nsp_probabilities(
    model: BertForPreTraining,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    max_length: int = 512,
) -> torch.Tensor:
    """P("B follows A") and P("B is random") for each (A, B) pair: (n_pairs, 2), rows sum to 1."""
    batch = encode(tokenizer, [a for a, _ in pairs], [b for _, b in pairs], max_length).to(model.device)
    return nsp_logits(model, batch).softmax(dim=-1)


def top_k_tokens(tokenizer: PreTrainedTokenizerBase, logits: torch.Tensor, k: int) -> list[list[tuple[str, float]]]:
    """Per row of ``logits`` (n, vocab): the ``k`` likeliest tokens and their probabilities, likeliest first."""
    top = logits.softmax(dim=-1).topk(k, dim=-1)  # .values and .indices: (n, k)
    return [
        list(zip(tokenizer.convert_ids_to_tokens(ids), probs))
        for ids, probs in zip(top.indices.tolist(), top.values.tolist())
    ]


def fill_mask_top_k(
    model: BertForPreTraining,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    k: int = 5,
    max_length: int = 512,
) -> list[list[list[tuple[str, float]]]]:
    """Per text, per [MASK] in it (up to ``max_length`` tokens), the ``k`` likeliest tokens and their probabilities."""
    batch = encode(tokenizer, texts, max_length=max_length).to(model.device)
    logits, selected = mask_logits(model, batch, tokenizer.mask_token_id)
    guesses = top_k_tokens(tokenizer, logits, k)  # the masks of all texts, row by row
    ends = selected.sum(dim=1).cumsum(dim=0).tolist()  # where each text's masks end in ``guesses``
    return [guesses[start:end] for start, end in zip([0] + ends[:-1], ends)]


def _one_token_id(tokenizer: PreTrainedTokenizerBase, word: str, why: str) -> int:
    """The id of ``word`` when the tokenizer keeps it whole; else one sentence ending in ``why`` it must be one."""
    pieces = tokenizer.tokenize(word)
    if len(pieces) != 1 or pieces[0] == tokenizer.unk_token:
        raise ValueError(
            f"{word!r} is not one token of this vocabulary (the tokenizer makes it {pieces}), so {why}: "
            f"pick a word the tokenizer keeps whole, as tokenizer.tokenize({word!r}) shows."
        )
    return tokenizer.convert_tokens_to_ids(pieces[0])


@torch.no_grad()
def nearest_tokens(
    model: BertForPreTraining, tokenizer: PreTrainedTokenizerBase, words: Sequence[str], k: int = 5
) -> dict[str, list[tuple[str, float]]]:
    """Per word, the ``k`` tokens whose input embeddings are closest by cosine similarity, closest first.

    The word itself and the tokenizer's special tokens are left out; a word must be one token of the vocabulary.
    """
    if k < 1:
        raise ValueError(f"k={k} asks for no neighbours; pass k=1 or more.")
    ids = [_one_token_id(tokenizer, word, "it has no row of its own") for word in words]
    table = model.get_input_embeddings().weight[: len(tokenizer)].float()  # (vocab, hidden): one row per token
    unit = torch.nn.functional.normalize(table, dim=-1)
    similarity = unit[ids] @ unit.T  # (n_words, vocab): cosine of each word's row with every row
    similarity[:, sorted(set(tokenizer.all_special_ids))] = -torch.inf
    similarity[torch.arange(len(ids)), ids] = -torch.inf  # a word is always its own nearest row
    top = similarity.topk(min(k, len(tokenizer) - len(set(tokenizer.all_special_ids)) - 1), dim=-1)  # (n_words, k)
    return {
        word: list(zip(tokenizer.convert_ids_to_tokens(row_ids), row_values))
        for word, row_ids, row_values in zip(words, top.indices.tolist(), top.values.tolist())
    }


def nsp_readout(
    model: BertForPreTraining,
    tokenizer: PreTrainedTokenizerBase,
    sentence_a: str,
    sentence_b: str,
    label: int,
    max_length: int = 512,
) -> str:
    """One pair read out as the tutorial does: both logits, their softmax and the argmax, with the true label."""
    logits = nsp_logits(model, encode(tokenizer, [sentence_a], [sentence_b], max_length).to(model.device))[0]  # (2,)
    (follows, random), probs, guess = logits.tolist(), logits.softmax(dim=-1).tolist(), int(logits.argmax())
    return (
        f"A: {sentence_a}\nB: {sentence_b}\n"
        f"logits [index 0 = '{LABEL_NAMES[0]}', index 1 = '{LABEL_NAMES[1]}']: [{follows:.3f}, {random:.3f}]\n"
        f"softmax: [{probs[0]:.3f}, {probs[1]:.3f}]  argmax: {guess} = '{LABEL_NAMES[guess]}'  "
        f"(true label: {label} = '{LABEL_NAMES[label]}')"
    )


def pair_attentions(
    model: BertForPreTraining,
    tokenizer: PreTrainedTokenizerBase,
    sentence_a: str,
    sentence_b: str,
    max_length: int = 512,
) -> tuple[list[str], torch.Tensor]:
    """The tokens of one pair and its attention weights, (layers, heads, seq_len, seq_len).

    transformers' SDPA attention returns no weights, so the model runs this one pair with the "eager"
    implementation (the same maths, written out) and is switched back afterwards.
    """
    encoded = encode(tokenizer, [sentence_a], [sentence_b], max_length)  # (1, seq_len) each
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(**encoded.to(model.device), output_attentions=True)
    finally:
        model.set_attn_implementation(before)
    attentions = torch.stack([layer[0] for layer in out.attentions]).cpu()  # (layers, heads, seq_len, seq_len)
    return tokenizer.convert_ids_to_tokens(encoded["input_ids"][0]), attentions


class WordRank(NamedTuple):
    """A word at a text's [MASK]: its rank among every token (1 = the top guess), its probability, and the top guess."""

    word: str
    rank: int
    probability: float
    top: str
    top_probability: float


@torch.no_grad()
def word_ranks(
    model: BertForPreTraining,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    words: Sequence[str],
    max_length: int = 512,
) -> list[WordRank]:
    """Per text with one [MASK], how the MLM head ranks the given word there among all tokens, and its top guess."""
    texts, words = list(texts), list(words)
    if len(texts) != len(words):
        raise ValueError(f"word_ranks got {len(texts)} texts and {len(words)} words: pass one word per text.")
    ids = torch.tensor(
        [_one_token_id(tokenizer, word, "no single guess at a [MASK] can be it") for word in words]
    )  # (n_texts,)
    batch = encode(tokenizer, texts, max_length=max_length).to(model.device)
    logits, selected = mask_logits(model, batch, tokenizer.mask_token_id)  # (n_masks, vocab), (n_texts, seq_len)
    for text, masks in zip(texts, selected.sum(dim=1).tolist()):
        if masks != 1:
            raise ValueError(
                f"{text!r} holds {masks} {tokenizer.mask_token} tokens within {max_length} tokens; "
                f"word_ranks reads exactly one per text."
            )
    probabilities = logits.softmax(dim=-1)  # (n_texts, vocab): one [MASK] per text, so one row per text
    wanted = probabilities[torch.arange(len(texts)), ids.to(probabilities.device)]  # (n_texts,)
    ranks = (probabilities > wanted[:, None]).sum(dim=-1) + 1  # tokens strictly likelier, plus one
    best = probabilities.max(dim=-1)  # .values and .indices: (n_texts,)
    tops = tokenizer.convert_ids_to_tokens(best.indices.tolist())
    return [
        WordRank(tokenizer.convert_ids_to_tokens(int(i)), int(r), float(p), top, float(q))
        for i, r, p, top, q in zip(ids, ranks, wanted, tops, best.values)
    ]
