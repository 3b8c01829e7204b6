"""Context counting beside the model (issue 32): the memory, its mix with the model, a kNN contrast, and a lever.

    python -m benchmarks.memory                    # every part below, seeds 42 43 44 (21 minutes, 1 thread)
    python -m benchmarks.memory --parts dev        # the development split: choose the rules and the weights (6 min)
    python -m benchmarks.memory --parts full       # all the training paragraphs; 5 draws of validation masks (8 min)
    python -m benchmarks.memory --parts lever      # the model trained against the memory; the same draws (7 min)
    python -m benchmarks.memory --parts plot       # redraw docs/memory.png from benchmarks/memory.json

Every weight is chosen on a development split: DEV_FRACTION of the training paragraphs, held out from the model's
training, from the tokenizer and from the table, and masked like the validation pairs (``--parts dev``, which writes
the chosen constants into the JSON). The validation pairs are touched only by ``--parts full`` and ``--parts lever``,
which read those constants. Results go to benchmarks/memory.json (every run: seed, part, code commit, date, CPU,
threads, per-draw numbers) and docs/memory.png.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F

from helpers.baselines import FREQUENT_TOKENS, NeighbourGuess, TrainingText, UnigramGuess
from helpers.config import ROOT, Config, get_profile
from helpers.dataset import MeditationsDataset, PreparedData, make_loader, prepare_data
from helpers.masking import IGNORE_INDEX
from helpers.memory import (
    MEMORY_FILE,
    SIDE,
    ContextCounts,
    CountingRule,
    MemoryOutput,
    mix,
)
from helpers.model import PretrainingModel
from helpers.pairs import Pair, make_pairs
from helpers.record import FILL_PROMPTS, code_version, machine
from helpers.tokens import load_tokenizer, tokenize_pairs
from helpers.train import shuffled_batches

OUT = ROOT / "benchmarks" / "memory.json"
FIGURE = ROOT / "docs" / "memory.png"
OUTPUTS = tuple(str(path.relative_to(ROOT)) for path in (OUT, FIGURE))
SEEDS = (42, 43, 44)
KEEP: Path | None = None  # --keep DIR: every run's checkpoint stays in DIR/<part>-<seed>
PROFILE = "default"  # --profile tiny makes a smoke run of the whole script in a minute (its numbers mean nothing)
DRAWS = 5  # fresh draws of masks per run, at seeds cfg.seed + 7777 * draw, as benchmarks/learning.py draws them
DEV_FRACTION = 0.1  # of the training paragraphs, held out from everything a run fits
DEV_SEED = 5003  # the development paragraphs are random.Random(cfg.seed + DEV_SEED).sample(...)
GRID = tuple(round(0.05 * i, 2) for i in range(21))  # the model's share in the mix, 0 (table alone) .. 1 (model alone)
WIDTHS = 2 * SIDE + 1  # the widest context matched: 0 (none) .. 2 * SIDE tokens
ISSUE_RULE = CountingRule("interpolate", growth=3.0, confidence=1.0, unigram=0.05)  # the issue's outside measurement
INTERPOLATE_RULES = tuple(
    CountingRule("interpolate", g, c, u)
    for g in (1.0, 1.5, 2.0, 3.0)
    for c in (1.0, 2.0, 4.0, 8.0)
    for u in (0.05, 0.2)
)
# Back-off: only the widest matched width speaks, so its growth is immaterial (the shapes of one width share it).
BACKOFF_RULES = tuple(CountingRule("backoff", 3.0, c, u) for c in (0.5, 1.0, 2.0, 4.0, 8.0) for u in (0.05, 0.2))
STRENGTHS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0)  # the model's weight against the table's evidence
KNN_K = 64
KNN_TEMPERATURES = (1.0, 3.0, 10.0, 30.0, 100.0)  # over squared distances between transformed states
KNN_KEY_DRAWS = 3  # draws of masks over the training pairs whose states become the kNN's keys
RULES = ("memory", "memory_backoff", "memory_issue_rule")  # the memory under the chosen rules and the issue's
TRAIN_LOO_DRAW = 3  # the draw of masks over training pairs that the leave-one-paragraph-out weight is chosen on


def dev_split(data: PreparedData, cfg: Config, fraction: float = DEV_FRACTION) -> PreparedData:
    """The run's data with ``fraction`` of its training paragraphs moved to a development set in place of validation.

    The tokenizer is trained again on the paragraphs left, so the development text is unseen by everything fitted.
    """
    train_ids = sorted(data.train_sentences)
    dev = set(random.Random(cfg.seed + DEV_SEED).sample(train_ids, round(fraction * len(train_ids))))
    keep = [i for i in train_ids if i not in dev]
    dev_sentences = {i: data.sentences[i] for i in sorted(dev)}
    pairs = make_pairs(
        dev_sentences, exhaustive=True, seed=cfg.seed + 1, max_segment_sentences=cfg.max_segment_sentences
    )
    tokenizer = load_tokenizer(cfg.model, [data.paragraphs[i] for i in keep], cfg.vocab_size)
    train_sentences = {i: data.sentences[i] for i in keep}
    return PreparedData(data.paragraphs, data.sentences, train_sentences, dev_sentences, pairs, tokenizer)


def pair_batches(data: PreparedData, cfg: Config, pairs: Sequence[Pair], seed: int) -> list[dict[str, torch.Tensor]]:
    """``pairs`` masked by the validation rule, each row with the corpus index of its paragraphs (paragraph_a/_b)."""
    encodings = tokenize_pairs(data.tokenizer, pairs, cfg.max_length)
    encodings |= {"paragraph_a": [p.paragraph_a for p in pairs], "paragraph_b": [p.paragraph_b for p in pairs]}
    loader = make_loader(MeditationsDataset(encodings), data.tokenizer, cfg, shuffle=False, seed=seed, validation=True)
    return list(loader)


def paragraph_tables(data: PreparedData, text: TrainingText) -> dict[int, ContextCounts]:
    """Corpus paragraph index -> the table of that training paragraph alone (what a leave-out takes away)."""
    facts = ContextCounts.tokenizer_facts(data.tokenizer)  # once, not once per paragraph
    return {
        index: ContextCounts.build([ids], data.tokenizer, facts) for index, ids in zip(data.train_sentences, text.ids)
    }


def leave_out(batch: dict[str, torch.Tensor], tables: dict[int, ContextCounts]) -> list[list[ContextCounts]]:
    """Per row, the tables of the training paragraphs its sentences came from (none for held-out paragraphs)."""
    rows = zip(batch["paragraph_a"].tolist(), batch["paragraph_b"].tolist())
    return [[tables[p] for p in sorted({a, b}) if p in tables] for a, b in rows]


@torch.inference_mode()
def at_masks(stock, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's probabilities (n_masks, vocab) and its MLM head's transformed states (n_masks, hidden)."""
    selected = batch["labels"] != IGNORE_INDEX  # (batch, seq_len)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    hidden = stock.bert(**inputs, return_dict=False)[0][selected]  # (n_masks, hidden)
    states = stock.cls.predictions.transform(hidden)
    return stock.cls.predictions.decoder(states).float().softmax(-1), states.float()


