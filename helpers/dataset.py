"""From corpus to batches: ``MeditationsDataset``, the prepared data of a run, and its DataLoaders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import PreTrainedTokenizerBase

from helpers.baselines import TrainingText
from helpers.config import Config
from helpers.corpus import load_paragraphs
from helpers.masking import masking_rule
from helpers.pairs import Pair, make_pairs, split_corpus, train_val_split
from helpers.tokens import load_tokenizer, tokenize_pairs

# Validation batches are of a fixed size: their masks then depend on the seed alone, so runs of any batch size compare.
VAL_BATCH_SIZE = 64


class MeditationsDataset(Dataset):
    """Tokenized NSP pairs; item ``i`` is a dict of one pair's features (the name the tutorial uses)."""

    def __init__(self, encodings: dict[str, Sequence]):
        lengths = {len(values) for values in encodings.values()}
        if len(lengths) != 1:
            raise ValueError("Every feature needs one value per pair.")
        self.encodings = encodings

    def __len__(self) -> int:
        return len(self.encodings["input_ids"])

    def __getitem__(self, index: int) -> dict:
        return {key: values[index] for key, values in self.encodings.items()}

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.encodings["input_ids"]]

    @classmethod
    def from_pairs(
        cls, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Pair], max_length: int, pad_to_max_length: bool = False
    ) -> MeditationsDataset:
        return cls(tokenize_pairs(tokenizer, pairs, max_length, pad_to_max_length))


@dataclass
class PreparedData:
    """Everything a run needs before the model: sentences, the split, pairs and the tokenizer."""

    paragraphs: list[str]
    sentences: dict[int, list[str]]
    train_sentences: dict[int, list[str]]
    val_sentences: dict[int, list[str]]
    val_pairs: list[Pair]
    tokenizer: PreTrainedTokenizerBase

    def train_pairs(self, cfg: Config, epoch: int = 0) -> list[Pair]:
        """The pairs of one epoch: new ones each epoch when ``cfg.resample_pairs``."""
        seed = cfg.seed + 1000 * (epoch if cfg.resample_pairs else 0)
        return make_pairs(
            self.train_sentences, cfg.pairs_per_paragraph, seed=seed, max_segment_sentences=cfg.max_segment_sentences
        )

    def training_text(self, cfg: Config) -> TrainingText:
        """The training paragraphs, their tokens and epoch 1's pairs: what the baselines and the unigram start count."""
        texts = [" ".join(sentences) for sentences in self.train_sentences.values()]
        return TrainingText(self.tokenizer, texts, self.train_pairs(cfg, 0))

    def summary(self) -> str:
        n_train = sum(len(v) >= 2 for v in self.train_sentences.values())
        return (
            f"{len(self.paragraphs)} paragraphs, {sum(map(len, self.sentences.values()))} sentences; "
            f"{len(self.train_sentences)} training paragraphs ({n_train} with 2+ sentences), "
            f"{len(self.val_sentences)} validation paragraphs; {len(self.val_pairs)} validation pairs; "
            f"tokenizer with {len(self.tokenizer)} tokens"
        )


def prepare_data(cfg: Config, tokenizer: PreTrainedTokenizerBase | None = None) -> PreparedData:
    """Corpus -> sentences -> paragraph split -> validation pairs, and the tokenizer (trained when 'scratch')."""
    paragraphs = load_paragraphs(cfg.corpus, cfg.max_paragraphs)
    sentences = split_corpus(paragraphs, cfg.splitter)
    train_ids, val_ids = train_val_split(len(paragraphs), cfg.val_fraction, cfg.seed)
    train_sentences = {i: sentences[i] for i in train_ids}
    val_sentences = {i: sentences[i] for i in val_ids}
    # The validation set is fixed: every consecutive position once as "follows" and once as "random".
    val_pairs = make_pairs(
        val_sentences, exhaustive=True, seed=cfg.seed + 1, max_segment_sentences=cfg.max_segment_sentences
    )
    if tokenizer is None:
        # The scratch tokenizer learns from training paragraphs only, so validation text stays unseen.
        tokenizer = load_tokenizer(cfg.model, [paragraphs[i] for i in train_ids], cfg.vocab_size)
    return PreparedData(paragraphs, sentences, train_sentences, val_sentences, val_pairs, tokenizer)


