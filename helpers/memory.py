"""Context counting: a memory of which token the training paragraphs hold in the same context, up to two each side.

The model learns the book's grammar; the book's phrases and rare words it sees too seldom to learn. A table of counts
keeps them: for every [MASK] it looks up the tokens seen in the training paragraphs with the same neighbours, up to
``SIDE`` tokens on each side (eight context shapes: one token left, two left, one left and one right, ...), and turns
what it finds into a probability distribution over the vocabulary. Every context that matched speaks, weighed by how
often it was seen (``CountingRule``); ``mix`` then gives the model's distribution its share beside the table's.

    memory = ContextCounts.build(text.ids, tokenizer)         # TrainingText.ids: [CLS] paragraph [SEP], each
    out = memory.probabilities(batch["input_ids"])            # at every [MASK]: (n_masks, vocab), rows sum to 1
    probs = mix(model_logits.softmax(-1), out)                # the model's and the table's answers together
    memory.save(folder / MEMORY_FILE); ContextCounts.load(folder / MEMORY_FILE, tokenizer)

The file is safetensors (no pickle), version 1. Its tensors: ``keys`` (n_contexts,) int64, sorted, each context packed
into one number by ``context_key`` (its shape's index in SHAPES times vocab**(2 * SIDE), plus its tokens, left to
right, as digits in base vocab); ``starts`` (n_contexts + 1,) int64, where each context's entries begin; ``tokens``
and ``counts`` (n_entries,) int32, the tokens seen in that context and how often; ``unigram`` (vocab,) int64, every
token's count. Its string metadata: ``format``, ``version``, ``vocab_size``, ``side``, ``shapes`` (JSON), ``mask_id``,
``pad_id``, ``special_ids`` (JSON), ``vocab_fingerprint`` (sha256 of the tokenizer's vocabulary and special ids),
``text_fingerprint`` (sha256 of the training paragraphs' ids) and ``sha256`` (of the tensors and the rest of the
metadata, so that damage is found on load).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from helpers.masking import IGNORE_INDEX

FORMAT = "bert-meditations/context-counts"
VERSION = "1"
MEMORY_FILE = "context_counts.safetensors"  # its name inside a checkpoint folder
SIDE = 2  # context tokens on each side of the [MASK]
# (left, right) widths of every context shape: (0, 1) is "the token to the right", (2, 2) "two on each side".
SHAPES = tuple((left, right) for left in range(SIDE + 1) for right in range(SIDE + 1) if left + right)
OFFSETS = (*range(-SIDE, 0), *range(1, SIDE + 1))  # the neighbours a context may read: -2, -1, +1, +2
_OFFSETS = np.array(OFFSETS)[:, None]  # (2 * SIDE, 1)
WIDTHS = np.array([left + right for left, right in SHAPES])  # (n_shapes,)
UNSEEN = 0.01  # the pseudo-count every ordinary token gets in the unigram: a finite log-probability for all
# How much the model weighs in the mix against the table's matched contexts (each weighs up to 1, the unigram 0.05):
# chosen once on a development split of the training paragraphs (benchmarks/memory.py, docs/experiments.md: the
# memory). The default profile's --memory-strength is this number (tests/test_memory_serving.py).
MODEL_STRENGTH = 0.5


class MemoryFileError(ValueError):
    """The context-count file is missing, damaged, or was built for another tokenizer or text: serve the model alone."""


@dataclass(frozen=True)
class CountingRule:
    """How matched contexts become one distribution: every one interpolated, or only the widest (back-off)."""

    # The defaults were chosen on a development split of the training paragraphs, by the argmax's accuracy
    # (benchmarks/memory.py): 0.272 against 0.257 for the growth 3, confidence 1; backing off: 0.259.
    mode: str = "interpolate"  # or "backoff": only the contexts of the widest width that matched speak
    growth: float = 1.0  # a context's weight grows by this factor per token of width
    confidence: float = 4.0  # a context seen n times weighs n / (n + confidence): rarely seen contexts say less
    unigram: float = 0.05  # the weight of the unigram distribution, which always speaks

    def __post_init__(self):
        if self.mode not in ("interpolate", "backoff"):
            raise ValueError(f"CountingRule mode {self.mode!r} is unknown: use 'interpolate' or 'backoff'.")
        if self.growth <= 0 or self.confidence < 0 or self.unigram <= 0:
            raise ValueError("CountingRule needs growth > 0, confidence >= 0 and unigram > 0.")


class MemoryOutput(NamedTuple):
    """The table's answer at each [MASK], in row-major order of the batch (as ``sequence[selected]`` orders them)."""

    probs: torch.Tensor  # (n_masks, vocab) float32, every row sums to 1
    widest: torch.Tensor  # (n_masks,) int64: the widest context (tokens, both sides) that matched; 0 = none
    evidence: torch.Tensor  # (n_masks,) float64: the summed weight of the matched contexts and of the unigram