class Tally:
    """Hits of each named predictor at the same masks, the whole and split by frequent / rest."""

    def __init__(self, frequent: torch.Tensor):
        self.frequent, self.hits, self.n = frequent, {}, np.zeros(3)

    def masks(self, labels: torch.Tensor) -> None:
        """Count a batch's hidden tokens (n_masks,) once; ``add`` then scores guesses at the same positions."""
        self.labels, self.part = labels, torch.isin(labels, self.frequent)
        self.n += [len(labels), int(self.part.sum()), int((~self.part).sum())]

    def add(self, name: str, probs: torch.Tensor) -> None:
        """Score the argmax of ``probs`` (n_masks, vocab) at the current batch's masks."""
        hit = probs.argmax(-1) == self.labels
        counts = [int(hit.sum()), int((hit & self.part).sum()), int((hit & ~self.part).sum())]
        self.hits[name] = self.hits.get(name, np.zeros(3)) + counts

    def result(self) -> dict[str, dict[str, float]]:
        return {
            name: dict(zip(("all", "frequent", "rest"), (hits / np.maximum(self.n, 1)).round(5).tolist()))
            for name, hits in self.hits.items()
        } | {"masks": int(self.n[0])}


class MixGrid:
    """Hits of the mix at every value of a grid, by the widest context the table matched (for choosing weights).

    ``by="weight"``: the model's fixed share, over GRID; ``by="strength"``: the model's strength against the table's
    evidence, over STRENGTHS.
    """

    def __init__(self, by: str = "weight"):
        self.by, self.grid = by, GRID if by == "weight" else STRENGTHS
        self.hits, self.n = np.zeros((WIDTHS, len(self.grid))), np.zeros(WIDTHS)

    def add(self, model: torch.Tensor, memory: MemoryOutput, labels: torch.Tensor) -> None:
        widest = memory.widest.numpy()
        self.n += np.bincount(widest, minlength=WIDTHS)
        for column, value in enumerate(self.grid):
            hit = (mix(model, memory, **{self.by: value}).argmax(-1) == labels).numpy()
            self.hits[:, column] += np.bincount(widest[hit], minlength=WIDTHS)

    def result(self) -> dict[str, list]:
        return {"hits": self.hits.astype(int).tolist(), "n": self.n.astype(int).tolist()}


