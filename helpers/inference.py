"""Inference with a trained checkpoint: Next Sentence Prediction and fill-mask."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertForPreTraining, PreTrainedTokenizerBase

from helpers.pairs import IS_NEXT, IS_RANDOM, LABEL_NAMES


class InferenceError(ValueError):
    """Input the model cannot answer; the message is meant for the person who typed it."""


@dataclass
class NSPResult:
    """Both NSP logits, their softmax and the verdict. Index 0 = "B follows A", index 1 = "B is random"."""

    logits: tuple[float, float]
    probabilities: dict[str, float]
    label: int
    verdict: str
    truncated: bool = False


class Predictor:
    """One loaded model and tokenizer in ``eval()`` mode; every call runs without gradients."""

    def __init__(self, model: BertForPreTraining, tokenizer: PreTrainedTokenizerBase, max_length: int | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        limit = model.config.max_position_embeddings
        self.max_length = min(max_length or limit, limit)
        self.device = next(model.parameters()).device

    @classmethod
    def from_checkpoint(cls, folder: str | os.PathLike, max_length: int | None = None) -> "Predictor":
        folder = Path(folder)
        model = BertForPreTraining.from_pretrained(folder, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        return cls(model, tokenizer, max_length)

    def _encode(self, first: Sequence[str], second: Sequence[str] | None = None):
        enc = self.tokenizer(list(first), list(second) if second is not None else None, truncation="longest_first",
                             max_length=self.max_length, padding=True, return_tensors="pt",
                             return_overflowing_tokens=False, return_length=False)
        full = self.tokenizer(list(first), list(second) if second is not None else None, truncation=False,
                              padding=False)["input_ids"]
        truncated = [len(ids) > self.max_length for ids in full]
        return {k: v.to(self.device) for k, v in enc.items()}, truncated

    @torch.no_grad()
    def predict_nsp_batch(self, pairs: Sequence[tuple[str, str]]) -> list[NSPResult]:
        """NSP for several (A, B) pairs in one forward pass."""
        for a, b in pairs:
            if not a.strip() or not b.strip():
                raise InferenceError("Both sentences need some text.")
        enc, truncated = self._encode([a for a, _ in pairs], [b for _, b in pairs])
        logits = self.model(**enc).seq_relationship_logits.float()  # (n_pairs, 2)
        probs = logits.softmax(dim=-1)
        results = []
        for row, p, cut in zip(logits.tolist(), probs.tolist(), truncated):
            label = int(torch.tensor(row).argmax())
            results.append(NSPResult(logits=(row[0], row[1]),
                                     probabilities={LABEL_NAMES[IS_NEXT]: p[IS_NEXT], LABEL_NAMES[IS_RANDOM]: p[IS_RANDOM]},
                                     label=label, verdict=LABEL_NAMES[label], truncated=cut))
        return results

    def predict_nsp(self, sentence_a: str, sentence_b: str) -> NSPResult:
        """Does ``sentence_b`` follow ``sentence_a``?"""
        return self.predict_nsp_batch([(sentence_a, sentence_b)])[0]

    @torch.no_grad()
    def fill_mask(self, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """For every [MASK] in ``text``, the ``top_k`` tokens and their probabilities, all masks in one pass."""
        mask = self.tokenizer.mask_token
        if not text.strip():
            raise InferenceError("Type a sentence with at least one [MASK] in it.")
        if mask not in text:
            raise InferenceError(f"The text has no {mask}; put {mask} where a word should be guessed.")
        enc, truncated = self._encode([text])
        input_ids = enc["input_ids"][0]  # (seq_len,)
        positions = (input_ids == self.tokenizer.mask_token_id).nonzero().squeeze(1)  # (n_masks,)
        if positions.numel() == 0:
            raise InferenceError(f"Every {mask} lies past the first {self.max_length} tokens; move one earlier.")
        logits = self.model(**enc).prediction_logits[0, positions].float()  # (n_masks, vocab)
        probs = logits.softmax(dim=-1)
        k = max(1, min(int(top_k), probs.shape[-1]))
        top = probs.topk(k, dim=-1)
        return [[(self.tokenizer.convert_ids_to_tokens(int(i)), float(p)) for p, i in zip(vals, ids)]
                for vals, ids in zip(top.values.tolist(), top.indices.tolist())]
