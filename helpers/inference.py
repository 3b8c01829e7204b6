"""Inference with a trained checkpoint: Next Sentence Prediction and fill-mask."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertForPreTraining, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from helpers.checkpoint import CheckpointError, is_checkpoint, verify_files
from helpers.pairs import IS_NEXT, IS_RANDOM, LABEL_NAMES
from helpers.tokens import clip_to_tokens

# Longer text is cut before tokenizing: no model here reads more than 512 tokens, and a pasted book
# should not cost seconds of tokenizer time on a shared server.
MAX_CHARS = 20_000
# Architectures whose checkpoints carry both heads that BertForPreTraining needs.
PRETRAINING_ARCHITECTURES = ("BertForPreTraining",)
_TRAIN_HINT = "train one with `python -m helpers.train --profile tiny --output DIR`"


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
    notes: list[str] = field(default_factory=list)  # one sentence each: what was changed or cut, and why


@dataclass
class FillMaskResult:
    """The top-k tokens for every [MASK] the model read, plus what happened to the text on the way in."""

    predictions: list[list[tuple[str, float]]]  # one list per [MASK], each sorted by probability, descending
    n_masks: int  # [MASK]s in the text, including any cut off by truncation
    truncated: bool = False
    notes: list[str] = field(default_factory=list)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:160]


class _QuietLoading:
    """Silence transformers' load report and progress bars while a checkpoint loads, then restore them."""

    def __enter__(self):
        self.verbosity = hf_logging.get_verbosity()
        self.bars = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()

    def __exit__(self, *exc):
        hf_logging.set_verbosity(self.verbosity)
        if self.bars:
            hf_logging.enable_progress_bar()


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_checkpoint_folder(folder: str | os.PathLike) -> Path:
    """Raise CheckpointError with one sentence unless ``folder`` looks like a BERT pretraining checkpoint."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise CheckpointError(f"The checkpoint folder {folder} does not exist; pass the folder of a trained run, "
                              f"or {_TRAIN_HINT}.")
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is a file, not a checkpoint folder; pass the folder that holds "
                              f"config.json and model.safetensors.")
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder} holds no config.json, so it is not a saved model; pass a folder written by "
                              f"helpers.train or save_pretrained, or {_TRAIN_HINT}.")
    config = read_json(folder / "config.json")
    if config is None:
        raise CheckpointError(f"{folder / 'config.json'} is not valid JSON, so the checkpoint is damaged; "
                              f"train it again or restore a copy.")
    model_type = config.get("model_type")
    if model_type != "bert":
        raise CheckpointError(f"{folder} holds a {model_type or 'model of unknown type'!s} model, not BERT; the demo "
                              f"needs a BERT with a next-sentence-prediction head (BertForPreTraining).")
    architectures = config.get("architectures") or []
    if architectures and not set(architectures) & set(PRETRAINING_ARCHITECTURES):
        head = ("masked-word (MLM) head" if "NextSentence" in architectures[0]
                else "next-sentence-prediction head")
        raise CheckpointError(f"{folder} holds a {architectures[0]}, which has no {head}; pass a BertForPreTraining "
                              f"checkpoint such as one helpers.train saves.")
    if not ((folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()):
        pickled = any((folder / name).is_file() for name in ("pytorch_model.bin", "pytorch_model.bin.index.json"))
        why = ("holds only pickled weights (pytorch_model.bin), which are never loaded here" if pickled
               else "holds no model.safetensors")
        raise CheckpointError(f"{folder} {why}; re-save the model with save_pretrained(safe_serialization=True).")
    if is_checkpoint(folder):  # one of ours: its files must match the checksums recorded at save time
        verify_files(folder)
    # Without these, transformers 5 quietly builds an empty tokenizer that reads every word as [UNK].
    if not any((folder / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
        raise CheckpointError(f"{folder} holds no usable tokenizer (no tokenizer.json or vocab.txt); save the "
                              f"tokenizer beside the model with tokenizer.save_pretrained.")
    return folder


class Predictor:
    """One loaded model and tokenizer in ``eval()`` mode; every call runs without gradients."""

    def __init__(self, model: BertForPreTraining, tokenizer: PreTrainedTokenizerBase, max_length: int | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        limit = model.config.max_position_embeddings
        self.max_length = min(max_length or limit, limit)
        self.device = next(model.parameters()).device
        # A fast tokenizer changes its own truncation/padding state on every call, so calls from several
        # threads (a web server's workers) must not interleave; one forward pass at a time also keeps
        # the CPU threads of torch from fighting each other.
        self._lock = threading.Lock()
        # Special tokens a user may type but must not reach the model as such: the tokenizer adds its own.
        self._stray = [t for t in (tokenizer.cls_token, tokenizer.sep_token, tokenizer.pad_token) if t]

    @classmethod
    def from_checkpoint(cls, folder: str | os.PathLike, max_length: int | None = None) -> "Predictor":
        """Load a BertForPreTraining checkpoint and its tokenizer from a local folder (safetensors only).

        ``max_length`` defaults to the profile's (``profile.json``), else the model's position limit.
        Raises ``CheckpointError`` with one sentence when the folder is missing, not a BERT with both
        pretraining heads, or damaged.
        """
        folder = check_checkpoint_folder(folder)
        with _QuietLoading():
            try:
                # local_files_only: a folder is read from disk and nothing else; no remote code is ever run.
                model, info = BertForPreTraining.from_pretrained(folder, use_safetensors=True, local_files_only=True,
                                                                 output_loading_info=True)
            except Exception as err:  # noqa: BLE001 - safetensors, OSError, ValueError: all mean "unreadable"
                raise CheckpointError(f"The weights in {folder} could not be read ({_first_line(err)}); the file is "
                                      f"damaged or cut short, so train again or restore a copy.") from None
            try:
                tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            except Exception as err:  # noqa: BLE001
                raise CheckpointError(f"{folder} holds no usable tokenizer ({_first_line(err)}); save the tokenizer "
                                      f"beside the model with tokenizer.save_pretrained.") from None
        missing = sorted(info.get("missing_keys") or [])
        if any(key.startswith("cls.seq_relationship") for key in missing):
            raise CheckpointError(f"{folder} has no next-sentence-prediction head (cls.seq_relationship); pass a "
                                  f"BertForPreTraining checkpoint such as one helpers.train saves.")
        if missing or info.get("mismatched_keys"):
            what = missing[0] if missing else sorted(info["mismatched_keys"])[0][0]
            raise CheckpointError(f"The weights in {folder} do not fit a BertForPreTraining ({what} is missing or "
                                  f"has the wrong shape); pass a complete BertForPreTraining checkpoint.")
        if tokenizer.mask_token is None or tokenizer.cls_token is None or tokenizer.sep_token is None:
            raise CheckpointError(f"The tokenizer in {folder} lacks [MASK], [CLS] or [SEP]; use the BERT tokenizer "
                                  f"the model was trained with.")
        if len(tokenizer) > model.config.vocab_size:
            raise CheckpointError(f"The tokenizer in {folder} has {len(tokenizer)} tokens but the model knows "
                                  f"{model.config.vocab_size}; use the tokenizer the model was trained with.")
        if max_length is None:
            profile = read_json(folder / "profile.json") or {}
            max_length = profile.get("max_length") if isinstance(profile.get("max_length"), int) else None
        return cls(model, tokenizer, max_length)

    # ----- input hygiene -----

    def _clean(self, text, what: str) -> tuple[str, list[str], bool]:
        """Check one piece of user text; drop typed [CLS]/[SEP]/[PAD]; return the text, notes and whether it was cut."""
        if not isinstance(text, str):
            raise InferenceError(f"{what[0].upper()}{what[1:]} must be text, not {type(text).__name__}.")
        notes, cut = [], len(text) > MAX_CHARS
        if cut:
            text = text[:MAX_CHARS]
            notes.append(f"{what[0].upper()}{what[1:]} was cut to its first {MAX_CHARS:,} characters before reading.")
        removed = [token for token in self._stray if token in text]
        for token in removed:
            text = text.replace(token, " ")
        if removed:
            notes.append(f"{', '.join(removed)} typed in {what} {'was' if len(removed) == 1 else 'were'} left out: "
                         f"the model places its own special tokens.")
        if not text.strip():
            raise InferenceError(f"{what[0].upper()}{what[1:]} is empty; type some words into it.")
        return text, notes, cut

    def _encode(self, first: Sequence[str], second: Sequence[str] | None = None):
        """Batch encoding (truncated, padded) and, per row, whether truncation cut anything."""
        first, second = list(first), (list(second) if second is not None else None)
        full = self.tokenizer(first, second, truncation=False, padding=False, verbose=False)["input_ids"]
        truncated = [len(ids) > self.max_length for ids in full]
        if second is not None:  # see clip_to_tokens: long pairs would otherwise cost quadratic memory
            first = clip_to_tokens(self.tokenizer, first, self.max_length)
            second = clip_to_tokens(self.tokenizer, second, self.max_length)
        enc = self.tokenizer(first, second, truncation="longest_first", max_length=self.max_length, padding=True,
                             return_tensors="pt", return_token_type_ids=True, return_attention_mask=True)
        return {k: v.to(self.device) for k, v in enc.items()}, truncated

    def _unknown_note(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[str]:
        unk = self.tokenizer.unk_token_id
        if unk is None:
            return []
        count = int(((input_ids == unk) & attention_mask.bool()).sum())
        if not count:
            return []
        return [f"{count} piece{'s' if count > 1 else ''} of the text {'are' if count > 1 else 'is'} unknown to this "
                f"tokenizer (letters or symbols it never saw, such as emoji) and {'were' if count > 1 else 'was'} "
                f"read as {self.tokenizer.unk_token}."]

    @staticmethod
    def _clean_batch(items: Sequence, clean_one, errors: str):
        """Clean every item; a bad one raises, or with ``errors="return"`` leaves its InferenceError in its slot.

        Returns the results list (errors filled in), the indices of the good items, and their cleaned
        values, notes and truncation flags, in the same order.
        """
        results: list = [None] * len(items)
        good, cleaned, notes, cuts = [], [], [], []
        for index, item in enumerate(items):
            try:
                value, item_notes, cut = clean_one(item)
            except InferenceError as err:
                if errors == "raise":
                    raise
                results[index] = err
                continue
            good.append(index)
            cleaned.append(value)
            notes.append(item_notes)
            cuts.append(cut)
        return results, good, cleaned, notes, cuts

    # ----- Next Sentence Prediction -----

    @torch.no_grad()
    def predict_nsp_batch(self, pairs: Sequence[tuple[str, str]], errors: str = "raise") -> list[NSPResult]:
        """NSP for several (A, B) pairs in one forward pass.

        ``errors="return"`` puts an ``InferenceError`` in the slot of a bad pair instead of raising.
        """
        def clean_pair(pair: tuple[str, str]):
            a, notes_a, cut_a = self._clean(pair[0], "sentence A")
            b, notes_b, cut_b = self._clean(pair[1], "sentence B")
            return (a, b), notes_a + notes_b, cut_a or cut_b

        results, good, cleaned, notes, cuts = self._clean_batch(pairs, clean_pair, errors)
        firsts, seconds = [a for a, _ in cleaned], [b for _, b in cleaned]
        if good:
            with self._lock:
                enc, truncated = self._encode(firsts, seconds)
                # seq_relationship_logits: (n_pairs, 2), index 0 = "B follows A", index 1 = "B is random"
                # Only the NSP head: the full forward would also build (n_pairs, seq_len, vocab) MLM logits.
                pooled = self.model.bert(**enc, return_dict=False)[1]  # (n_pairs, hidden), the [CLS] summary
                logits = self.model.cls.seq_relationship(pooled).float()
            probs = logits.softmax(dim=-1)
            for row, index in enumerate(good):
                label = int(logits[row].argmax())
                p = probs[row].tolist()
                row_notes = notes[row] + self._unknown_note(enc["input_ids"][row], enc["attention_mask"][row])
                if truncated[row]:
                    row_notes.append(f"The pair is longer than the {self.max_length} tokens this model reads, so the "
                                     f"end of the longer sentence was cut off.")
                results[index] = NSPResult(logits=(float(logits[row, 0]), float(logits[row, 1])),
                                           probabilities={LABEL_NAMES[IS_NEXT]: p[IS_NEXT],
                                                          LABEL_NAMES[IS_RANDOM]: p[IS_RANDOM]},
                                           label=label, verdict=LABEL_NAMES[label], truncated=truncated[row] or cuts[row],
                                           notes=row_notes)
        return results  # type: ignore[return-value]

    def predict_nsp(self, sentence_a: str, sentence_b: str) -> NSPResult:
        """Does ``sentence_b`` follow ``sentence_a``?"""
        return self.predict_nsp_batch([(sentence_a, sentence_b)])[0]

    # ----- fill-mask -----

    def _check_masks(self, text: str) -> None:
        mask = self.tokenizer.mask_token
        if mask in text:
            return
        if re.search(r"\[\s*mask\s*\]|<mask>", text, flags=re.IGNORECASE):
            raise InferenceError(f"Write the mask exactly as {mask}, in capitals with square brackets.")
        raise InferenceError(f"The text has no {mask}; put {mask} where a word should be guessed.")

    @torch.no_grad()
    def fill_mask_batch(self, texts: Sequence[str], top_k: int = 5, errors: str = "raise") -> list[FillMaskResult]:
        """For every [MASK] in each text, the ``top_k`` tokens and their probabilities; all texts in one pass.

        ``errors="return"`` puts an ``InferenceError`` in the slot of a bad text instead of raising.
        """
        try:
            k = int(top_k)
        except (TypeError, ValueError):
            raise InferenceError(f"top_k must be a whole number, not {top_k!r}.") from None
        k = max(1, min(k, self.model.config.vocab_size))
        def clean_text(text: str):
            text, text_notes, cut = self._clean(text, "the text")
            self._check_masks(text)
            return text, text_notes, cut

        results, good, cleaned, notes, cuts = self._clean_batch(texts, clean_text, errors)
        if not good:
            return results  # type: ignore[return-value]
        mask_id = self.tokenizer.mask_token_id
        with self._lock:
            enc, truncated = self._encode(cleaned)
            # Only the [MASK] positions go through the MLM head (hidden -> vocab), as in training.
            selected = (enc["input_ids"] == mask_id) & enc["attention_mask"].bool()  # (batch, seq_len)
            sequence = self.model.bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                       token_type_ids=enc["token_type_ids"], return_dict=False)[0]  # (batch, seq, hidden)
            logits = self.model.cls.predictions(sequence[selected]).float()  # (n_masks_in_batch, vocab)
        top = logits.softmax(dim=-1).topk(k, dim=-1)
        tokens = [self.tokenizer.convert_ids_to_tokens(ids) for ids in top.indices.tolist()]
        values = top.values.tolist()
        per_row = selected.sum(dim=1).tolist()  # masks the model read, per text
        start = 0
        mask = self.tokenizer.mask_token
        for row, index in enumerate(good):
            n_read, n_typed = per_row[row], cleaned[row].count(mask)
            row_notes = notes[row] + self._unknown_note(enc["input_ids"][row], enc["attention_mask"][row])
            if truncated[row]:
                row_notes.append(f"The text is longer than the {self.max_length} tokens this model reads, so its end "
                                 f"was cut off.")
            if n_read == 0:
                err = InferenceError(f"Every {mask} lies past the first {self.max_length} tokens; move one earlier.")
                if errors == "raise":
                    raise err
                results[index] = err
                continue
            if n_read < n_typed:
                row_notes.append(f"{n_typed - n_read} of the {n_typed} {mask}s lie past the first {self.max_length} "
                                 f"tokens and were not filled.")
            predictions = [list(zip(tokens[i], values[i])) for i in range(start, start + n_read)]
            start += n_read
            results[index] = FillMaskResult(predictions=predictions, n_masks=n_typed, truncated=truncated[row] or cuts[row],
                                            notes=row_notes)
        return results  # type: ignore[return-value]

    def fill_mask_result(self, text: str, top_k: int = 5) -> FillMaskResult:
        """``fill_mask`` with the notes on truncation and cleaned input."""
        return self.fill_mask_batch([text], top_k)[0]

    def fill_mask(self, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """For every [MASK] in ``text``, the ``top_k`` tokens and their probabilities, all masks in one pass."""
        return self.fill_mask_result(text, top_k).predictions