def knn_store(stock, data: PreparedData, cfg: Config, pairs: Sequence[Pair]) -> tuple[torch.Tensor, torch.Tensor]:
    """The kNN memory: transformed states at masks of training pairs (n_keys, hidden), and the tokens hidden there."""
    keys, values = [], []
    for draw in range(KNN_KEY_DRAWS):
        for batch in pair_batches(data, cfg, pairs, seed=cfg.seed + 31 * (draw + 1)):
            keys.append(at_masks(stock, batch)[1])
            values.append(batch["labels"][batch["labels"] != IGNORE_INDEX])
    return torch.cat(keys), torch.cat(values)


def knn_probs(
    queries: torch.Tensor, store: tuple[torch.Tensor, torch.Tensor], vocab: int, temperatures: Sequence[float]
) -> list[torch.Tensor]:
    """Per temperature, the kNN distribution at each query (n, vocab), as Khandelwal et al. (2020) build it."""
    keys, values = store
    found = [torch.cdist(chunk, keys).pow(2).topk(KNN_K, largest=False) for chunk in queries.split(256)]
    distances, indices = torch.cat([f.values for f in found]), torch.cat([f.indices for f in found])  # (n, k) each
    out = []
    for temperature in temperatures:
        weights = (-distances / temperature).softmax(-1)  # (n, k)
        out.append(torch.zeros(len(queries), vocab).scatter_add_(1, values[indices], weights))
    return out


class KnnGrid:
    """Hits of the model mixed with the kNN distribution, per temperature and model share."""

    def __init__(self):
        self.hits = np.zeros((len(KNN_TEMPERATURES), len(GRID)))

    def add(self, model: torch.Tensor, knn: list[torch.Tensor], labels: torch.Tensor) -> None:
        for row, probs in enumerate(knn):
            for column, share in enumerate(GRID):
                self.hits[row, column] += int(((share * model + (1 - share) * probs).argmax(-1) == labels).sum())

    def result(self) -> list[list[int]]:
        return self.hits.astype(int).tolist()


class AgainstMemory(PretrainingModel):
    """The lever: the memory's log-probabilities are added to the MLM logits, in training and at inference.

    In training each pair is scored by counts that leave out its own paragraphs (``paragraph_a``/``paragraph_b`` in
    the batch), so the model learns what the table cannot say about unseen text.
    """

    def __init__(self, stock, nsp_dropout=0.0, memory=None, tables=None, rule: CountingRule | None = None):
        super().__init__(stock, nsp_dropout)
        self.memory, self.tables, self.rule = memory, tables or {}, rule or CountingRule()

    def memory_log_probs(self, input_ids, labels, paragraph_a=None, paragraph_b=None) -> torch.Tensor:
        """log P_table at the labelled positions (n_selected, vocab), floored so that no logit is -inf."""
        rows = None
        if paragraph_a is not None:
            rows = leave_out({"paragraph_a": paragraph_a, "paragraph_b": paragraph_b}, self.tables)
        probs = self.memory.probabilities(input_ids.cpu(), (labels != IGNORE_INDEX).cpu(), rows, self.rule).probs
        return probs.clamp_min(1e-12).log().to(input_ids.device)

    def forward(self, input_ids, attention_mask, token_type_ids, labels, next_sentence_label, nsp_weight=1.0, **extra):
        out = super().forward(input_ids, attention_mask, token_type_ids, labels, next_sentence_label, nsp_weight)
        memory = self.memory_log_probs(input_ids, labels, extra.get("paragraph_a"), extra.get("paragraph_b"))
        logits = out["mlm_logits"] + memory  # (n_selected, vocab): a product of the two experts
        if out["mlm_labels"].numel():
            mlm_loss = F.cross_entropy(logits.float(), out["mlm_labels"])
        else:
            mlm_loss = logits.sum() * 0.0
        return out | {"mlm_logits": logits, "mlm_loss": mlm_loss, "loss": mlm_loss + nsp_weight * out["nsp_loss"]}


def epoch_loader_with_paragraphs(run, epoch: int):
    """helpers.train.epoch_loader, with each pair's paragraph indices in its batch (for the lever's leave-out)."""
    pairs = run.data.train_pairs(run.cfg, epoch)
    encodings = tokenize_pairs(run.data.tokenizer, pairs, run.cfg.max_length)
    encodings |= {"paragraph_a": [p.paragraph_a for p in pairs], "paragraph_b": [p.paragraph_b for p in pairs]}
    return shuffled_batches(run, MeditationsDataset(encodings), epoch)  # the very order and masks of the plain loop


