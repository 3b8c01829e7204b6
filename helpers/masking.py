"""Masked Language Modeling: a hand-written masking function to learn from, and the collator that trains."""

from __future__ import annotations

import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

# Labels at this value are skipped by torch's cross-entropy (its default ignore_index).
IGNORE_INDEX = -100


def special_positions(input_ids: torch.Tensor, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """True where ``input_ids`` holds one of the tokenizer's special tokens ([CLS], [SEP], [PAD], ...)."""
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), device=input_ids.device)
    return torch.isin(input_ids, special)


def select_positions(input_ids: torch.Tensor, tokenizer: PreTrainedTokenizerBase, mlm_probability: float = 0.15,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Each non-special token is selected with probability ``mlm_probability``; (batch, seq_len) bool."""
    draws = torch.rand(input_ids.shape, generator=generator)  # (batch, seq_len) uniform in [0, 1)
    return (draws < mlm_probability) & ~special_positions(input_ids, tokenizer)


def mask_tokens(input_ids: torch.Tensor, tokenizer: PreTrainedTokenizerBase, mode: str = "bert",
                mlm_probability: float = 0.15, mask_replace_prob: float = 0.8, random_replace_prob: float = 0.1,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(masked_input_ids, labels)``; ``input_ids`` is left untouched.

    ``mode="reference"`` is the tutorial's recipe: every selected token becomes [MASK] and ``labels``
    is a plain clone of ``input_ids``, so the loss also covers unselected tokens and [PAD].
    ``mode="bert"`` is BERT's: ``labels`` is -100 off the selected positions, and a selected token becomes
    [MASK] 80% of the time, a random token 10%, and stays unchanged 10% (the probabilities are arguments).
    """
    if mode not in ("reference", "bert"):
        raise ValueError(f"Unknown masking mode {mode!r}: use 'reference' or 'bert'.")
    labels = input_ids.clone()  # (batch, seq_len): what the model must predict
    masked = input_ids.clone()
    selected = select_positions(input_ids, tokenizer, mlm_probability, generator)
    if mode == "reference":
        masked[selected] = tokenizer.mask_token_id
        return masked, labels
    labels[~selected] = IGNORE_INDEX
    # One draw per position decides its fate: [0, 0.8) -> [MASK], [0.8, 0.9) -> random, else unchanged.
    fate = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (fate < mask_replace_prob)
    to_random = selected & (fate >= mask_replace_prob) & (fate < mask_replace_prob + random_replace_prob)
    masked[to_mask] = tokenizer.mask_token_id
    # Random replacements come from the ordinary vocabulary, never a special token.
    ordinary = torch.ones(len(tokenizer), dtype=torch.bool)
    ordinary[sorted(set(tokenizer.all_special_ids))] = False
    ordinary_ids = ordinary.nonzero().squeeze(1)  # (n_ordinary,)
    picks = torch.randint(len(ordinary_ids), input_ids.shape, generator=generator)
    masked[to_random] = ordinary_ids[picks][to_random]
    return masked, labels


def pad_loss_share(labels: torch.Tensor, attention_mask: torch.Tensor) -> float:
    """Share of loss positions that are padding when ``labels`` has no -100 (the reference recipe)."""
    counted = labels != IGNORE_INDEX  # (batch, seq_len) positions the loss averages over
    padding = counted & (attention_mask == 0)
    return padding.sum().item() / max(counted.sum().item(), 1)


def make_collator(tokenizer: PreTrainedTokenizerBase, mlm_probability: float = 0.15, mask_replace_prob: float = 0.8,
                  random_replace_prob: float = 0.1, pad_to_multiple_of: int | None = None,
                  seed: int | None = None) -> DataCollatorForLanguageModeling:
    """transformers' collator: pads each batch to its longest pair and draws fresh 80/10/10 masks every call.

    ``tokenizer.pad`` carries ``token_type_ids`` and ``next_sentence_label`` through, so the batch feeds
    ``BertForPreTraining`` as is. With ``seed`` the masks come from the collator's own generator, so they
    depend only on the seed and the batches drawn so far (what makes a resumed run exact).
    """
    return DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=mlm_probability,
                                           mask_replace_prob=mask_replace_prob,
                                           random_replace_prob=random_replace_prob,
                                           pad_to_multiple_of=pad_to_multiple_of, seed=seed)
