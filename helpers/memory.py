"""Context counting: a memory of which token the training paragraphs hold between the same neighbours.

The model learns the book's grammar; the book's phrases and rare words it sees too seldom to learn. A table of counts
keeps them: for every [MASK] it looks up the tokens seen in the training paragraphs with the same neighbours, up to
``SIDE`` tokens on each side (eight context shapes: one token left, two left, one left and one right, ...), and turns
what it finds into a probability distribution over the vocabulary. Every context that matched speaks, the wider ones
louder (``CountingRule``); what the table gives beside the model's own distribution (``mix``) is the project's MLM
answer with a memory.

    memory = ContextCounts.build(text.ids, tokenizer)         # TrainingText.ids: [CLS] paragraph [SEP], each
    out = memory.probabilities(batch["input_ids"])            # at every [MASK]: (n_masks, vocab), rows sum to 1
    probs = mix(model_logits.softmax(-1), out)                # the model's and the table's answers, interpolated
    memory.save(folder / MEMORY_FILE); ContextCounts.load(folder / MEMORY_FILE, tokenizer)

The file is safetensors (no pickle): per context shape ``l{left}r{right}.keys`` (n_contexts,) int64, each context's
tokens packed into one number, sorted; ``.starts`` (n_contexts + 1,) int64, where its entries begin;
``.tokens`` and ``.counts`` (n_entries,) int32, the tokens seen in that context and how often; and ``unigram``
(vocab,) int64, every token's count. Its string metadata: ``format``, ``version``, ``vocab_size``, ``side``,
``vocab_fingerprint`` (sha256 of the tokenizer's vocabulary and special ids), ``text_fingerprint`` (sha256 of the
training paragraphs' ids), ``special_ids`` (JSON) and ``sha256`` (of every tensor, so that damage is found on load).
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

FORMAT = "bert-meditations/context-counts"
VERSION = "1"
MEMORY_FILE = "context_counts.safetensors"  # its name inside a checkpoint folder
SIDE = 2  # context tokens on each side of the [MASK]
# (left, right) widths of every context shape: (0, 1) is "the token to the right", (2, 2) "two on each side".
SHAPES = tuple((left, right) for left in range(SIDE + 1) for right in range(SIDE + 1) if left + right)
UNSEEN = 0.01  # the pseudo-count every ordinary token gets in the unigram: a finite log-probability for all
# How much the model weighs in the mix against the table's matched contexts (each weighs up to 1, the unigram 0.05):
# chosen once on a development split of the training paragraphs (benchmarks/memory.py, docs/memory_notes.md).
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


@dataclass
class ShapeTable:
    """The counts of one context shape: for each context seen (sorted keys), the tokens seen there and how often."""

    keys: np.ndarray  # (n_contexts,) int64, sorted: the context's tokens packed as sum(token_j * vocab**j)
    starts: np.ndarray  # (n_contexts + 1,) int64: context c's entries are tokens[starts[c]:starts[c + 1]]
    tokens: np.ndarray  # (n_entries,) int32
    counts: np.ndarray  # (n_entries,) int32, all > 0
    totals: np.ndarray  # (n_contexts,) int64: how often each context was seen, the sum of its counts

    def find(self, keys: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Of the queried ``keys`` (n,), which matched (m,) and the index of each one's context (m,)."""
        where = np.searchsorted(self.keys, keys)  # (n,)
        inside = where < len(self.keys)
        hit = valid & inside
        hit[hit] = self.keys[where[hit]] == keys[hit]
        rows = np.flatnonzero(hit)
        return rows, where[rows]

    def entries(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every entry of ``contexts`` (m,): which of them it belongs to, its token and its count; each (n_entries,)."""
        lengths = self.starts[contexts + 1] - self.starts[contexts]  # (m,)
        owner = np.repeat(np.arange(len(contexts)), lengths)
        # The entry index: the context's start plus the entry's place inside its context.
        first = np.cumsum(lengths) - lengths  # (m,) where each context's run begins in the output
        index = self.starts[contexts][owner] + np.arange(int(lengths.sum())) - first[owner]
        return owner, self.tokens[index], self.counts[index]


def _neighbours(ids: np.ndarray, rows: np.ndarray, cols: np.ndarray, blocked: np.ndarray) -> dict[int, np.ndarray]:
    """The token at each offset -SIDE..SIDE (not 0) from the positions (rows, cols); -1 where none may be matched."""
    out = {}
    for offset in [*range(-SIDE, 0), *range(1, SIDE + 1)]:
        at = cols + offset
        inside = (at >= 0) & (at < ids.shape[1])
        token = np.where(inside, ids[rows, np.clip(at, 0, ids.shape[1] - 1)], -1)  # (n,)
        out[offset] = np.where(inside & ~np.isin(token, blocked), token, -1)
    return out


def _context_keys(near: dict[int, np.ndarray], shape: tuple[int, int], vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """Each position's context of ``shape`` packed into one int64 (n,), and whether it may be matched (n,)."""
    left, right = shape
    offsets = [*range(-left, 0), *range(1, right + 1)]
    key = np.zeros_like(near[offsets[0]])
    valid = np.ones(len(key), dtype=bool)
    for power, offset in enumerate(offsets):
        valid &= near[offset] >= 0  # a [MASK], [PAD] or the edge of the row: this context is not matched
        key += np.maximum(near[offset], 0) * vocab**power
    return key, valid


class ContextCounts:
    """The memory: counts of tokens by context shape, built from training paragraphs; see the module's docstring."""

    def __init__(
        self,
        tables: dict[tuple[int, int], ShapeTable],
        unigram: np.ndarray,
        vocab_size: int,
        mask_id: int,
        pad_id: int,
        special_ids: Sequence[int],
        vocab_print: str,
        text_print: str,
    ):
        self.tables, self.unigram, self.vocab_size = tables, unigram, vocab_size  # unigram: (vocab,) int64
        self.mask_id, self.pad_id, self.special_ids = mask_id, pad_id, sorted(set(special_ids))
        self.vocab_fingerprint, self.text_fingerprint = vocab_print, text_print

    @classmethod
    def build(cls, ids: Sequence[Sequence[int]], tokenizer) -> ContextCounts:
        """Count every non-special token of ``ids`` (the training paragraphs, [CLS] ... [SEP]) in each context shape."""
        vocab = len(tokenizer)
        if vocab ** (2 * SIDE) >= 2**63:
            raise ValueError(f"A vocabulary of {vocab} tokens is too large to pack {2 * SIDE} context tokens in int64.")
        special = sorted(set(tokenizer.all_special_ids))
        blocked = np.array([tokenizer.mask_token_id, tokenizer.pad_token_id])
        # One row per paragraph, padded with [PAD] (never matched): the vectorised lookup of a batch counts them.
        width = max((len(p) for p in ids), default=0)
        rows = np.full((len(ids), width), tokenizer.pad_token_id, dtype=np.int64)  # (n_paragraphs, longest)
        for row, paragraph in enumerate(ids):
            rows[row, : len(paragraph)] = paragraph
        r, c = np.nonzero(~np.isin(rows, special))  # the centres: tokens that masking may hide
        centre = rows[r, c]
        near = _neighbours(rows, r, c, blocked)
        tables = {}
        for shape in SHAPES:
            key, valid = _context_keys(near, shape, vocab)
            tables[shape] = _count(key[valid], centre[valid])
        unigram = np.bincount(centre, minlength=vocab).astype(np.int64)
        return cls(
            tables,
            unigram,
            vocab,
            tokenizer.mask_token_id,
            tokenizer.pad_token_id,
            special,
            vocab_fingerprint(tokenizer),
            text_fingerprint(ids),
        )

    def probabilities(
        self,
        input_ids: torch.Tensor | np.ndarray,
        positions: torch.Tensor | np.ndarray | None = None,
        leave_out: Sequence[Sequence[ContextCounts]] | None = None,
        rule: CountingRule = CountingRule(),
    ) -> MemoryOutput:
        """The table's distribution at each of ``positions`` (batch, seq_len) bool, by default every [MASK].

        ``leave_out[row]``: tables whose counts are taken out for that row (e.g. the row's own paragraphs, built with
        ``build``), so that a training pair is scored by counts that never saw it.
        """
        ids = np.asarray(input_ids, dtype=np.int64)  # (batch, seq_len)
        where = ids == self.mask_id if positions is None else np.asarray(positions, dtype=bool)
        rows, cols = np.nonzero(where)  # row-major, as ``sequence[selected]`` orders them
        near = _neighbours(ids, rows, cols, np.array([self.mask_id, self.pad_id]))
        removed = _leave_out_groups(leave_out, rows, ids.shape[0])
        found = [self._lookup(shape, near, removed) for shape in SHAPES]  # per shape: Found
        weights, widest = _weights(found, len(rows), rule)  # (n_shapes, n), (n,)
        total = weights.sum(0) + rule.unigram  # (n,): every part is normalised, so this makes each row sum to 1
        probs = self._unigram_part(rows, removed, rule.unigram / total)  # (n, vocab)
        flat = probs.view(-1)
        for (shape, hits), weight in zip(zip(SHAPES, found), weights / total):
            for sign, (masks, contexts, table) in [(1.0, hits.kept)] + [(-1.0, part) for part in hits.removed]:
                # Each entry adds weight / n * count of its (context, token): n is the context's count left after
                # the leave-out, so the shape's part sums to its weight.
                owner, tokens, counts = table.tables[shape].entries(contexts)
                mask = masks[owner]
                values = sign * weight[mask] / np.maximum(hits.total[mask], 1) * counts
                index = mask * self.vocab_size + tokens
                flat.index_add_(0, torch.from_numpy(index), torch.from_numpy(values.astype(np.float32)))
        return MemoryOutput(probs, torch.from_numpy(widest), torch.from_numpy(total))

    def _lookup(self, shape: tuple[int, int], near: dict[int, np.ndarray], removed: list) -> Found:
        """Which positions' contexts of ``shape`` the table holds, and their counts left after the leave-out."""
        key, valid = _context_keys(near, shape, self.vocab_size)
        masks, contexts = self.tables[shape].find(key, valid)
        total = np.zeros(len(key), dtype=np.int64)  # (n,)
        total[masks] = self.tables[shape].totals[contexts]
        parts = []
        for table, group in removed:  # group: the positions whose row leaves ``table`` out
            hit, ctx = table.tables[shape].find(key[group], valid[group])
            total[group[hit]] -= table.tables[shape].totals[ctx]
            parts.append((group[hit], ctx, table))
        return Found((masks, contexts, self), parts, total)

    def _unigram_part(self, rows: np.ndarray, removed: list, weight: np.ndarray) -> torch.Tensor:
        """``weight`` (n,) times each position's unigram distribution (its row's leave-out taken out), (n, vocab)."""
        floor = np.full(self.vocab_size, UNSEEN)
        floor[self.special_ids] = 0.0  # specials are never masked, so never the answer
        base = self.unigram + floor  # (vocab,)
        total = np.full(len(rows), base.sum())  # (n,)
        for table, group in removed:
            total[group] -= table.unigram.sum()
        scale = weight / total  # (n,)
        probs = torch.outer(torch.from_numpy(scale.astype(np.float32)), torch.from_numpy(base.astype(np.float32)))
        for table, group in removed:
            seen = np.flatnonzero(table.unigram)
            values = -np.outer(scale[group], table.unigram[seen]).astype(np.float32)  # (len(group), n_seen)
            probs[torch.from_numpy(group[:, None]), torch.from_numpy(seen[None, :])] += torch.from_numpy(values)
        return probs

    def save(self, path: str | Path) -> Path:
        """Write the table as safetensors with its metadata (the module's docstring gives the format)."""
        from safetensors.numpy import save_file

        tensors = {"unigram": self.unigram}
        for (left, right), table in self.tables.items():
            name = f"l{left}r{right}"
            tensors |= {f"{name}.keys": table.keys, f"{name}.starts": table.starts}
            tensors |= {f"{name}.tokens": table.tokens, f"{name}.counts": table.counts}
        metadata = {
            "format": FORMAT,
            "version": VERSION,
            "vocab_size": str(self.vocab_size),
            "side": str(SIDE),
            "mask_id": str(self.mask_id),
            "pad_id": str(self.pad_id),
            "special_ids": json.dumps(self.special_ids),
            "vocab_fingerprint": self.vocab_fingerprint,
            "text_fingerprint": self.text_fingerprint,
            "sha256": _tensors_digest(tensors),
        }
        save_file(tensors, str(path), metadata=metadata)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, tokenizer, text_print: str | None = None) -> ContextCounts:
        """Read a saved table; MemoryFileError unless it is whole and built for ``tokenizer`` (and that text)."""
        tensors, meta = _read(Path(path))
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise MemoryFileError(
                f"{path} is not a context-count file of version {VERSION} (format {meta.get('format')!r}, version "
                f"{meta.get('version')!r}); rebuild it with ContextCounts.build, or serve the model alone."
            )
        if meta.get("vocab_fingerprint") != vocab_fingerprint(tokenizer):
            raise MemoryFileError(
                f"{path} was built with another tokenizer's vocabulary; rebuild it from this checkpoint's training "
                f"text, or serve the model alone."
            )
        if text_print is not None and meta.get("text_fingerprint") != text_print:
            raise MemoryFileError(
                f"{path} was counted on other training text than this run's; rebuild it, or serve the model alone."
            )
        vocab = int(meta["vocab_size"])
        tables = {shape: _table(tensors, shape, vocab, path) for shape in SHAPES}
        return cls(
            tables,
            tensors["unigram"].astype(np.int64),
            vocab,
            int(meta["mask_id"]),
            int(meta["pad_id"]),
            json.loads(meta["special_ids"]),
            meta["vocab_fingerprint"],
            meta["text_fingerprint"],
        )