@contextmanager
def run_folder(part: str, seed: int) -> Iterator[Path]:
    """Where a run's checkpoint goes: KEEP/<part>-<seed> with --keep (to read it again), else a temporary folder."""
    if KEEP is not None:
        folder = KEEP / f"{part}-{seed}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        yield folder
        return
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def train_model(cfg: Config, data: PreparedData, folder: Path, lever: dict | None = None):
    """Train the default loop (``lever``: memory and tables, to train against the memory); the stock model, seconds."""
    from transformers import BertForPreTraining

    import helpers.train as loop

    started = time.perf_counter()
    if lever is None:
        loop.train(cfg, folder, progress_bar=False, track=False, verbose=False, data=data)
    else:
        build = lambda stock, nsp_dropout: AgainstMemory(stock, nsp_dropout, **lever)  # noqa: E731
        with (
            mock.patch.object(loop, "PretrainingModel", build),
            mock.patch.object(loop, "epoch_loader", epoch_loader_with_paragraphs),
        ):
            loop.train(cfg, folder, progress_bar=False, track=False, verbose=False, data=data)
    seconds = time.perf_counter() - started
    return BertForPreTraining.from_pretrained(folder, use_safetensors=True).eval(), seconds


def run_header(part: str, seed: int) -> dict:
    """What every run of the JSON records about where and how it ran."""
    return {
        "part": part,
        "seed": seed,
        "code_version": code_version(OUTPUTS),
        "date": machine()["date"],
        "cpu": machine()["cpu"],
        "torch_threads": torch.get_num_threads(),
    }


def rule_name(rule: CountingRule) -> str:
    return f"{rule.mode} growth={rule.growth:g} confidence={rule.confidence:g} unigram={rule.unigram:g}"


def dev_rules(seed: int) -> dict:
    """The counting rules alone on the development masks (no model): each rule's accuracy per draw."""
    cfg = get_profile(PROFILE, seed=seed, wandb="disabled")
    data = dev_split(prepare_data(cfg), cfg)
    text = data.training_text(cfg)
    memory = ContextCounts.build(text.ids, data.tokenizer)
    draws = []
    for draw in range(1, DRAWS + 1):
        tally = Tally(text.frequent)
        for batch in validation_batches(data, cfg, seed=cfg.seed + 7777 * draw):
            selected = batch["labels"] != IGNORE_INDEX
            tally.masks(batch["labels"][selected])
            for rule in (*INTERPOLATE_RULES, *BACKOFF_RULES):
                tally.add(rule_name(rule), memory.probabilities(batch["input_ids"], selected, rule=rule).probs)
        draws.append(tally.result())
    return run_header("dev_rules", seed) | {"dev_paragraphs": len(data.val_sentences), "draws": draws}


def best_rule(runs: list[dict], rules: Sequence[CountingRule]) -> CountingRule:
    """The rule of ``rules`` with the best mean accuracy over every run and draw (the first of equals)."""
    score = lambda rule: statistics.fmean(d[rule_name(rule)]["all"] for r in runs for d in r["draws"])  # noqa: E731
    return max(rules, key=score)


def validation_batches(data: PreparedData, cfg: Config, seed: int) -> list[dict[str, torch.Tensor]]:
    """The held-out pairs of ``data`` masked by the validation rule at ``seed`` (helpers.dataset's, by keyword)."""
    from helpers.dataset import validation_batches as batches

    return batches(data, cfg, seed=seed)


_KEYS = {"all": "mlm_accuracy_at_mask", "frequent": "mlm_accuracy_frequent", "rest": "mlm_accuracy_rest"}


def score_draw(stock, batches, text: TrainingText, memory: ContextCounts, rules: dict, hook=None) -> dict:
    """One draw of masks: the model, the two baselines and the memory under each of ``rules`` (name -> rule).

    ``hook(tally, model, states, outputs, labels)`` scores more predictors at the same masks: ``model`` (n, vocab),
    ``states`` (n, hidden), ``outputs`` the memory's MemoryOutput by rule name, ``labels`` (n,).
    """
    tally = Tally(text.frequent)
    for batch in batches:
        selected = batch["labels"] != IGNORE_INDEX  # (batch, seq_len): every one a [MASK]
        labels = batch["labels"][selected]
        tally.masks(labels)
        model, states = at_masks(stock, batch)
        tally.add("model", model)
        outputs = {name: memory.probabilities(batch["input_ids"], selected, rule=rule) for name, rule in rules.items()}
        for name, out in outputs.items():
            tally.add(name, out.probs)
        if hook is not None:
            hook(tally, model, states, outputs, labels)
    result = tally.result()
    for name, guess in (("unigram", UnigramGuess(text)), ("neighbours", NeighbourGuess(text))):
        scores = guess.score(batches, text.frequent)  # the same masks, scored as the project scores baselines
        result[name] = {part: round(scores[key], 5) for part, key in _KEYS.items()}
    return result


