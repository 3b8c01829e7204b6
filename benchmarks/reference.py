"""The tutorial's reference recipe and the project's training path, as timed training loops.

Every path trains the same BERT shape (random init, bert-base-uncased's vocabulary size) on the same
NSP pairs with batch size 16; only the way batches are built and the loss is computed differs.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
from torch.utils.data import DataLoader
from transformers import BertConfig, BertForPreTraining, PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from helpers.config import Config, get_profile
from helpers.dataset import MeditationsDataset, make_loader, prepare_data
from helpers.masking import IGNORE_INDEX, mask_tokens
from helpers.model import PretrainingModel, scratch_config
from helpers.pairs import Pair
from helpers.serving import Predictor
from helpers.tokens import tokenize_pairs
from helpers.train import make_optimizer

# bert-base-uncased's vocabulary size: the MLM decoder is (hidden -> 30,522) whatever tokenizer feeds it.
VOCAB_SIZE = 30522
BATCH_SIZE = 16
MAX_LENGTH = 256
REFERENCE_LR = 5e-5  # the tutorial's AdamW learning rate

# Model shapes: the tiny and default profiles' own, read from them (tiny only for the quick setting the test runs),
# and BERT-base's, which BertConfig's defaults are.
SHAPE = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")
SIZES: dict[str, dict[str, int]] = {
    **{name: {key: getattr(get_profile(name), key) for key in SHAPE} for name in ("tiny", "default")},
    "bert-base": {key: getattr(BertConfig(), key) for key in SHAPE},
}


@dataclass(frozen=True)
class Variant:
    """One way to train: how batches are padded and grouped, where the MLM head runs, compiled or not."""

    name: str
    description: str
    pad_to_max_length: bool  # every pair padded to max_length (the reference) vs per-batch padding
    bucket_by_length: bool = False  # batches of similar length (helpers.dataset.BucketSampler)
    masked_head_only: bool = False  # helpers.model.PretrainingModel instead of the stock forward
    compile: bool = False  # torch.compile of the training module
    attn_implementation: str = "sdpa"


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "reference",
            "tutorial recipe: pad to max_length, masks drawn once, labels = input_ids (incl. PAD), "
            "stock BertForPreTraining forward (MLM head on every position), plain AdamW",
            pad_to_max_length=True,
        ),
        Variant(
            "dynamic_padding",
            "make_loader without bucketing (pad to the batch's longest pair, fresh 80/10/10 masks), stock forward",
            pad_to_max_length=False,
        ),
        Variant(
            "dynamic_padding_bucketing",
            "make_loader with bucket_by_length, stock forward",
            pad_to_max_length=False,
            bucket_by_length=True,
        ),
        Variant(
            "fast",
            "the project's path: make_loader with bucket_by_length + PretrainingModel (MLM head on "
            "masked positions only), SDPA attention",
            pad_to_max_length=False,
            bucket_by_length=True,
            masked_head_only=True,
        ),
        Variant(
            "fast_compiled",
            "the fast path under torch.compile (inductor, default mode)",
            pad_to_max_length=False,
            bucket_by_length=True,
            masked_head_only=True,
            compile=True,
        ),
        Variant(
            "fast_eager_attention",
            "the fast path with eager attention instead of SDPA",
            pad_to_max_length=False,
            bucket_by_length=True,
            masked_head_only=True,
            attn_implementation="eager",
        ),
    )
}


def benchmark_config(size: str, max_length: int = MAX_LENGTH) -> Config:
    """The bert-base profile's data settings ('.' splitter, one pair per paragraph) with a model of ``size``."""
    return get_profile(
        "bert-base", model="scratch", vocab_size=VOCAB_SIZE, max_length=max_length, batch_size=BATCH_SIZE, **SIZES[size]
    )