class Found(NamedTuple):
    """One context shape's lookup: the table's matches, the leave-out's, and each position's count left."""

    kept: tuple[np.ndarray, np.ndarray, ContextCounts]  # (positions (m,), contexts (m,), the table)
    removed: list[tuple[np.ndarray, np.ndarray, ContextCounts]]  # the same for each table left out
    total: np.ndarray  # (n,) int64: each position's context count after the leave-out; 0 = not matched


def _count(keys: np.ndarray, tokens: np.ndarray) -> ShapeTable:
    """The table of one shape from every (context key, token) occurrence."""
    order = np.lexsort((tokens, keys))  # by key, then token
    keys, tokens = keys[order], tokens[order]
    new = np.ones(len(keys), dtype=bool)  # where a new (key, token) run starts
    new[1:] = (keys[1:] != keys[:-1]) | (tokens[1:] != tokens[:-1])
    runs = np.flatnonzero(new)
    counts = np.diff(np.append(runs, len(keys)))  # (n_entries,)
    entry_keys = keys[runs]
    first = np.ones(len(runs), dtype=bool)  # where a new context starts among the entries
    first[1:] = entry_keys[1:] != entry_keys[:-1]
    starts = np.append(np.flatnonzero(first), len(runs)).astype(np.int64)
    totals = np.add.reduceat(counts, starts[:-1]) if len(runs) else np.zeros(0, dtype=np.int64)
    return ShapeTable(
        entry_keys[first].astype(np.int64),
        starts,
        tokens[runs].astype(np.int32),
        counts.astype(np.int32),
        totals.astype(np.int64),
    )


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