def dev_mix(seed: int, constants: dict) -> dict:
    """On the development split: train, then every mix weight and kNN setting on the development masks."""
    cfg = get_profile(PROFILE, seed=seed, wandb="disabled")
    data = dev_split(prepare_data(cfg), cfg)
    text = data.training_text(cfg)
    memory = ContextCounts.build(text.ids, data.tokenizer)
    with run_folder("dev", seed) as folder:
        stock, seconds = train_model(cfg, data, folder / "run")
    store = knn_store(stock, data, cfg, text.pairs)
    rules = chosen_rules(constants)
    draws = []
    for draw in range(1, DRAWS + 1):
        grids = {name: MixGrid() for name in rules} | {"memory_evidence": MixGrid("strength")}
        knn = KnnGrid()

        def hook(tally, model, states, outputs, labels, grids=grids, knn=knn):
            for name, out in outputs.items():
                grids[name].add(model, out, labels)
            grids["memory_evidence"].add(model, outputs["memory"], labels)
            knn.add(model, knn_probs(states, store, len(data.tokenizer), KNN_TEMPERATURES), labels)

        result = score_draw(stock, validation_batches(data, cfg, cfg.seed + 7777 * draw), text, memory, rules, hook)
        draws.append(result | {"grids": {name: grid.result() for name, grid in grids.items()} | {"knn": knn.result()}})
    return run_header("dev", seed) | {
        "train_seconds": round(seconds, 1),
        "dev_paragraphs": len(data.val_sentences),
        "knn_keys": len(store[1]),
        "draws": draws,
    }


def chosen_rules(constants: dict) -> dict[str, CountingRule]:
    """The memory under the chosen rules (interpolated, backed off) and under the issue's rule, by name."""
    return {
        "memory": CountingRule(**constants["memory_rule"]),
        "memory_backoff": CountingRule(**constants["backoff_rule"]),
        "memory_issue_rule": ISSUE_RULE,
    }


def choose_rules(runs: list[dict]) -> dict:
    """The interpolating and the back-off rule with the best accuracy on the development masks (pooled)."""
    score = lambda rule: statistics.fmean(d[rule_name(rule)]["all"] for r in runs for d in r["draws"])  # noqa: E731
    return {
        "memory_rule": asdict(max(INTERPOLATE_RULES, key=score)),
        "backoff_rule": asdict(max(BACKOFF_RULES, key=score)),
        "rules_chosen_on_seeds": sorted(r["seed"] for r in runs),
    }


def pooled(runs: list[dict], name: str) -> tuple[np.ndarray, np.ndarray]:
    """A mix grid summed over every run and draw: hits (WIDTHS, len(GRID)) and masks (WIDTHS,)."""
    hits = sum(np.array(d["grids"][name]["hits"]) for r in runs for d in r["draws"])
    return hits, sum(np.array(d["grids"][name]["n"]) for r in runs for d in r["draws"])


def choose_weights(runs: list[dict]) -> dict:
    """The model's share in each mix, and the kNN's temperature and share, best on the development masks."""
    best = lambda hits: GRID[int(np.argmax(hits))]  # noqa: E731 (the first of equals: the table's side)
    chosen = {f"{name}_mix_weight": best(pooled(runs, name)[0].sum(0)) for name in RULES}
    chosen["memory_strength"] = STRENGTHS[int(np.argmax(pooled(runs, "memory_evidence")[0].sum(0)))]
    hits, n = pooled(runs, "memory")
    chosen["memory_mix_weights_by_width"] = [
        best(row) if count else chosen["memory_mix_weight"] for row, count in zip(hits, n)
    ]
    knn = sum(np.array(d["grids"]["knn"]) for r in runs for d in r["draws"])  # (temperatures, GRID)
    row, column = np.unravel_index(int(np.argmax(knn)), knn.shape)
    chosen["knn"] = {"temperature": KNN_TEMPERATURES[row], "model_weight": GRID[column], "k": KNN_K}
    return chosen | {"weights_chosen_on_seeds": sorted(r["seed"] for r in runs)}