def benchmark_data(max_length: int = MAX_LENGTH) -> tuple[PreTrainedTokenizerBase, list[Pair]]:
    """The real corpus's first-epoch training pairs and a scratch WordPiece tokenizer (the hub is unreachable).

    The scratch tokenizer learns only ~3,800 tokens from so small a corpus, but pairs come out at ~78
    tokens on average, close to bert-base-uncased's ~75; the model's vocabulary is 30,522 either way.
    """
    cfg = benchmark_config("default", max_length)
    data = prepare_data(cfg)
    return data.tokenizer, data.train_pairs(cfg, 0)


def build_model(size: str, tokenizer: PreTrainedTokenizerBase, variant: Variant, seed: int = 0) -> BertForPreTraining:
    """A randomly initialised BertForPreTraining of ``size`` with a 30,522-token vocabulary."""
    torch.manual_seed(seed)
    if variant.name == "reference":
        # The tutorial's model: a stock BertConfig (its default attention is SDPA in transformers 5).
        config = BertConfig(vocab_size=VOCAB_SIZE, **SIZES[size])
    else:
        config = scratch_config(benchmark_config(size), tokenizer)  # attn_implementation="sdpa"
        config.vocab_size = VOCAB_SIZE
        config._attn_implementation = variant.attn_implementation
    return BertForPreTraining(config)


def reference_dataset(
    tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Pair], max_length: int, seed: int
) -> MeditationsDataset:
    """Every pair padded to ``max_length``; one set of masks drawn up front; labels are a clone of input_ids."""
    enc = tokenize_pairs(tokenizer, pairs, max_length, pad_to_max_length=True)
    input_ids = torch.tensor(enc["input_ids"])  # (n_pairs, max_length)
    masked, labels = mask_tokens(input_ids, tokenizer, mode="reference", generator=torch.Generator().manual_seed(seed))
    return MeditationsDataset(
        {
            "input_ids": masked,
            "token_type_ids": torch.tensor(enc["token_type_ids"]),
            "attention_mask": torch.tensor(enc["attention_mask"]),
            "labels": labels,
            "next_sentence_label": torch.tensor(enc["next_sentence_label"]),
        }
    )


def batches(
    variant: Variant, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Pair], max_length: int, seed: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches, epoch after epoch (epoch ``e`` shuffles with ``seed + e``)."""
    cfg = benchmark_config("default", max_length)
    cfg.bucket_by_length = variant.bucket_by_length
    if variant.pad_to_max_length:
        dataset = reference_dataset(tokenizer, pairs, max_length, seed)  # masks once, reused every epoch

        def make(s: int) -> DataLoader:
            return DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, generator=torch.Generator().manual_seed(s))
    else:
        dataset = MeditationsDataset.from_pairs(tokenizer, pairs, max_length)

        def make(s: int) -> DataLoader:
            return make_loader(dataset, tokenizer, cfg, shuffle=True, seed=s)

    epoch = 0
    while True:
        yield from make(seed + epoch)
        epoch += 1


MODEL_KEYS = ("input_ids", "token_type_ids", "attention_mask", "labels", "next_sentence_label")


def make_step(variant: Variant, model: BertForPreTraining, total_steps: int) -> Callable[[dict], float]:
    """One optimizer step (forward, backward, step) on a batch; returns the loss."""
    if variant.name == "reference":
        optimizer = torch.optim.AdamW(model.parameters(), lr=REFERENCE_LR)
        model.train()

        def reference_step(batch: dict) -> float:
            optimizer.zero_grad()
            loss = model(**{k: batch[k] for k in MODEL_KEYS}).loss  # MLM over all (batch, max_length) positions + NSP
            loss.backward()
            optimizer.step()
            return loss.item()

        return reference_step

    # The project's step (helpers.train): AdamW with decay groups, warm-up schedule, clipping.
    cfg = benchmark_config("default")
    trained = PretrainingModel(model).train()
    optimizer = make_optimizer(trained, cfg)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    if variant.masked_head_only:
        forward = torch.compile(trained) if variant.compile else trained
        compute = lambda batch: forward(**batch)["loss"]  # noqa: E731 - MLM head on labelled positions only
    else:
        compute = lambda batch: model(**{k: batch[k] for k in MODEL_KEYS}).loss  # noqa: E731 - head everywhere

    def project_step(batch: dict) -> float:
        loss = compute(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return project_step


def current_rss_mb() -> float:
    """This process's resident memory now, in MiB (Linux /proc)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class TrainRun:
    """One timed run of a variant: totals over the measured steps (warm-up excluded)."""

    variant: str
    size: str
    seed: int
    steps: int
    warmup_steps: int
    seconds: float
    warmup_seconds: float
    pairs: int
    real_tokens: int
    positions: int  # (batch, seq_len) positions the model processed, padding included
    loss_positions: int  # positions the MLM loss averaged over
    step_seconds: list[float]
    cpu_seconds: float  # process CPU time over the timed steps; / seconds ~ cores actually got
    final_loss: float
    attn_implementation: str
    n_parameters: int
    torch_threads: int
    rss_before_mb: float
    peak_rss_mb: float
    cuda_peak_mb: float | None

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.real_tokens / self.seconds

    def to_dict(self) -> dict:
        return asdict(self) | {
            "pairs_per_s": self.pairs_per_s,
            "tokens_per_s": self.tokens_per_s,
            "padding_efficiency": self.real_tokens / self.positions,
            "cpu_utilisation": self.cpu_seconds / self.seconds,
        }