def _weights(found: list[Found], n: int, rule: CountingRule) -> tuple[np.ndarray, np.ndarray]:
    """Each shape's weight at each position (n_shapes, n) by ``rule``, and the widest width matched (n,)."""
    widths = np.array([left + right for left, right in SHAPES])  # (n_shapes,)
    totals = np.stack([hits.total for hits in found]) if found else np.zeros((0, n))  # (n_shapes, n)
    matched = totals > 0
    widest = (matched * widths[:, None]).max(0) if len(found) else np.zeros(n, dtype=np.int64)
    weights = rule.growth ** widths[:, None] * totals / (totals + rule.confidence) * matched
    if rule.mode == "backoff":
        weights = weights * (widths[:, None] == widest[None, :])
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
        share = strength / (strength + memory.evidence.float())  # (n_masks,)
    elif isinstance(weight, int | float):
        share = torch.full((len(memory.widest),), float(weight))
    else:
        if len(weight) != 2 * SIDE + 1:
            raise ValueError(f"Give one mix weight, or one per widest width 0..{2 * SIDE} ({2 * SIDE + 1} values).")
        share = torch.tensor([float(w) for w in weight])[memory.widest]  # (n_masks,)
    share = share.unsqueeze(1)  # (n_masks, 1)
    return share * model_probs + (1 - share) * memory.probs