def train_loo_choice(stock, data: PreparedData, cfg: Config, text: TrainingText, memory, rule) -> dict:
    """The rule that needs no development split: weight and strength chosen on training pairs, each scored by counts
    that leave out its own paragraphs (biased: the model has trained on those very pairs)."""
    tables, grids = paragraph_tables(data, text), {"weight": MixGrid(), "strength": MixGrid("strength")}
    for batch in pair_batches(data, cfg, text.pairs, seed=cfg.seed + 7777 * TRAIN_LOO_DRAW + 1):
        selected = batch["labels"] != IGNORE_INDEX
        out = memory.probabilities(batch["input_ids"], selected, leave_out(batch, tables), rule)
        model = at_masks(stock, batch)[0]
        for grid in grids.values():
            grid.add(model, out, batch["labels"][selected])
    chosen = {by: grid.grid[int(np.argmax(grid.hits.sum(0)))] for by, grid in grids.items()}
    return chosen | {"grids": {by: grid.result() for by, grid in grids.items()}}


def mix_rules(constants: dict, loo: dict) -> dict[str, tuple[str, dict]]:
    """Each mix measured on the validation masks: name -> (the memory's rule, how ``mix`` weighs the model)."""
    return {
        "mix_dev_evidence": ("memory", {"strength": constants["memory_strength"]}),
        "mix_train_loo_evidence": ("memory", {"strength": loo["strength"]}),
        "mix_fixed_0.5": ("memory", {"weight": 0.5}),
        "mix_dev": ("memory", {"weight": constants["memory_mix_weight"]}),
        "mix_dev_by_width": ("memory", {"weight": constants["memory_mix_weights_by_width"]}),
        "mix_train_loo": ("memory", {"weight": loo["weight"]}),
        "mix_backoff_dev": ("memory_backoff", {"weight": constants["memory_backoff_mix_weight"]}),
        "mix_issue_rule_dev": ("memory_issue_rule", {"weight": constants["memory_issue_rule_mix_weight"]}),
    }


def full_run(seed: int, constants: dict) -> dict:
    """Train on every training paragraph; model, baselines, memories and each mix on DRAWS draws of validation masks."""
    cfg = get_profile(PROFILE, seed=seed, wandb="disabled")
    data = prepare_data(cfg)
    text = data.training_text(cfg)
    memory, rules = ContextCounts.build(text.ids, data.tokenizer), chosen_rules(constants)
    with run_folder("full", seed) as folder:
        stock, seconds = train_model(cfg, data, folder / "run")
        facts = file_facts(memory, text, data.tokenizer, folder)
        timing = fill_mask_timing(folder / "run", memory, rules["memory"], constants["memory_strength"])
    loo = train_loo_choice(stock, data, cfg, text, memory, rules["memory"])
    store = knn_store(stock, data, cfg, text.pairs)
    mixes = mix_rules(constants, loo)
    draws = []
    for draw in range(1, DRAWS + 1):
        hindsight = {"memory": MixGrid(), "memory_evidence": MixGrid("strength")}

        def hook(tally, model, states, outputs, labels, hindsight=hindsight):
            for name, (which, how) in mixes.items():
                tally.add(name, mix(model, outputs[which], **how))
            knn = constants["knn"]
            near = knn_probs(states, store, len(data.tokenizer), (knn["temperature"],))[0]
            tally.add("knn_mix", knn["model_weight"] * model + (1 - knn["model_weight"]) * near)
            for grid in hindsight.values():  # every weight on these very masks: the best in hindsight, not a rule
                grid.add(model, outputs["memory"], labels)

        result = score_draw(stock, validation_batches(data, cfg, cfg.seed + 7777 * draw), text, memory, rules, hook)
        draws.append(result | {"grids": {name: grid.result() for name, grid in hindsight.items()}})
    return run_header("full", seed) | {
        "train_seconds": round(seconds, 1),
        "train_loo": loo,
        "memory_file": facts,
        "fill_mask": timing,
        "knn_keys": len(store[1]),
        "draws": draws,
    }


def lever_run(seed: int, constants: dict) -> dict:
    """Train against the memory (its leave-out log-probabilities added to the logits); the sum on validation masks."""
    cfg = get_profile(PROFILE, seed=seed, wandb="disabled")
    data = prepare_data(cfg)
    text = data.training_text(cfg)
    memory, rule = ContextCounts.build(text.ids, data.tokenizer), CountingRule(**constants["memory_rule"])
    lever = {"memory": memory, "tables": paragraph_tables(data, text), "rule": rule}
    with run_folder("lever", seed) as folder:
        stock, seconds = train_model(cfg, data, folder / "run", lever)

    def hook(tally, model, states, outputs, labels):
        # The same sum as in training: log P_model + log P_table (floored as in AgainstMemory).
        tally.add("against_memory", model.clamp_min(1e-30).log() + outputs["memory"].probs.clamp_min(1e-12).log())

    draws = [
        score_draw(stock, validation_batches(data, cfg, cfg.seed + 7777 * draw), text, memory, {"memory": rule}, hook)
        for draw in range(1, DRAWS + 1)
    ]
    return run_header("lever", seed) | {"train_seconds": round(seconds, 1), "draws": draws}