def vocab_fingerprint(tokenizer) -> str:
    """sha256 of the tokenizer's vocabulary (token -> id) and of the special ids the memory relies on."""
    items = {
        "vocab": sorted(tokenizer.get_vocab().items()),
        "mask": tokenizer.mask_token_id,
        "pad": tokenizer.pad_token_id,
        "special": sorted(set(tokenizer.all_special_ids)),
    }
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def text_fingerprint(ids: Sequence[Sequence[int]]) -> str:
    """sha256 of the paragraphs' token ids, paragraph by paragraph."""
    digest = hashlib.sha256()
    for paragraph in ids:
        digest.update(np.asarray(paragraph, dtype=np.int64).tobytes() + b"|")
    return digest.hexdigest()


def context_key(shape: tuple[int, int], tokens: Sequence[int], vocab: int) -> int:
    """The packed key of one context: ``tokens`` are its left then its right neighbours, in reading order."""
    left, right = shape
    if len(tokens) != left + right:
        raise ValueError(f"A context of shape {shape} has {left + right} tokens, not {len(tokens)}.")
    return SHAPES.index(shape) * vocab ** (2 * SIDE) + sum(token * vocab**power for power, token in enumerate(tokens))


def _packing(vocab: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per shape: each offset's place value in the key (n_shapes, 2 * SIDE), which offsets it reads, its base."""
    places = np.zeros((len(SHAPES), len(OFFSETS)), dtype=np.int64)
    for index, (left, right) in enumerate(SHAPES):
        for power, offset in enumerate([*range(-left, 0), *range(1, right + 1)]):
            places[index, OFFSETS.index(offset)] = vocab**power
    base = np.arange(len(SHAPES), dtype=np.int64) * vocab ** (2 * SIDE)  # (n_shapes,)
    return places, places > 0, base


def _neighbours(ids: np.ndarray, rows: np.ndarray, cols: np.ndarray, blocked: Sequence[int]) -> np.ndarray:
    """The token at each of OFFSETS from the positions (rows, cols), (2 * SIDE, n); -1 where none may be matched."""
    at = cols[None, :] + _OFFSETS  # (2 * SIDE, n)
    inside = (at >= 0) & (at < ids.shape[1])
    token = ids[rows[None, :], np.minimum(np.maximum(at, 0), ids.shape[1] - 1)]
    for never in blocked:  # [MASK] and [PAD]: a context holding one is not matched
        inside &= token != never
    return np.where(inside, token, -1)


def _keys(near: np.ndarray, packing: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every position's context of every shape packed into one int64 (n_shapes, n), and whether it may be matched."""
    places, reads, base = packing  # _packing(vocab)
    valid = ~(reads[:, :, None] & (near[None, :, :] < 0)).any(1)  # (n_shapes, n)
    return base[:, None] + places @ np.maximum(near, 0), valid


class ContextTable:
    """For each context seen (sorted keys): the tokens seen there and how often."""

    def __init__(self, keys: np.ndarray, starts: np.ndarray, tokens: np.ndarray, counts: np.ndarray):
        self.keys = keys  # (n_contexts,) int64, sorted, packed by context_key
        self.starts = starts  # (n_contexts + 1,) int64: context c's entries are tokens[starts[c]:starts[c + 1]]
        self.tokens, self.counts = tokens, counts  # (n_entries,) int32 each; every count > 0
        # (n_contexts,) int64: how often each context was seen, the sum of its counts
        self.totals = np.add.reduceat(counts.astype(np.int64), starts[:-1]) if len(keys) else np.zeros(0, np.int64)

    @classmethod
    def count(cls, keys: np.ndarray, tokens: np.ndarray) -> ContextTable:
        """The table of every (context key, token) occurrence, (m,) each."""
        order = np.lexsort((tokens, keys))  # by key, then token
        keys, tokens = keys[order], tokens[order]
        new = np.ones(len(keys), dtype=bool)  # where a new (key, token) run starts
        new[1:] = (keys[1:] != keys[:-1]) | (tokens[1:] != tokens[:-1])
        runs = np.flatnonzero(new)
        counts = np.diff(np.append(runs, len(keys)))  # (n_entries,)
        first = np.ones(len(runs), dtype=bool)  # where a new context starts among the entries
        first[1:] = keys[runs][1:] != keys[runs][:-1]
        starts = np.append(np.flatnonzero(first), len(runs)).astype(np.int64)
        return cls(keys[runs][first].astype(np.int64), starts, tokens[runs].astype(np.int32), counts.astype(np.int32))

    def find(self, keys: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Of the queried ``keys`` (q,), which matched (m,) and the index of each one's context (m,)."""
        where = np.minimum(np.searchsorted(self.keys, keys), max(len(self.keys) - 1, 0))  # (q,)
        hit = valid & (self.keys[where] == keys) if len(self.keys) else np.zeros(len(keys), dtype=bool)
        queries = np.flatnonzero(hit)
        return queries, where[queries]

    def entries(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every entry of ``contexts`` (m,): which of them it belongs to, its token and its count; each (n_entries,)."""
        lengths = self.starts[contexts + 1] - self.starts[contexts]  # (m,)
        owner = np.repeat(np.arange(len(contexts)), lengths)
        # The entry index: the context's start plus the entry's place inside its context.
        index = np.repeat(self.starts[contexts] - (np.cumsum(lengths) - lengths), lengths) + np.arange(owner.size)
        return owner, self.tokens[index], self.counts[index]


class ContextCounts:
    """The memory: counts of tokens by context, built from training paragraphs; see the module's docstring."""

    def __init__(self, table: ContextTable, unigram: np.ndarray, tokenizer_facts: dict, text_print: str):
        self.table, self.unigram = table, unigram  # unigram: (vocab,) int64
        self.vocab_size, self.mask_id, self.pad_id = (tokenizer_facts[k] for k in ("vocab_size", "mask_id", "pad_id"))
        self.special_ids, self.vocab_fingerprint = tokenizer_facts["special_ids"], tokenizer_facts["vocab_fingerprint"]
        self.text_fingerprint = text_print
        # The unigram with its floor, kept for every call: specials get nothing (never masked, never the answer).
        floor = np.full(self.vocab_size, UNSEEN)
        floor[self.special_ids] = 0.0
        self._base = self.unigram + floor  # (vocab,) float64
        self._base32 = torch.from_numpy(self._base.astype(np.float32))
        self._packing = _packing(self.vocab_size)

    @staticmethod
    def tokenizer_facts(tokenizer) -> dict:
        """What the table needs of a tokenizer: its size, [MASK] and [PAD] ids, special ids and fingerprint."""
        vocab = len(tokenizer)
        if len(SHAPES) * vocab ** (2 * SIDE) >= 2**63:
            raise ValueError(f"A vocabulary of {vocab} tokens is too large to pack {2 * SIDE} context tokens in int64.")
        return {
            "vocab_size": vocab,
            "mask_id": tokenizer.mask_token_id,
            "pad_id": tokenizer.pad_token_id,
            "special_ids": sorted(set(tokenizer.all_special_ids)),
            "vocab_fingerprint": vocab_fingerprint(tokenizer),
        }

    @classmethod
    def build(cls, ids: Sequence[Sequence[int]], tokenizer, facts: dict | None = None) -> ContextCounts:
        """Count every non-special token of ``ids`` (the training paragraphs, [CLS] ... [SEP]) in each context.

        ``facts``: ``tokenizer_facts(tokenizer)`` computed once, when many small tables are built (one per paragraph).
        """
        facts = facts or cls.tokenizer_facts(tokenizer)
        # One row per paragraph, padded with [PAD] (never matched): the lookup of a batch finds their contexts.
        width = max((len(p) for p in ids), default=0)
        rows = np.full((len(ids), width), facts["pad_id"], dtype=np.int64)  # (n_paragraphs, longest)
        for row, paragraph in enumerate(ids):
            rows[row, : len(paragraph)] = paragraph
        r, c = np.nonzero(~np.isin(rows, facts["special_ids"]))  # the centres: tokens that masking may hide
        centre = rows[r, c]  # (m,)
        near = _neighbours(rows, r, c, (facts["mask_id"], facts["pad_id"]))  # (2 * SIDE, m)
        keys, valid = _keys(near, _packing(facts["vocab_size"]))
        table = ContextTable.count(keys[valid], np.broadcast_to(centre, keys.shape)[valid])
        unigram = np.bincount(centre, minlength=facts["vocab_size"]).astype(np.int64)
        return cls(table, unigram, facts, text_fingerprint(ids))

    def probabilities(
        self,
        input_ids: torch.Tensor | np.ndarray,
        positions: torch.Tensor | np.ndarray | None = None,
        leave_out: Sequence[Sequence[ContextCounts]] | None = None,
        rule: CountingRule | None = None,
    ) -> MemoryOutput:
        """The table's distribution at each of ``positions`` (batch, seq_len) bool, by default every [MASK]; on the CPU.

        ``leave_out[row]``: tables whose counts are taken out for that row (e.g. the row's own paragraphs, built with
        ``build``), so that a training pair is scored by counts that never saw it.
        """
        rule = rule or CountingRule()
        ids = np.asarray(_on_cpu(input_ids), dtype=np.int64)  # (batch, seq_len)
        where = ids == self.mask_id if positions is None else np.asarray(_on_cpu(positions), dtype=bool)
        rows, cols = np.nonzero(where)  # row-major, as ``sequence[selected]`` orders them
        n = len(rows)
        keys, valid = _keys(_neighbours(ids, rows, cols, (self.mask_id, self.pad_id)), self._packing)
        keys, valid = keys.ravel(), valid.ravel()  # query q = shape * n + position
        removed = _leave_out_groups(leave_out, rows, ids.shape[0])
        parts, total = self._lookup(keys, valid, removed, n)  # total: (n_shapes, n) counts left after the leave-out
        weights, widest = _weights(total, rule)  # (n_shapes, n), (n,)
        norm = weights.sum(0) + rule.unigram  # (n,): every part is normalised, so this makes each row sum to 1
        probs = self._unigram_part(rows, removed, rule.unigram / norm)  # (n, vocab)
        # Each entry of a matched context adds weight / count_left * its count: each shape's part sums to its weight.
        scale = (weights / norm / np.maximum(total, 1)).ravel()  # per query
        for table, queries, contexts, sign in parts:
            owner, tokens, counts = table.table.entries(contexts)
            query = queries[owner]
            index = torch.from_numpy(query % n * self.vocab_size + tokens)
            probs.view(-1).index_add_(0, index, torch.from_numpy((sign * scale[query] * counts).astype(np.float32)))
        return MemoryOutput(probs, torch.from_numpy(widest), torch.from_numpy(norm))

    def _lookup(self, keys: np.ndarray, valid: np.ndarray, removed: list, n: int) -> tuple[list, np.ndarray]:
        """The matches of every query in this table and in each table left out; each query's count left."""
        queries, contexts = self.table.find(keys, valid)
        total = np.zeros(len(keys), dtype=np.int64)  # (n_shapes * n,)
        total[queries] = self.table.totals[contexts]
        parts = [(self, queries, contexts, 1.0)]
        for table, group in removed:  # group: the positions whose row leaves ``table`` out
            mine = (np.arange(len(SHAPES))[:, None] * n + group[None, :]).ravel()  # their queries, every shape
            hit, context = table.table.find(keys[mine], valid[mine])
            total[mine[hit]] -= table.table.totals[context]
            parts.append((table, mine[hit], context, -1.0))
        return parts, total.reshape(len(SHAPES), n)

    def _unigram_part(self, rows: np.ndarray, removed: list, weight: np.ndarray) -> torch.Tensor:
        """``weight`` (n,) times each position's unigram distribution (its row's leave-out taken out), (n, vocab)."""
        total = np.full(len(rows), self._base.sum())  # (n,)
        for table, group in removed:
            total[group] -= table.unigram.sum()
        scale = weight / total  # (n,)
        probs = torch.outer(torch.from_numpy(scale.astype(np.float32)), self._base32)
        for table, group in removed:
            seen = np.flatnonzero(table.unigram)
            values = -np.outer(scale[group], table.unigram[seen]).astype(np.float32)  # (len(group), n_seen)
            probs[torch.from_numpy(group[:, None]), torch.from_numpy(seen[None, :])] += torch.from_numpy(values)
        return probs

    def save(self, path: str | Path) -> Path:
        """Write the table as safetensors with its metadata (the module's docstring gives the format)."""
        from safetensors.numpy import save_file

        tensors = {"unigram": self.unigram, "keys": self.table.keys, "starts": self.table.starts}
        tensors |= {"tokens": self.table.tokens, "counts": self.table.counts}
        metadata = {
            "format": FORMAT,
            "version": VERSION,
            "vocab_size": str(self.vocab_size),
            "side": str(SIDE),
            "shapes": json.dumps(SHAPES),
            "mask_id": str(self.mask_id),
            "pad_id": str(self.pad_id),
            "special_ids": json.dumps(self.special_ids),
            "vocab_fingerprint": self.vocab_fingerprint,
            "text_fingerprint": self.text_fingerprint,
        }
        save_file(tensors, str(path), metadata=metadata | {"sha256": _digest(tensors, metadata)})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, tokenizer, text_print: str | None = None) -> ContextCounts:
        """Read a saved table; MemoryFileError unless it is whole and built for ``tokenizer`` (and that text)."""
        tensors, meta = _read(Path(path))
        if meta.get("format") != FORMAT or meta.get("version") != VERSION or meta.get("shapes") != json.dumps(SHAPES):
            raise MemoryFileError(
                f"{path} is not a context-count file of version {VERSION} (format {meta.get('format')!r}, version "
                f"{meta.get('version')!r}); rebuild it with ContextCounts.build, or serve the model alone."
            )
        facts = cls.tokenizer_facts(tokenizer)
        if meta["vocab_fingerprint"] != facts["vocab_fingerprint"]:
            raise MemoryFileError(
                f"{path} was built with another tokenizer's vocabulary; rebuild it from this checkpoint's training "
                f"text, or serve the model alone."
            )
        if text_print is not None and meta["text_fingerprint"] != text_print:
            raise MemoryFileError(
                f"{path} was counted on other training text than this run's; rebuild it, or serve the model alone."
            )
        table = _checked_table(tensors, facts["vocab_size"], path)
        return cls(table, tensors["unigram"].astype(np.int64), facts, meta["text_fingerprint"])


def _on_cpu(values):
    """A tensor's values on the CPU (numpy reads them there); anything else as it is."""
    return values.detach().cpu() if isinstance(values, torch.Tensor) else values


def _leave_out_groups(leave_out, rows: np.ndarray, n_rows: int) -> list[tuple[ContextCounts, np.ndarray]]:
    """(table, positions whose row leaves it out) for every table named in ``leave_out``."""
    if leave_out is None:
        return []
    if len(leave_out) != n_rows:
        raise ValueError(f"leave_out needs one list of tables per row of input_ids ({n_rows}), not {len(leave_out)}.")
    by_table: dict[int, tuple[ContextCounts, list[int]]] = {}
    for row, tables in enumerate(leave_out):
        for table in tables:
            by_table.setdefault(id(table), (table, []))[1].append(row)
    return [(table, np.flatnonzero(np.isin(rows, row_ids))) for table, row_ids in by_table.values()]


def _weights(total: np.ndarray, rule: CountingRule) -> tuple[np.ndarray, np.ndarray]:
    """Each shape's weight at each position (n_shapes, n) from its context's count ``total``, and the widest width."""
    matched = total > 0  # (n_shapes, n)
    widest = (matched * WIDTHS[:, None]).max(0, initial=0)  # (n,)
    weights = rule.growth ** WIDTHS[:, None] * total / (total + rule.confidence) * matched
    if rule.mode == "backoff":
        weights = weights * (WIDTHS[:, None] == widest[None, :])
    return weights.astype(np.float64), widest.astype(np.int64)


def mix(
    model_probs: torch.Tensor,
    memory: MemoryOutput,
    weight: float | Sequence[float] | None = None,
    strength: float = MODEL_STRENGTH,
) -> torch.Tensor:
    """The model's and the table's distributions interpolated at each [MASK]; (n_masks, vocab), rows sum to 1.

    By default the model is the counts' prior: its share is ``strength / (strength + memory.evidence)``, so it speaks
    almost alone where the table matched nothing and little where many well-seen contexts matched. ``weight`` fixes
    the model's share instead: one number, or one per widest context width matched (0 .. 2 * SIDE).
    """
    if weight is None:
        share = strength / (strength + memory.evidence.numpy())  # (n_masks,)
    elif isinstance(weight, int | float):
        share = np.full(len(memory.widest), float(weight))
    else:
        if len(weight) != 2 * SIDE + 1:
            raise ValueError(f"Give one mix weight, or one per widest width 0..{2 * SIDE} ({2 * SIDE + 1} values).")
        share = np.asarray(weight, dtype=np.float64)[memory.widest.numpy()]  # (n_masks,)
    # lerp: memory + share * (model - memory), in one pass (a fill-mask request pays for every extra op).
    share = torch.from_numpy(share.astype(np.float32)).unsqueeze(1).to(model_probs.device)  # (n_masks, 1)
    table = memory.probs.to(model_probs.device)  # (n_masks, len(tokenizer))
    if model_probs.shape[-1] > table.shape[-1]:  # a model's vocabulary may be wider than its tokenizer's: no counts
        table = torch.nn.functional.pad(table, (0, model_probs.shape[-1] - table.shape[-1]))
    return torch.lerp(table, model_probs.float(), share)


def _digest(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, and over the metadata, in name order."""
    digest = hashlib.sha256(json.dumps(metadata, sort_keys=True).encode())
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}|".encode() + array.tobytes())
    return digest.hexdigest()


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every tensor and the metadata of a safetensors file; MemoryFileError when missing, unreadable or damaged."""
    from safetensors import safe_open

    if not path.is_file():
        raise MemoryFileError(f"There is no context-count file at {path}; build one, or serve the model alone.")
    try:
        with safe_open(str(path), framework="np") as handle:
            meta = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as err:  # noqa: BLE001 (safetensors raises its own error types for a broken file)
        raise MemoryFileError(
            f"{path} is damaged ({type(err).__name__}); rebuild it, or serve the model alone."
        ) from None
    recorded = meta.pop("sha256", None)
    if recorded != _digest(tensors, meta):
        raise MemoryFileError(f"{path} is damaged (its contents differ from the sha256 it recorded); rebuild it.")
    return tensors, meta


def _checked_table(tensors: dict[str, np.ndarray], vocab: int, path) -> ContextTable:
    """The table from the file's tensors, checked for the invariants ``probabilities`` relies on."""
    try:
        keys, starts, tokens, counts = (tensors[name] for name in ("keys", "starts", "tokens", "counts"))
        unigram = tensors["unigram"]
    except KeyError as err:
        raise MemoryFileError(f"{path} lacks the tensor {err.args[0]}, so it is damaged; rebuild it.") from None
    sound = (
        len(unigram) == vocab
        and len(starts) == len(keys) + 1
        and starts[0] == 0
        and starts[-1] == len(tokens) == len(counts)
        and (np.diff(starts) > 0).all()
        and (np.diff(keys) > 0).all()
        and ((keys >= 0) & (keys < len(SHAPES) * vocab ** (2 * SIDE))).all()
        and ((tokens >= 0) & (tokens < vocab)).all()
        and (counts > 0).all()
    )
    if not sound:
        raise MemoryFileError(f"{path} holds an inconsistent table, so it is damaged; rebuild it.")
    return ContextTable(keys.astype(np.int64), starts.astype(np.int64), tokens, counts)


def argmax_hits(
    memory: ContextCounts, batches: Sequence[dict[str, torch.Tensor]], rule: CountingRule | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The table's most likely token at the labelled positions of ``batches``: whether it is the hidden one, and the
    hidden ones, (n_masks,) each (the 'context counting' baseline scores them as the other baselines)."""
    hits, answers = [], []
    for batch in batches:
        labelled = batch["labels"] != IGNORE_INDEX  # (batch, seq_len)
        answers.append(batch["labels"][labelled])  # (n_masks,)
        hits.append(memory.probabilities(batch["input_ids"], labelled, rule=rule).probs.argmax(-1) == answers[-1])
    return torch.cat(hits), torch.cat(answers)