def train_run(
    variant: Variant,
    size: str,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Pair],
    steps: int,
    warmup_steps: int,
    seed: int,
    max_length: int = MAX_LENGTH,
) -> TrainRun:
    """Fresh model and optimizer; ``warmup_steps`` untimed steps, then ``steps`` timed optimizer steps."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rss_before = current_rss_mb()
    model = build_model(size, tokenizer, variant, seed).to(device)
    step = make_step(variant, model, warmup_steps + steps)
    # Warm-up batches come from their own shuffle, so the timed steps start a fresh epoch: with as many
    # steps as an epoch has batches, every path trains on exactly the same pairs.
    warm = batches(variant, tokenizer, pairs, max_length, seed + 10_000)
    started = time.perf_counter()
    for _ in range(warmup_steps):
        step({k: v.to(device) for k, v in next(warm).items()})
    warmup_seconds = time.perf_counter() - started
    timed = batches(variant, tokenizer, pairs, max_length, seed)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    step_seconds, n_pairs, real, positions, loss_positions, loss = [], 0, 0, 0, 0, float("nan")
    cpu_started = time.process_time()
    for _ in range(steps):
        t0 = time.perf_counter()
        batch = {k: v.to(device) for k, v in next(timed).items()}  # collation (padding, masking) is timed too
        loss = step(batch)  # .item() inside waits for the device
        step_seconds.append(time.perf_counter() - t0)
        n_pairs += batch["input_ids"].shape[0]
        real += int(batch["attention_mask"].sum())
        positions += batch["input_ids"].numel()
        loss_positions += int((batch["labels"] != IGNORE_INDEX).sum())
    cpu_seconds = time.process_time() - cpu_started
    return TrainRun(
        variant=variant.name,
        size=size,
        seed=seed,
        steps=steps,
        warmup_steps=warmup_steps,
        seconds=sum(step_seconds),
        warmup_seconds=warmup_seconds,
        pairs=n_pairs,
        real_tokens=real,
        positions=positions,
        loss_positions=loss_positions,
        step_seconds=step_seconds,
        cpu_seconds=cpu_seconds,
        final_loss=loss,
        attn_implementation=model.config._attn_implementation,
        n_parameters=sum(p.numel() for p in model.parameters()),
        torch_threads=torch.get_num_threads(),
        rss_before_mb=rss_before,
        peak_rss_mb=peak_rss_mb(),
        cuda_peak_mb=torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between order statistics."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(ms: list[float]) -> dict[str, float]:
    """p50, p95, mean, min and max of latencies in milliseconds."""
    return {
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "mean_ms": statistics.fmean(ms),
        "min_ms": min(ms),
        "max_ms": max(ms),
    }


def latencies(fns: list, calls: int, warmup_calls: int, raw: bool = False) -> dict[str, float] | list[float]:
    """Call ``fns`` in turn, ``warmup_calls`` untimed then ``calls`` timed: their summary (or each one's ms)."""
    for k in range(warmup_calls):
        fns[k % len(fns)]()
    ms = []
    for k in range(calls):
        started = time.perf_counter()
        fns[k % len(fns)]()
        ms.append((time.perf_counter() - started) * 1000)
    return ms if raw else summary(ms)


def memory_latency(calls: int, warmup_calls: int, seed: int = 0) -> dict:
    """A fill-mask request as the demo serves the default profile: with its memory beside the model, and without.

    The default profile's shape and its own tokenizer (random weights: a request's cost does not depend on them), the
    memory counted from its training paragraphs; one [MASK] in each held-out validation sentence, top-5, the two
    predictors called in turn so that a busy moment slows both alike.
    """
    from transformers import set_seed

    from helpers.model import load_model

    cfg = get_profile("default", wandb="disabled")
    data = prepare_data(cfg)
    text = data.training_text(cfg)
    set_seed(seed)
    model = load_model(cfg, data.tokenizer, text.unigram).eval()
    alone = Predictor(model, data.tokenizer, cfg.max_length)
    remembering = Predictor(
        model, data.tokenizer, cfg.max_length, memory=text.memory, memory_strength=cfg.memory_strength
    )
    texts = [_one_mask(p.sentence_a, data.tokenizer.mask_token) for p in data.val_pairs]
    both = [
        fn for t in texts for fn in (lambda t=t: alone.fill_mask_result(t), lambda t=t: remembering.fill_mask_result(t))
    ]
    ms = latencies(both, 2 * calls, 2 * warmup_calls, raw=True)
    out = {"calls": calls, "vocabulary": len(data.tokenizer), "torch_threads": torch.get_num_threads()}
    out |= {"model_alone": summary(ms[0::2]), "with_memory": summary(ms[1::2])}
    return out | {"added": out["with_memory"]["p50_ms"] / out["model_alone"]["p50_ms"] - 1}


def _one_mask(sentence: str, mask: str) -> str:
    words = sentence.split()
    words[len(words) // 2] = mask  # one [MASK] in the middle of a real sentence
    return " ".join(words)


def inference_latency(
    size: str,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Pair],
    calls: int,
    warmup_calls: int,
    max_length: int = MAX_LENGTH,
    seed: int = 0,
) -> dict:
    """p50/p95 latency of Predictor.predict_nsp and .fill_mask (random weights, real sentences)."""
    model = build_model(size, tokenizer, VARIANTS["fast"], seed)
    predictor = Predictor(model, tokenizer, max_length)
    mask = tokenizer.mask_token

    def masked(sentence: str) -> str:
        return _one_mask(sentence, mask)

    @torch.no_grad()
    def nsp_without_mlm_head(a: str, b: str) -> torch.Tensor:
        # Prototype: what predict_nsp costs if it skips the (seq_len, 30,522) MLM logits it never reads.
        enc = tokenizer(a, b, truncation="longest_first", max_length=predictor.max_length, return_tensors="pt")
        pooled = model.bert(**enc, return_dict=False)[1]  # (1, hidden)
        return model.cls.seq_relationship(pooled).softmax(-1)  # (1, 2)

    calls_by_method = {
        "predict_nsp": [lambda p=p: predictor.predict_nsp(p.sentence_a, p.sentence_b) for p in pairs],
        "fill_mask": [lambda p=p: predictor.fill_mask(masked(p.sentence_a), top_k=5) for p in pairs],
        "nsp_without_mlm_head": [lambda p=p: nsp_without_mlm_head(p.sentence_a, p.sentence_b) for p in pairs],
    }
    out = {"size": size, "calls": calls, "warmup_calls": warmup_calls, "torch_threads": torch.get_num_threads()}
    out |= {method: latencies(fns, calls, warmup_calls) for method, fns in calls_by_method.items()}
    out["peak_rss_mb"] = peak_rss_mb()
    out["pid"] = os.getpid()
    return out