def file_facts(memory: ContextCounts, text: TrainingText, tokenizer, folder: Path) -> dict:
    """The saved table's size, and the median seconds to build it from the training text and to load it."""
    builds, loads = [], []
    for _ in range(5):
        started = time.perf_counter()
        ContextCounts.build(text.ids, tokenizer)
        builds.append(time.perf_counter() - started)
    path = memory.save(folder / MEMORY_FILE)
    for _ in range(5):
        started = time.perf_counter()
        ContextCounts.load(path, tokenizer, memory.text_fingerprint)
        loads.append(time.perf_counter() - started)
    return {
        "bytes": path.stat().st_size,
        "build_seconds": round(statistics.median(builds), 4),
        "load_seconds": round(statistics.median(loads), 4),
        "contexts": len(memory.table.keys),
        "entries": len(memory.table.tokens),
        "training_tokens": int(memory.unigram.sum()),
    }


def fill_mask_timing(
    folder: Path, memory: ContextCounts, rule: CountingRule, strength: float, rounds: int = 50
) -> dict:
    """Median milliseconds of one fill-mask request (Predictor) and of what the memory adds to it (table + mix)."""
    from helpers.inference import encode, mask_logits
    from helpers.serving import Predictor

    predictor = Predictor.from_checkpoint(folder)
    tokenizer = predictor.tokenizer
    texts = [template.format(mask=tokenizer.mask_token) for template, _ in FILL_PROMPTS]
    request, added = [], []
    for _ in range(rounds):
        for text in texts:
            started = time.perf_counter()
            predictor.fill_mask_result(text)
            request.append(time.perf_counter() - started)
            batch = encode(tokenizer, [text], max_length=predictor.max_length)
            probs = mask_logits(predictor.model, batch, tokenizer.mask_token_id)[0].softmax(-1)  # (n_masks, vocab)
            started = time.perf_counter()
            # What a request adds: the table and the mix (the top-k then reads the mix instead of the model's softmax).
            mix(probs, memory.probabilities(batch["input_ids"], rule=rule), strength=strength)
            added.append(time.perf_counter() - started)
    request_ms, added_ms = 1000 * statistics.median(request), 1000 * statistics.median(added)
    return {
        "request_ms": round(request_ms, 3),
        "memory_ms": round(added_ms, 3),
        "share": round(added_ms / request_ms, 3),
    }


# What the figure and the summary show, in this order: (part, name in the JSON, words a learner reads).
SHOWN = (
    ("full", "model", "model alone"),
    ("full", "unigram", "unigram"),
    ("full", "neighbours", "neighbour counting"),
    ("full", "memory", "context counting\n(interpolated)"),
    ("full", "memory_backoff", "context counting\n(backed off)"),
    ("full", "mix_dev_evidence", "model + counts\n(the mix)"),
    ("full", "knn_mix", "model + kNN\nover its vectors"),
    ("lever", "against_memory", "trained against\nthe counts"),
)
SUMMARISED = (
    "model",
    "unigram",
    "neighbours",
    "memory",
    "memory_backoff",
    "memory_issue_rule",
    "mix_dev_evidence",
    "mix_train_loo_evidence",
    "mix_fixed_0.5",
    "mix_dev",
    "mix_dev_by_width",
    "mix_train_loo",
    "mix_backoff_dev",
    "mix_issue_rule_dev",
    "knn_mix",
    "against_memory",
)


def values(report: dict, part: str, name: str, which: str = "all") -> dict[int, list[float]]:
    """Seed -> the per-draw accuracies of ``name`` in the runs of ``part``."""
    return {
        r["seed"]: [d[name][which] for d in r["draws"]]
        for r in report["runs"]
        if r["part"] == part and name in r["draws"][0]
    }