def _tensors_digest(tensors: dict[str, np.ndarray]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
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
    if meta.get("sha256") != _tensors_digest(tensors):
        raise MemoryFileError(f"{path} is damaged (its contents differ from the sha256 it recorded); rebuild it.")
    return tensors, meta


def _table(tensors: dict[str, np.ndarray], shape: tuple[int, int], vocab: int, path) -> ShapeTable:
    """One shape's table from the file's tensors, checked for the invariants ``probabilities`` relies on."""
    name = f"l{shape[0]}r{shape[1]}"
    try:
        keys, starts = tensors[f"{name}.keys"], tensors[f"{name}.starts"]
        tokens, counts = tensors[f"{name}.tokens"], tensors[f"{name}.counts"]
    except KeyError as err:
        raise MemoryFileError(f"{path} lacks the tensor {err.args[0]}, so it is damaged; rebuild it.") from None
    sound = (
        len(starts) == len(keys) + 1
        and starts[0] == 0
        and starts[-1] == len(tokens) == len(counts)
        and (np.diff(starts) > 0).all()
        and (np.diff(keys) > 0).all()
        and ((tokens >= 0) & (tokens < vocab)).all()
        and (counts > 0).all()
    )
    if not sound:
        raise MemoryFileError(f"{path} holds an inconsistent table {name}, so it is damaged; rebuild it.")
    totals = np.add.reduceat(counts.astype(np.int64), starts[:-1]) if len(keys) else np.zeros(0, dtype=np.int64)
    return ShapeTable(keys.astype(np.int64), starts.astype(np.int64), tokens, counts, totals)


class ContextGuess:
    """The 'context counting' baseline: the memory's most likely token at each [MASK], scored like the model."""

    def __init__(self, text, rule: CountingRule = CountingRule()):
        self.memory, self.rule = ContextCounts.build(text.ids, text.tokenizer), rule

    def score(self, batches: Sequence[dict[str, torch.Tensor]], frequent: torch.Tensor) -> dict[str, float]:
        """Accuracy at the labelled positions of ``batches``, per MLM accuracy key (the whole and each part)."""
        from helpers.baselines import ACCURACIES, positions_of  # here: baselines.py lists this class in its table
        from helpers.masking import IGNORE_INDEX

        hits, answers = [], []
        for batch in batches:
            labelled = batch["labels"] != IGNORE_INDEX  # (batch, seq_len)
            guess = self.memory.probabilities(batch["input_ids"], labelled, rule=self.rule).probs.argmax(-1)
            answers.append(batch["labels"][labelled])  # (n_masks,)
            hits.append(guess == answers[-1])
        hit, answer = torch.cat(hits), torch.cat(answers)
        scores = {}
        for accuracy in ACCURACIES:
            if accuracy.task == "mlm":
                counted = positions_of(accuracy, answer, frequent)
                scores[accuracy.key] = (hit & counted).sum().item() / max(counted.sum().item(), 1)
        return scores