class BucketSampler(Sampler[int]):
    """Indices in batches of similar length, the batches in random order (bucketing for less padding)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, generator: torch.Generator, window_batches: int = 50):
        self.lengths, self.batch_size, self.generator = list(lengths), batch_size, generator
        self.window = window_batches * batch_size  # a multiple of batch_size: only the very last batch can be short

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        batches = []
        for start in range(0, len(order), self.window):
            # Sorting a whole window (not transformers' LengthGroupedSampler's quarter-of-the-data groups)
            # is what keeps padding low on a corpus this small; ties keep their random order.
            window = sorted(order[start : start + self.window], key=self.lengths.__getitem__, reverse=True)
            batches += [window[i : i + self.batch_size] for i in range(0, len(window), self.batch_size)]
        short = [batches.pop()] if batches and len(batches[-1]) < self.batch_size else []
        shuffled = [batches[k] for k in torch.randperm(len(batches), generator=self.generator).tolist()]
        # The short batch goes last, so the DataLoader's batch_size cuts exactly these batches.
        return iter([index for batch in shuffled + short for index in batch])


def make_loader(
    dataset: MeditationsDataset,
    tokenizer: PreTrainedTokenizerBase,
    cfg: Config,
    shuffle: bool,
    seed: int = 0,
    pad_to_multiple_of: int | None = None,
    mask_seed: int | None = None,
    validation: bool = False,
) -> DataLoader:
    """Dynamic padding and masks by the config's rule, drawn per batch; similar lengths when ``cfg.bucket_by_length``.

    ``seed`` fixes the order of the pairs and, unless ``mask_seed`` is given, the masks drawn for them;
    ``validation`` masks by the validation rule in batches of VAL_BATCH_SIZE.
    """
    collator = masking_rule(cfg, validation).collator(
        tokenizer, seed if mask_seed is None else mask_seed, pad_to_multiple_of
    )
    batch_size = VAL_BATCH_SIZE if validation else cfg.batch_size
    generator = torch.Generator().manual_seed(seed)
    if shuffle and cfg.bucket_by_length:
        # Shuffles, sorts by length inside windows of 50 batches, then shuffles the batches.
        sampler = BucketSampler(dataset.lengths, batch_size, generator)
        # The loader gets the generator too: creating an iterator then draws its base seed from it, not from
        # the global RNG (which drives dropout), so a resumed run sees the very same random stream.
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collator, generator=generator)
    if validation:
        # A fixed order, shortest pairs first: each batch pads little (0.91 of the positions real tokens, against 0.51
        # in the pairs' own order), which halves the time every epoch's measurement takes; the masks still depend on
        # the seed alone.
        order = sorted(range(len(dataset)), key=dataset.lengths.__getitem__)
        return DataLoader(dataset, batch_size=batch_size, sampler=order, collate_fn=collator, generator=generator)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=collator)


def validation_batches(
    data: PreparedData, cfg: Config, pairs: Sequence[Pair] | None = None, seed: int | None = None
) -> list[dict]:
    """The validation pairs (or ``pairs``) in batches, masked by the validation rule (``seed``: the config's)."""
    val_set = MeditationsDataset.from_pairs(data.tokenizer, data.val_pairs if pairs is None else pairs, cfg.max_length)
    return list(
        make_loader(
            val_set, data.tokenizer, cfg, shuffle=False, seed=cfg.seed if seed is None else seed, validation=True
        )
    )


def padding_counts(batch: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(real tokens, processed positions) of one batch: its attention_mask's ones, and all its entries."""
    return int(batch["attention_mask"].sum()), batch["attention_mask"].numel()


def padding_efficiency(batches: Sequence[dict[str, torch.Tensor]]) -> float:
    """Real tokens / processed positions over ``batches`` (1.0 = no padding)."""
    counts = [padding_counts(b) for b in batches]
    return sum(real for real, _ in counts) / max(sum(total for _, total in counts), 1)