def summary(report: dict) -> str:
    """Mean ± sd over every seed and draw, and the mean of each seed, for every predictor of the full and lever runs."""
    lines = ["| part | predictor | all [MASK] | frequent | rest | per seed (all) |", "|---|---|---|---|---|---|"]
    for part in ("full", "lever"):
        for name in SUMMARISED:
            found = values(report, part, name)
            if not found:
                continue
            cells = []
            for which in ("all", "frequent", "rest"):
                draws = [v for seed in values(report, part, name, which).values() for v in seed]
                spread = statistics.stdev(draws) if len(draws) > 1 else 0.0
                cells.append(f"{statistics.fmean(draws):.3f} ± {spread:.3f}")
            seeds = " / ".join(f"{statistics.fmean(v):.3f}" for _, v in sorted(found.items()))
            lines.append(f"| {part} | {name} | {' | '.join(cells)} | {seeds} |")
    return "\n".join(lines)


def plot(report: dict, figure: Path = FIGURE) -> None:
    """Three panels (all / frequent / rest): a bar per predictor, mean ± sd over seeds and draws, a dot per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [(part, name, words) for part, name, words in SHOWN if values(report, part, name)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2), sharey=False)
    titles = {
        "all": "every [MASK]",
        "frequent": f"the {FREQUENT_TOKENS} most frequent tokens",
        "rest": "the other tokens (rare words)",
    }
    colours = plt.cm.tab10.colors
    for ax, (which, title) in zip(axes, titles.items()):
        for x, (part, name, _) in enumerate(shown):
            per_seed = values(report, part, name, which)
            draws = [v for seed in per_seed.values() for v in seed]
            spread = statistics.stdev(draws) if len(draws) > 1 else 0.0
            ax.bar(x, statistics.fmean(draws), yerr=spread, color=colours[x % 10], alpha=0.8, capsize=3)
            ax.annotate(
                f"{statistics.fmean(draws):.3f}",
                (x, statistics.fmean(draws) + spread),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 2),
                textcoords="offset points",
            )
            ax.plot([x] * len(per_seed), [statistics.fmean(v) for v in per_seed.values()], "k.", markersize=4)
        ax.set_xticks(range(len(shown)), [words for _, _, words in shown], rotation=60, ha="right", fontsize=8)
        ax.set_title(f"held-out MLM accuracy: {title}", fontsize=10)
    axes[0].set_ylabel("held-out accuracy at [MASK]")
    fig.suptitle(
        "What counting adds to the model (default profile, held-out pairs): bar = mean ± sd over 3 seeds × 5 draws "
        "of masks, dot = one seed's mean",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(figure, dpi=100)
    plt.close(fig)


def merge(report: dict, runs: list[dict], out: Path) -> None:
    """Put ``runs`` into the report (a rerun of a part and seed replaces the old one) and write it."""
    fresh = {(r["part"], r["seed"]) for r in runs}
    report["runs"] = [r for r in report["runs"] if (r["part"], r["seed"]) not in fresh] + runs
    report["machine"] = machine()
    out.write_text(json.dumps(report, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    global PROFILE, KEEP
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts", nargs="+", default=["dev", "full", "lever"], choices=["dev", "full", "lever", "plot"]
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared: 1)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--profile", default=PROFILE, help="tiny: a smoke run of every part (write it to another --out)"
    )
    parser.add_argument("--figure", type=Path, default=FIGURE)
    parser.add_argument("--keep", type=Path, help="keep every run's checkpoint in KEEP/<part>-<seed>")
    args = parser.parse_args(argv)
    PROFILE, KEEP = args.profile, args.keep
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" after every training
    report = json.loads(args.out.read_text()) if args.out.exists() else {"runs": [], "constants": {}}
    started = time.perf_counter()
    if "dev" in args.parts:
        rules = [dev_rules(seed) for seed in args.seeds]
        report["constants"] = choose_rules(rules)
        merge(report, rules, args.out)
        for seed in args.seeds:
            merge(report, [dev_mix(seed, report["constants"])], args.out)
            print(f"dev seed {seed} done ({time.perf_counter() - started:.0f} s)", flush=True)
        report["constants"] |= choose_weights([r for r in report["runs"] if r["part"] == "dev"])
        merge(report, [], args.out)
    for part, run in (("full", full_run), ("lever", lever_run)):
        if part not in args.parts:
            continue
        if "memory_mix_weight" not in report.get("constants", {}):
            parser.error(f"--parts {part} needs the constants that --parts dev chooses; run that first.")
        for seed in args.seeds:
            merge(report, [run(seed, report["constants"])], args.out)
            print(f"{part} seed {seed} done ({time.perf_counter() - started:.0f} s)", flush=True)
    if any(r["part"] == "full" for r in report["runs"]):
        plot(report, args.figure)
    print(json.dumps(report.get("constants", {}), indent=1))
    print(summary(report))
    print(f"Wrote {args.out} and {args.figure} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
