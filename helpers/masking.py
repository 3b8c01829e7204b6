"""Masked Language Modeling: one rule, read from the config, for what trains, what validates and what notebook 03 shows.

``masking_rule(cfg)`` is the one way into masking: the training batches, the fixed validation masks
(``masking_rule(cfg, validation=True)``) and the lesson all take their rule from it, and ``MaskingRule.collator``
applies it through transformers' ``DataCollatorForLanguageModeling``. ``select_positions`` and ``mask_tokens`` are the
same masking written out by hand, as notebook 03 builds it step by step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

from helpers.config import Config

# Labels at this value are skipped by torch's cross-entropy (its default ignore_index).
IGNORE_INDEX = -100


def special_positions(input_ids: torch.Tensor, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """True where ``input_ids`` holds one of the tokenizer's special tokens ([CLS], [SEP], [PAD], ...)."""
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), device=input_ids.device)
    return torch.isin(input_ids, special)


def select_positions(
    input_ids: torch.Tensor,
    tokenizer: PreTrainedTokenizerBase,
    mlm_probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Each non-special token is selected with probability ``mlm_probability``; (batch, seq_len) bool."""
    draws = torch.rand(input_ids.shape, generator=generator)  # (batch, seq_len) uniform in [0, 1)
    return (draws < mlm_probability) & ~special_positions(input_ids, tokenizer)


@dataclass(frozen=True)
class MaskingRule:
    """What MLM hides: the share of ordinary tokens selected, and what a selected token becomes."""

    mlm_probability: float = 0.15  # each ordinary token is selected with this probability
    mask_replace_prob: float = 0.8  # a selected token becomes [MASK] ...
    random_replace_prob: float = 0.1  # ... or a random ordinary token; the rest keep their own token, still scored

    def collator(
        self, tokenizer: PreTrainedTokenizerBase, seed: int | None = None, pad_to_multiple_of: int | None = None
    ) -> DataCollatorForLanguageModeling:
        """transformers' collator for this rule: pads each batch to its longest pair, draws fresh masks every call."""
        # tokenizer.pad carries token_type_ids and next_sentence_label through, so the batch feeds BertForPreTraining
        # as is. With a seed the masks come from the collator's own generator: they depend only on the seed and the
        # batches drawn so far (what makes a resumed run exact), and drawing them takes nothing from the global RNG.
        return DataCollatorForLanguageModeling(
            tokenizer,
            mlm=True,
            mlm_probability=self.mlm_probability,
            mask_replace_prob=self.mask_replace_prob,
            random_replace_prob=self.random_replace_prob,
            pad_to_multiple_of=pad_to_multiple_of,
            seed=seed,
        )


def masking_rule(cfg: Config, validation: bool = False) -> MaskingRule:
    """The config's rule for training batches, or (``validation``) for the fixed validation masks."""
    if validation:
        # What fill-mask sees, so what the accuracy at [MASK] counts: every selected token a [MASK].
        return MaskingRule(cfg.val_mlm_probability, mask_replace_prob=1.0, random_replace_prob=0.0)
    return MaskingRule(cfg.mlm_probability, cfg.mask_replace_prob, cfg.random_replace_prob)


def mask_tokens(
    input_ids: torch.Tensor,
    tokenizer: PreTrainedTokenizerBase,
    rule: MaskingRule = MaskingRule(),
    mode: str = "bert",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``rule`` by hand on a padded batch: ``(masked_input_ids, labels)``; ``input_ids`` is left untouched.

    ``mode="bert"`` is what the collator does: ``labels`` is -100 off the selected positions, and a selected token
    becomes [MASK], a random token or stays, with the rule's probabilities. ``mode="reference"`` is the tutorial's
    recipe: every selected token becomes [MASK] and ``labels`` is a plain clone of ``input_ids``, so the loss also
    covers unselected tokens and [PAD].
    """
    if mode not in ("reference", "bert"):
        raise ValueError(f"Unknown masking mode {mode!r}: use 'reference' or 'bert'.")
    labels = input_ids.clone()  # (batch, seq_len): what the model must predict
    masked = input_ids.clone()
    selected = select_positions(input_ids, tokenizer, rule.mlm_probability, generator)
    if mode == "reference":
        masked[selected] = tokenizer.mask_token_id
        return masked, labels
    labels[~selected] = IGNORE_INDEX
    # One draw per position decides its fate: [0, 0.8) -> [MASK], [0.8, 0.9) -> random, else unchanged.
    fate = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (fate < rule.mask_replace_prob)
    to_random = selected & (fate >= rule.mask_replace_prob) & (fate < rule.mask_replace_prob + rule.random_replace_prob)
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
