"""A run's scale beside the bert-base profile and BERT-base as published: parameters, words, steps, tokens, compute.

A figure means little alone, and so does a run's size: notebook 04 sets this run beside the bert-base profile (which
continues training bert-base-uncased, already pretrained, on this book) and the pretraining the paper did, so a
learner sees how far a laptop run is from BERT-base.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from transformers import BertConfig, BertForPreTraining

from helpers.config import Config, get_profile
from helpers.dataset import PreparedData, prepare_data
from helpers.model import scratch_config
from helpers.tokens import tokenize_pairs

# BERT-base as published (Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
# Understanding", section 3.1 and appendix A.2): BooksCorpus (800M words) and English Wikipedia (2,500M words);
# 1,000,000 steps of 256 sequences of up to 512 tokens, "256 sequences * 512 tokens = 128,000 tokens/batch".
BERT_BASE_WORDS = 800_000_000 + 2_500_000_000
BERT_BASE_STEPS = 1_000_000
BERT_BASE_BATCH = 256
BERT_BASE_TOKENS_PER_BATCH = 128_000
# The bert-base profile does not pretrain: it continues from bert-base-uncased, which BERT-base's column trained.
PROFILE_COLUMN = "bert-base profile (continues bert-base-uncased; Colab GPU)"
SCALE_ROWS = (
    "parameters",
    "words of training text",
    "optimizer steps × batch",
    "tokens seen (real, not padding, all epochs)",
    "training compute in FLOPs (≈ 6 · N · D)",
)


def parameter_count(config: BertConfig) -> int:
    """Parameters of a BertForPreTraining of ``config``, built on the meta device: no memory, no download."""
    with torch.device("meta"):
        model = BertForPreTraining(config)
    return sum(p.numel() for p in model.parameters())  # the decoder shares the word-embedding matrix: counted once


def run_scale(cfg: Config, data: PreparedData, steps: int, max_length: int) -> dict[str, int]:
    """Words of the training paragraphs, and the real tokens of the pairs that ``steps`` optimizer steps trained on."""
    pairs = data.train_pairs(cfg, 0)
    per_epoch = math.ceil(len(pairs) / cfg.batch_size)  # optimizer steps per epoch, one process
    # Unpadded, so every token counted is real. Epoch 1's count stands for every epoch: resampled pairs come in the
    # same number each epoch, and their lengths differ little (default profile: 3.00 M tokens this way, 3.02 M
    # tokenizing all 24 epochs, which took 13 s on 2 cores). A last epoch cut short (max_steps) counts in part.
    epoch_tokens = sum(map(len, tokenize_pairs(data.tokenizer, pairs, max_length)["input_ids"]))
    words = sum(len(data.paragraphs[i].split()) for i in data.train_sentences)
    return {"words": words, "steps": steps, "batch": cfg.batch_size, "tokens": round(epoch_tokens * steps / per_epoch)}


def readable(number: float, scientific: bool = False) -> str:
    """'950', '27.4 k', '4.1 M', '3.3 B'; '1.2 × 10^15' past a trillion, or always when ``scientific``."""
    if scientific or abs(number) >= 1e12:
        exponent = math.floor(math.log10(abs(number))) if number else 0
        return f"{number / 10**exponent:.1f} × 10^{exponent}"
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(number) >= size:
            return f"{number / size:.1f} {unit}"
    return f"{number:,.0f}"


def scale_table(cfg: Config, data: PreparedData, steps: int) -> pd.DataFrame:
    """This run (``steps`` optimizer steps), the bert-base profile and BERT-base, side by side; see ``.attrs``.

    ``.attrs["numbers"]`` holds the unformatted figures per column, ``.attrs["notes"]`` the footnotes.
    """
    this = run_scale(cfg, data, steps, cfg.max_length)
    this["parameters"] = parameter_count(
        scratch_config(cfg, data.tokenizer) if cfg.model == "scratch" else BertConfig.from_pretrained(cfg.model)
    )
    # bert-base-uncased's tokenizer is on the hub, out of reach offline: its pairs come from the same corpus and
    # pair functions (they need no tokenizer), their tokens from this run's tokenizer at the profile's max_length.
    base_cfg = get_profile("bert-base", corpus=cfg.corpus)
    base_data = prepare_data(base_cfg, tokenizer=data.tokenizer)
    base_steps = math.ceil(len(base_data.train_pairs(base_cfg, 0)) / base_cfg.batch_size) * base_cfg.epochs
    profile = run_scale(base_cfg, base_data, base_steps, base_cfg.max_length)
    profile["parameters"] = parameter_count(BertConfig())  # BertConfig's defaults are bert-base-uncased's shape
    published = {
        "parameters": profile["parameters"],
        "words": BERT_BASE_WORDS,
        "steps": BERT_BASE_STEPS,
        "batch": BERT_BASE_BATCH,
        "tokens": BERT_BASE_STEPS * BERT_BASE_TOKENS_PER_BATCH,
    }
    columns = {
        f"this run (profile {cfg.profile})": this,
        PROFILE_COLUMN: profile,
        "BERT-base (Devlin et al., 2019)": published,
    }
    for figures in columns.values():
        figures["flops"] = 6 * figures["parameters"] * figures["tokens"]  # ≈ 2 forward + 4 backward per weight, token
    table = pd.DataFrame(
        {
            name: [
                readable(f["parameters"]),
                readable(f["words"]),
                f"{f['steps']:,} × {f['batch']}",
                readable(f["tokens"]),
                readable(f["flops"], scientific=True),
            ]
            for name, f in columns.items()
        },
        index=list(SCALE_ROWS),
    )
    table.attrs["numbers"] = {name: dict(figures) for name, figures in columns.items()}
    table.attrs["notes"] = [
        "bert-base profile: it starts from bert-base-uncased, already pretrained as in the last column, and continues "
        "on this book; its figures count that continued training only.",
        f"bert-base profile: its pairs are the profile's own; its tokens are estimated with this run's tokenizer "
        f"({len(data.tokenizer):,} tokens) capped at {base_cfg.max_length}, as bert-base-uncased's tokenizer "
        f"cannot load offline.",
        "BERT-base: parameters counted on BertConfig()'s shape; tokens are the paper's 128,000 per batch, which "
        "counts every position of a 512-token sequence (90% of the steps used 128), so it is an upper bound.",
        "N counts each parameter once; D is the real tokens seen; 6 · N · D is the usual estimate of training "
        "FLOPs (2 per parameter and token forward, 4 backward).",
    ]
    return table
