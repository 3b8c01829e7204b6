"""Plumbing around helpers.inference for a served model: safe loading, input hygiene, notes, one call at a time.

``Predictor`` is what the demo, the notebooks and helpers.record use; the training loop reads its model with
helpers.inference directly. Its answers are the forward passes of helpers.inference; everything here is about
the input and the messages: a checkpoint folder is checked before anything loads, pasted text is cleaned and
cut to size, a bad item in a batch can come back as an ``InferenceError`` in its slot, and every change made to
the input is reported as a one-sentence note.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoTokenizer, BatchEncoding, BertForPreTraining, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from helpers.checkpoint import CheckpointError, is_checkpoint, read_json, verify_files
from helpers.config import Config
from helpers.inference import encode, mask_logits, nsp_logits, top_k_tokens
from helpers.memory import MEMORY_FILE, ContextCounts, MemoryFileError, mix
from helpers.pairs import IS_NEXT, IS_RANDOM, LABEL_NAMES

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
    """The top-k tokens for every [MASK] the model read, plus what happened to the text on the way in.

    With a memory (the checkpoint's context-count table), the table's own top-k and the mix's come beside the
    model's, one list per [MASK] each; without one they are None.
    """

    predictions: list[list[tuple[str, float]]]  # one list per [MASK], each sorted by probability, descending
    n_masks: int  # [MASK]s in the text, including any cut off by truncation
    truncated: bool = False
    notes: list[str] = field(default_factory=list)
    memory_predictions: list[list[tuple[str, float]]] | None = None  # the table alone
    mixed_predictions: list[list[tuple[str, float]]] | None = None  # the model with the memory beside it


def first_line(err: BaseException) -> str:
    """The first line of an error's message, short enough for a one-sentence report."""
    lines = str(err).strip().splitlines()
    # Servers append advice for their own settings ("... You can specify a different port by ..."): not ours.
    return (lines[0] if lines else type(err).__name__)[:160].split(". You can")[0]


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


def check_checkpoint_folder(folder: str | os.PathLike) -> Path:
    """Raise CheckpointError with one sentence unless ``folder`` looks like a BERT pretraining checkpoint."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise CheckpointError(
            f"The checkpoint folder {folder} does not exist; pass the folder of a trained run, or {_TRAIN_HINT}."
        )
    if not folder.is_dir():
        raise CheckpointError(
            f"{folder} is a file, not a checkpoint folder; pass the folder that holds "
            f"config.json and model.safetensors."
        )
    if not (folder / "config.json").is_file():
        raise CheckpointError(
            f"{folder} holds no config.json, so it is not a saved model; pass a folder written by "
            f"helpers.train or save_pretrained, or {_TRAIN_HINT}."
        )
    config = read_json(folder / "config.json")
    if config is None:
        raise CheckpointError(
            f"{folder / 'config.json'} is not valid JSON, so the checkpoint is damaged; "
            f"train it again or restore a copy."
        )
    _check_architecture(folder, config)
    if not ((folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()):
        pickled = any((folder / name).is_file() for name in ("pytorch_model.bin", "pytorch_model.bin.index.json"))
        why = (
            "holds only pickled weights (pytorch_model.bin), which are never loaded here"
            if pickled
            else "holds no model.safetensors"
        )
        raise CheckpointError(f"{folder} {why}; re-save the model with save_pretrained(safe_serialization=True).")
    if is_checkpoint(folder):  # one of ours: its files must match the checksums recorded at save time
        verify_files(folder, skip=(MEMORY_FILE,))  # a damaged memory leaves the model to serve alone
    # Without these, transformers 5 quietly builds an empty tokenizer that reads every word as [UNK].
    if not any((folder / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
        raise CheckpointError(
            f"{folder} holds no usable tokenizer (no tokenizer.json or vocab.txt); save the "
            f"tokenizer beside the model with tokenizer.save_pretrained."
        )
    return folder


def _check_architecture(folder: Path, config: dict) -> None:
    """Refuse a config.json that describes anything but a BERT with both pretraining heads."""
    model_type = config.get("model_type")
    if model_type != "bert":
        raise CheckpointError(
            f"{folder} holds a {model_type or 'model of unknown type'!s} model, not BERT; the demo "
            f"needs a BERT with a next-sentence-prediction head (BertForPreTraining)."
        )
    architectures = config.get("architectures") or []
    if architectures and not set(architectures) & set(PRETRAINING_ARCHITECTURES):
        head = "masked-word (MLM) head" if "NextSentence" in architectures[0] else "next-sentence-prediction head"
        raise CheckpointError(
            f"{folder} holds a {architectures[0]}, which has no {head}; pass a BertForPreTraining "
            f"checkpoint such as one helpers.train saves."
        )


def load_pretraining(folder: Path) -> tuple[BertForPreTraining, PreTrainedTokenizerBase]:
    """Model and tokenizer of a checked folder (safetensors only, local files only); CheckpointError if unusable."""
    with _QuietLoading():
        try:
            # local_files_only: a folder is read from disk and nothing else; no remote code is ever run.
            model, info = BertForPreTraining.from_pretrained(
                folder, use_safetensors=True, local_files_only=True, output_loading_info=True
            )
        except Exception as err:  # noqa: BLE001 - safetensors, OSError, ValueError: all mean "unreadable"
            raise CheckpointError(
                f"The weights in {folder} could not be read ({first_line(err)}); the file is "
                f"damaged or cut short, so train again or restore a copy."
            ) from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except Exception as err:  # noqa: BLE001
            raise CheckpointError(
                f"{folder} holds no usable tokenizer ({first_line(err)}); save the tokenizer "
                f"beside the model with tokenizer.save_pretrained."
            ) from None
    missing = sorted(info.get("missing_keys") or [])
    if any(key.startswith("cls.seq_relationship") for key in missing):
        raise CheckpointError(
            f"{folder} has no next-sentence-prediction head (cls.seq_relationship); pass a "
            f"BertForPreTraining checkpoint such as one helpers.train saves."
        )
    if missing or info.get("mismatched_keys"):
        what = missing[0] if missing else sorted(info["mismatched_keys"])[0][0]
        raise CheckpointError(
            f"The weights in {folder} do not fit a BertForPreTraining ({what} is missing or "
            f"has the wrong shape); pass a complete BertForPreTraining checkpoint."
        )
    if tokenizer.mask_token is None or tokenizer.cls_token is None or tokenizer.sep_token is None:
        raise CheckpointError(
            f"The tokenizer in {folder} lacks [MASK], [CLS] or [SEP]; use the BERT tokenizer "
            f"the model was trained with."
        )
    if len(tokenizer) > model.config.vocab_size:
        raise CheckpointError(
            f"The tokenizer in {folder} has {len(tokenizer)} tokens but the model knows "
            f"{model.config.vocab_size}; use the tokenizer the model was trained with."
        )
    return model, tokenizer


# ----- input hygiene -----


def strip_special_tokens(text: str, tokenizer: PreTrainedTokenizerBase) -> tuple[str, list[str]]:
    """``text`` without typed [CLS], [SEP] or [PAD] (the tokenizer places its own), and which of them were there."""
    removed = [
        token for token in (tokenizer.cls_token, tokenizer.sep_token, tokenizer.pad_token) if token and token in text
    ]
    for token in removed:
        text = text.replace(token, " ")
    return text, removed


def clean_text(text, what: str, tokenizer: PreTrainedTokenizerBase) -> tuple[str, list[str], bool]:
    """Check one piece of user text, cut it to MAX_CHARS, drop typed special tokens; return text, notes, cut."""
    name = what[0].upper() + what[1:]  # "the text" starts a sentence as "The text"
    if not isinstance(text, str):
        raise InferenceError(f"{name} must be text, not {type(text).__name__}.")
    notes, cut = [], len(text) > MAX_CHARS
    if cut:
        text = text[:MAX_CHARS]
        notes.append(f"{name} was cut to its first {MAX_CHARS:,} characters before reading.")
    text, removed = strip_special_tokens(text, tokenizer)
    if removed:
        notes.append(
            f"{', '.join(removed)} typed in {what} {'was' if len(removed) == 1 else 'were'} left out: "
            f"the model places its own special tokens."
        )
    if not text.strip():
        raise InferenceError(f"{name} is empty; type some words into it.")
    return text, notes, cut


def unknown_note(
    tokenizer: PreTrainedTokenizerBase, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> list[str]:
    """A note when the tokenizer read part of one row (seq_len,) as its unknown token, else nothing."""
    unk = tokenizer.unk_token_id
    count = int(((input_ids == unk) & attention_mask.bool()).sum()) if unk is not None else 0
    if not count:
        return []
    return [
        f"{count} piece{'s' if count > 1 else ''} of the text {'are' if count > 1 else 'is'} unknown to this "
        f"tokenizer (letters or symbols it never saw, such as emoji) and {'were' if count > 1 else 'was'} "
        f"read as {tokenizer.unk_token}."
    ]


def clean_batch(items: Sequence, clean_one: Callable, errors: str):
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


def check_masks(text: str, mask: str) -> None:
    """Raise InferenceError unless ``text`` holds ``mask`` exactly as the tokenizer writes it."""
    if mask in text:
        return
    if re.search(r"\[\s*mask\s*\]|<mask>", text, flags=re.IGNORECASE):
        raise InferenceError(f"Write the mask exactly as {mask}, in capitals with square brackets.")
    raise InferenceError(f"The text has no {mask}; put {mask} where a word should be guessed.")


# ----- the predictor -----


def load_memory(folder: Path, tokenizer: PreTrainedTokenizerBase) -> tuple[ContextCounts | None, str | None]:
    """A checkpoint's context-count table, or None and one sentence why not: the model then serves alone."""
    recorded = (read_json(folder / "metrics.json") or {}).get("memory") or {}
    try:
        memory = ContextCounts.load(folder / MEMORY_FILE, tokenizer, recorded.get("text_fingerprint"))
    except MemoryFileError as err:
        return None, f"{str(err).split('; ')[0]}, so fill-mask shows the model alone."
    return memory, None


class Predictor:
    """One loaded model and tokenizer in ``eval()`` mode behind input checks, notes and a lock.

    With a ``memory`` (a ContextCounts table), fill-mask also gives the table's answer and the two mixed, the model
    weighing ``memory_strength`` against what the table matched (helpers.memory.mix).
    """

    def __init__(
        self,
        model: BertForPreTraining,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int | None = None,
        memory: ContextCounts | None = None,
        memory_strength: float = Config.memory_strength,
        memory_note: str | None = None,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.memory, self.memory_strength = memory, memory_strength
        self.memory_note = memory_note  # why there is no memory, in one sentence
        limit = model.config.max_position_embeddings
        self.max_length = min(max_length or limit, limit)
        self.device = next(model.parameters()).device
        # A fast tokenizer changes its own truncation/padding state on every call, so calls from several
        # threads (a web server's workers) must not interleave; one forward pass at a time also keeps
        # the CPU threads of torch from fighting each other.
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(cls, folder: str | os.PathLike, max_length: int | None = None) -> Predictor:
        """Load a checked BertForPreTraining folder; ``max_length`` defaults to profile.json's, else the model's."""
        folder = check_checkpoint_folder(folder)
        model, tokenizer = load_pretraining(folder)
        profile = read_json(folder / "profile.json") or {}
        if max_length is None:
            max_length = profile.get("max_length") if isinstance(profile.get("max_length"), int) else None
        memory, note = load_memory(folder, tokenizer)
        strength = profile.get("memory_strength")
        strength = strength if isinstance(strength, int | float) and strength > 0 else Config.memory_strength
        return cls(model, tokenizer, max_length, memory, strength, note)

    def _encode(self, first: Sequence[str], second: Sequence[str] | None = None) -> tuple[BatchEncoding, list[bool]]:
        """The batch for the model and, per row, whether truncation to ``max_length`` cut anything."""
        full = self.tokenizer(
            list(first), None if second is None else list(second), truncation=False, padding=False, verbose=False
        )["input_ids"]
        batch = encode(self.tokenizer, first, second, self.max_length).to(self.device)
        return batch, [len(ids) > self.max_length for ids in full]

    def _row_notes(self, batch: BatchEncoding, row: int, notes: list[str], cut_note: str | None) -> list[str]:
        """The cleaning notes of one row, plus one on unknown pieces and ``cut_note`` if truncation cut the row."""
        return (
            notes
            + unknown_note(self.tokenizer, batch["input_ids"][row], batch["attention_mask"][row])
            + ([cut_note] if cut_note else [])
        )

    # ----- Next Sentence Prediction -----

    def predict_nsp_batch(self, pairs: Sequence[tuple[str, str]], errors: str = "raise") -> list[NSPResult]:
        """NSP for several (A, B) pairs in one pass; ``errors="return"`` puts an InferenceError in a bad pair's slot."""

        def clean_pair(pair: tuple[str, str]):
            a, notes_a, cut_a = clean_text(pair[0], "sentence A", self.tokenizer)
            b, notes_b, cut_b = clean_text(pair[1], "sentence B", self.tokenizer)
            return (a, b), notes_a + notes_b, cut_a or cut_b

        results, good, cleaned, notes, cuts = clean_batch(pairs, clean_pair, errors)
        if not good:
            return results
        with self._lock:
            batch, truncated = self._encode([a for a, _ in cleaned], [b for _, b in cleaned])
            logits = nsp_logits(self.model, batch)  # (n_pairs, 2)
        probs = logits.softmax(dim=-1).tolist()
        cut = (
            f"The pair is longer than the {self.max_length} tokens this model reads, so the end of the longer "
            f"sentence was cut off."
        )
        for row, index in enumerate(good):
            label = int(logits[row].argmax())
            results[index] = NSPResult(
                logits=(float(logits[row, 0]), float(logits[row, 1])),
                probabilities={
                    LABEL_NAMES[IS_NEXT]: probs[row][IS_NEXT],
                    LABEL_NAMES[IS_RANDOM]: probs[row][IS_RANDOM],
                },
                label=label,
                verdict=LABEL_NAMES[label],
                truncated=truncated[row] or cuts[row],
                notes=self._row_notes(batch, row, notes[row], cut if truncated[row] else None),
            )
        return results

    def predict_nsp(self, sentence_a: str, sentence_b: str) -> NSPResult:
        """Does ``sentence_b`` follow ``sentence_a``?"""
        return self.predict_nsp_batch([(sentence_a, sentence_b)])[0]

    # ----- fill-mask -----

    def fill_mask_batch(self, texts: Sequence[str], top_k: int = 5, errors: str = "raise") -> list[FillMaskResult]:
        """Per text, the ``top_k`` tokens for every [MASK], all texts in one pass; ``errors="return"`` as for NSP."""
        try:
            k = max(1, min(int(top_k), self.model.config.vocab_size))
        except (TypeError, ValueError):
            raise InferenceError(f"top_k must be a whole number, not {top_k!r}.") from None

        def clean_one(text: str):
            text, text_notes, cut = clean_text(text, "the text", self.tokenizer)
            check_masks(text, self.tokenizer.mask_token)
            return text, text_notes, cut

        results, good, cleaned, notes, cuts = clean_batch(texts, clean_one, errors)
        if not good:
            return results
        with self._lock:
            batch, truncated = self._encode(cleaned)
            logits, selected = mask_logits(self.model, batch, self.tokenizer.mask_token_id)  # (n_masks, vocab)
        answers = self._answers(logits, batch["input_ids"], selected, k)  # per answer, the masks of all texts
        cut = f"The text is longer than the {self.max_length} tokens this model reads, so its end was cut off."
        start = 0
        for row, (index, n_read) in enumerate(zip(good, selected.sum(dim=1).tolist())):  # masks read, per text
            row_notes = self._row_notes(batch, row, notes[row], cut if truncated[row] else None)
            mine = {name: None if each is None else each[start : start + n_read] for name, each in answers.items()}
            results[index] = self._fill_result(cleaned[row], mine, row_notes, truncated[row] or cuts[row], errors)
            start += n_read
        return results

    def _answers(
        self, logits: torch.Tensor, input_ids: torch.Tensor, selected: torch.Tensor, k: int
    ) -> dict[str, list | None]:
        """The model's top-k at each [MASK], and with a memory the table's and the mix's (their rows sum to 1)."""
        model = top_k_tokens(self.tokenizer, logits, k)
        if self.memory is None:
            return {"model": model, "memory": None, "mixed": None}
        table = self.memory.probabilities(input_ids, selected)  # .probs (n_masks, vocab), in the same order
        mixed = mix(logits.softmax(-1), table, strength=self.memory_strength)  # (n_masks, vocab)
        # top_k_tokens takes logits: the log of a distribution gives the distribution back through its softmax.
        memory, mixed = (top_k_tokens(self.tokenizer, probs.log(), k) for probs in (table.probs, mixed))
        return {"model": model, "memory": memory, "mixed": mixed}

    def _fill_result(
        self, text: str, answers: dict[str, list | None], notes: list[str], truncated: bool, errors: str
    ) -> FillMaskResult | InferenceError:
        """One text's result, with a note on [MASK]s past the tokens the model reads."""
        predictions = answers["model"]
        mask, n_typed = self.tokenizer.mask_token, text.count(self.tokenizer.mask_token)
        if not predictions:
            err = InferenceError(f"Every {mask} lies past the first {self.max_length} tokens; move one earlier.")
            if errors == "raise":
                raise err
            return err
        if len(predictions) < n_typed:
            notes.append(
                f"{n_typed - len(predictions)} of the {n_typed} {mask}s lie past the first "
                f"{self.max_length} tokens and were not filled."
            )
        return FillMaskResult(
            predictions,
            n_typed,
            truncated,
            notes,
            memory_predictions=answers["memory"],
            mixed_predictions=answers["mixed"],
        )

    def fill_mask_result(self, text: str, top_k: int = 5) -> FillMaskResult:
        """``fill_mask`` with the notes on truncation and cleaned input."""
        return self.fill_mask_batch([text], top_k)[0]

    def fill_mask(self, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """For every [MASK] in ``text``, the ``top_k`` tokens and their probabilities, all masks in one pass."""
        return self.fill_mask_result(text, top_k).predictions
