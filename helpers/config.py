"""One config dataclass, three named profiles, and a command line built from its fields."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

# Paths resolve from the repository root, never from the notebook's folder.
ROOT = Path(__file__).resolve().parent.parent


# --lr-schedule -> the name transformers.get_scheduler knows it by (each warms up first). "wsd" (warm-up, stable,
# decay) holds the peak and falls linearly to 0 over the last --decay-ratio of the steps.
LR_SCHEDULES = {
    "linear": "linear",
    "cosine": "cosine",
    "constant": "constant_with_warmup",
    "wsd": "warmup_stable_decay",
}
OUTPUT_BIAS_INITS = ("zero", "unigram")


def option(default: Any, help: str) -> Any:
    """A Config field whose ``help`` is its command-line option's."""
    return field(default=default, metadata={"help": help})


class ConfigError(ValueError):
    """A bad option value: the message says which option and what to do."""


@dataclass
class Config:
    """Every knob of a run; each field is also a ``--field-name`` command-line option."""

    profile: str = option("default", "named profile the other values came from")
    # --- data ---
    corpus: str | None = option(
        None, "plain text, one paragraph per line (default: $MEDITATIONS_CORPUS, else the book)"
    )
    # 'period' is the tutorial's split on '.'; 'smart' keeps ?!; and abbreviations such as "Mr." inside a sentence.
    splitter: str = option("smart", "sentence splitter: 'period' (the tutorial's) or 'smart'")
    pairs_per_paragraph: int = option(1, "NSP pairs drawn from each training paragraph per epoch")
    # 1 is the tutorial's single sentences; BERT packed spans of several sentences up to its length.
    max_segment_sentences: int = option(1, "sentences per segment, up to")
    resample_pairs: bool = option(True, "draw new pairs (and new negatives) every epoch")
    val_fraction: float = option(0.2, "share of paragraphs held out for validation")
    max_paragraphs: int | None = option(None, "use only the first N paragraphs (for quick runs)")
    max_length: int = option(256, "tokens per pair after truncation (8 up to the model's limit, 512 for BERT)")
    bucket_by_length: bool = option(True, "group pairs of similar length into batches (less padding)")
    # --- masking ---
    mlm_probability: float = option(0.15, "share of tokens selected for the MLM objective")
    mask_replace_prob: float = option(0.8, "share of selected tokens replaced by [MASK]")
    random_replace_prob: float = option(0.1, "share of selected tokens replaced by a random token")
    # Validation masks are fixed by the seed, and every selected token is a [MASK]: what fill-mask asks.
    val_mlm_probability: float = option(0.15, "share of tokens masked for validation, every one a [MASK]")
    # --- model ---
    # 'scratch' trains a WordPiece tokenizer on the corpus and builds a small BERT, offline.
    model: str = option("scratch", "'scratch', a hub id or a local checkpoint folder")
    vocab_size: int = option(8000, "scratch tokenizer vocabulary size")
    hidden_size: int = option(256, "scratch model width")
    num_hidden_layers: int = option(4, "scratch model depth")
    num_attention_heads: int = option(4, "scratch model attention heads")
    intermediate_size: int = option(1024, "scratch model feed-forward width")
    position_init: str = option("random", "scratch position table at the start: 'random' (BERT's) or 'sinusoidal'")
    # Sinusoids there, word and segment embeddings at zero; 0 is BERT's shared random start.
    position_dims: int = option(0, "scratch model's embedding dimensions that positions own at the start")
    # Head h of the neighbour layer starts attending from token i to i + offset h; a value that starts with '-' goes
    # after an '=' on the command line (--neighbour-offsets=-1,1).
    neighbour_offsets: str = option("", "comma-separated offsets such as '-1,1' for the neighbour heads ('': none)")
    neighbour_layer: int = option(0, "the layer whose first heads start as neighbour heads")
    neighbour_scale: float = option(2.0, "scale of the neighbour heads' starting query and key: more on the neighbour")
    initializer_range: float = option(0.02, "standard deviation of the scratch model's starting weights (BERT's 0.02)")
    # 'zero' is BERT's (every token equally likely); 'unigram' starts at each token's log-frequency in the training
    # text, so the first guess is the unigram baseline's.
    output_bias_init: str = option("zero", "the MLM output bias at the start: 'zero' or 'unigram'")
    dropout: float = option(0.1, "scratch model dropout (hidden states and attention), BERT's 0.1")
    # --- the memory beside the model ---
    # In the mix of the model's and the context-count table's answers at a [MASK], the model weighs this much against
    # the contexts the table matched (helpers/memory.py): 0.5 was chosen on a development split of the training
    # paragraphs, never the validation pairs (docs/experiments.md, the memory).
    memory_strength: float = option(0.5, "the model's weight against the table's matched contexts in the mix")
    # --- optimisation ---
    epochs: int = option(2, "passes over the training pairs")
    max_steps: int | None = option(None, "stop after this many optimizer steps (overrides epochs when reached)")
    batch_size: int = option(16, "pairs per batch")
    lr: float = option(5e-5, "peak learning rate of AdamW")
    weight_decay: float = option(0.01, "AdamW weight decay (not on biases and LayerNorm)")
    warmup_ratio: float = option(0.1, "share of steps spent warming the learning rate up")
    # After the warm-up: 'linear' is BERT's decay to 0; 'wsd' holds the peak, then decays linearly to 0 over the last
    # --decay-ratio of the steps.
    lr_schedule: str = option("linear", "'linear', 'cosine', 'constant' or 'wsd' (warm-up, stable, decay)")
    decay_ratio: float = option(0.2, "share of the steps, at the end, over which wsd decays to 0")
    # A rare token's row learns only in the few steps where it occurs.
    embedding_lr: float | None = option(None, "peak rate of the word embeddings and MLM output bias (none: the rest's)")
    max_grad_norm: float = option(1.0, "gradient clipping norm")
    mlm_only_ratio: float = option(0.0, "share of the optimizer steps trained on MLM alone before NSP joins")
    nsp_weight: float = option(1.0, "weight of the NSP loss in the sum (once it has joined)")
    # In training only: the checkpoint stays a stock BertForPreTraining.
    nsp_dropout: float = option(0.0, "dropout on the pooled [CLS] vector before the NSP head")
    nsp_lr: float | None = option(None, "peak learning rate of the pooler and NSP head (none: the rest's)")
    nsp_weight_decay: float | None = option(None, "AdamW weight decay of the pooler and NSP head (none: the rest's)")
    mixed_precision: str = option("auto", "'auto' (bf16/fp16 on a GPU, off on CPU), 'no', 'bf16' or 'fp16'")
    seed: int = option(42, "one seed for pairs, masks, initialisation and data order")
    # --- tracking ---
    wandb: str = option("auto", "'auto' (online if logged in, else offline), 'online', 'offline' or 'disabled'")
    wandb_project: str = option("bert-meditations", "W&B project name")
    log_every: int = option(10, "log to W&B every N steps")

    def __post_init__(self) -> None:
        for f in fields(self):  # a pathlib.Path for --corpus or --model is kept as text (JSON-friendly)
            if isinstance(getattr(self, f.name), os.PathLike):
                setattr(self, f.name, os.fspath(getattr(self, f.name)))
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError with one sentence for the first bad value."""

        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"--{name.replace('_', '-')}={getattr(self, name)!r} is invalid: {why}.")

        self._validate_types(bad)  # first, so that the range checks below compare numbers with numbers
        if self.splitter not in ("period", "smart"):
            raise bad("splitter", "use 'period' or 'smart'")
        if self.position_init not in ("random", "sinusoidal"):
            raise bad("position_init", "use 'random' or 'sinusoidal'")
        if self.lr_schedule not in LR_SCHEDULES:
            raise bad("lr_schedule", "use " + ", ".join(f"'{name}'" for name in LR_SCHEDULES))
        if self.output_bias_init not in OUTPUT_BIAS_INITS:
            raise bad("output_bias_init", "use " + " or ".join(f"'{name}'" for name in OUTPUT_BIAS_INITS))
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise bad("mixed_precision", "use 'auto', 'no', 'bf16' or 'fp16'")
        if self.wandb not in ("auto", "online", "offline", "disabled"):
            raise bad("wandb", "use 'auto', 'online', 'offline' or 'disabled'")
        if self.max_length < 8:
            raise bad("max_length", "a pair needs at least 8 tokens ([CLS], two [SEP] and some text); use 8 or more")
        for name in (
            "pairs_per_paragraph",
            "max_segment_sentences",
            "epochs",
            "batch_size",
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "log_every",
        ):
            if getattr(self, name) < 1:
                raise bad(name, "it must be a whole number of at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise bad("max_steps", "it must be at least 1, or left unset")
        if self.max_paragraphs is not None and self.max_paragraphs < 2:
            raise bad("max_paragraphs", "at least 2 paragraphs are needed for a train/validation split")
        if self.hidden_size % self.num_attention_heads:
            raise bad("hidden_size", f"it must be a multiple of --num-attention-heads={self.num_attention_heads}")
        if not 0 < self.val_fraction < 1:
            raise bad("val_fraction", "it must lie strictly between 0 and 1")
        if not 0 < self.mlm_probability < 1:
            raise bad("mlm_probability", "it must lie strictly between 0 and 1")
        if not 0 < self.val_mlm_probability < 1:
            raise bad("val_mlm_probability", "it must lie strictly between 0 and 1")
        for name in ("mask_replace_prob", "random_replace_prob", "warmup_ratio", "mlm_only_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                raise bad(name, "it must lie between 0 and 1")
        if self.mask_replace_prob + self.random_replace_prob > 1:
            raise bad("random_replace_prob", "--mask-replace-prob plus --random-replace-prob must not exceed 1")
        if self.initializer_range <= 0:
            raise bad("initializer_range", "it must be positive (BERT's is 0.02)")
        if not 0 <= self.dropout < 1:
            raise bad("dropout", "it must lie in [0, 1)")
        if not 0 <= self.nsp_dropout < 1:
            raise bad("nsp_dropout", "it must lie in [0, 1)")
        self._validate_optimisation(bad)
        self._validate_neighbours(bad)

    def _validate_optimisation(self, bad) -> None:
        """Learning rates, their schedule, weight decay and clipping."""
        if not 0 < self.decay_ratio <= 1:
            raise bad("decay_ratio", "it must lie above 0 and at most 1")
        if self.lr_schedule == "wsd" and self.warmup_ratio + self.decay_ratio > 1:
            raise bad(
                "decay_ratio",
                f"with --warmup-ratio={self.warmup_ratio} the warm-up and the decay would "
                f"overlap; keep the two at most 1 together",
            )
        if self.lr <= 0:
            raise bad("lr", "the learning rate must be positive")
        if self.nsp_lr is not None and self.nsp_lr <= 0:
            raise bad("nsp_lr", "the learning rate must be positive, or none for the same as --lr")
        if self.embedding_lr is not None and self.embedding_lr <= 0:
            raise bad("embedding_lr", "the learning rate must be positive, or none for the same as --lr")
        if self.nsp_weight_decay is not None and self.nsp_weight_decay < 0:
            raise bad("nsp_weight_decay", "it must be 0 or more, or none for --weight-decay")
        if self.nsp_weight < 0:
            raise bad("nsp_weight", "it must be 0 or more")
        if self.weight_decay < 0:
            raise bad("weight_decay", "it must be 0 or more")
        if self.max_grad_norm <= 0:
            raise bad("max_grad_norm", "it must be positive")
        if self.memory_strength <= 0:
            raise bad("memory_strength", "it must be positive (0.5 is the default's)")

    def _validate_types(self, bad) -> None:
        """Each value of the type its field declares (a bool is not taken for a number)."""
        for f in fields(self):
            value, allowed = getattr(self, f.name), _TYPES[f.name]
            if value is None and type(None) in allowed:
                continue
            if isinstance(value, bool) != (bool in allowed) or not isinstance(value, allowed):
                kind = next(t for t in allowed if t is not type(None))
                words = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}[kind]
                raise bad(f.name, f"it must be {words}" + (", or none" if type(None) in allowed else ""))

    def _validate_neighbours(self, bad) -> None:
        """The scratch model's neighbour heads: positions' own dimensions, offsets, layer, scale."""
        if self.position_dims and self.position_init != "random":
            raise bad("position_dims", "it replaces --position-init, so leave that at 'random'")
        if self.position_dims < 0 or self.position_dims % 2 or 0 < self.hidden_size <= self.position_dims:
            raise bad("position_dims", f"use an even number from 0 up to below --hidden-size={self.hidden_size}")
        try:
            offsets = parse_offsets(self.neighbour_offsets)
        except ValueError:
            raise bad("neighbour_offsets", "use whole numbers separated by commas, such as '-1,1'") from None
        if len(offsets) > self.num_attention_heads:
            raise bad("neighbour_offsets", f"one offset per head, and there are {self.num_attention_heads} heads")
        if offsets and self.position_dims < 2:
            raise bad(
                "neighbour_offsets",
                "the heads find neighbours through the positions' own dimensions: "
                "set --position-dims too (for example 64)",
            )
        if not 0 <= self.neighbour_layer < self.num_hidden_layers:
            raise bad("neighbour_layer", f"use a layer from 0 to {self.num_hidden_layers - 1}")
        if self.neighbour_scale <= 0:
            raise bad("neighbour_scale", "it must be positive")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """The profile as an aligned two-column table, printed at the start of a run."""
        width = max(len(f.name) for f in fields(self))
        return "\n".join(f"{f.name:<{width}}  {getattr(self, f.name)}" for f in fields(self))


def parse_offsets(text: str) -> list[int]:
    """'-1,1' -> [-1, 1]: the offset each neighbour head starts looking at."""
    return [int(part) for part in text.split(",") if part.strip()]


def _allowed_types(hint: Any) -> tuple[type, ...]:
    """``int`` -> (int,); ``float`` -> (float, int); ``int | None`` -> (int, NoneType)."""
    kinds = tuple(getattr(hint, "__args__", (hint,)))
    return kinds + (int,) if float in kinds else kinds


_TYPES = {name: _allowed_types(hint) for name, hint in get_type_hints(Config).items()}


# The three profiles. Each lists only what differs from the dataclass defaults.
PROFILES: dict[str, dict[str, Any]] = {
    # Seconds: quick tries, and most helper tests.
    "tiny": dict(
        max_paragraphs=120,
        max_length=64,
        vocab_size=1000,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        epochs=2,
        batch_size=16,
        lr=1e-3,
        log_every=2,
    ),
    # Minutes on a laptop CPU: the README's main command, and the notebooks' stored outputs (nbval re-runs them).
    # Chosen by the learning-curve experiments (benchmarks/learning.py, docs/experiments.md): each value below moved
    # held-out accuracy at [MASK] in measured runs.
    "default": dict(
        max_length=128,
        vocab_size=8000,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=512,
        pairs_per_paragraph=8,
        epochs=12,
        lr=1e-3,
        warmup_ratio=0.06,
        val_fraction=0.33,  # at least 500 balanced validation pairs
        # 40% selected and every one a [MASK]: at 15% a minimal MLM loop stayed at the unigram guess (0.06 against 0.18
        # at 40%); BERT's 80/10/10 did no better than all-[MASK] (0.106 / 0.134 against 0.133 / 0.134, seeds 42 / 43).
        mlm_probability=0.4,
        mask_replace_prob=1.0,
        random_replace_prob=0.0,
        mlm_only_ratio=0.5,  # NSP joins halfway: from step 0 it slows MLM (0.110 / 0.112 against 0.133 / 0.134)
        batch_size=8,  # 16 pairs a batch run 1.15x faster a pair on 2 cores but lose the rare tokens (round 5)
        dropout=0.0,  # BERT's 0.1 holds the model longer on each plateau: 0.133 / 0.134 with it, 0.143 / 0.190 without
        # BERT's starting spread of 0.02 leaves attention nearly uniform: the model took 6-10 epochs to reach 1.5x the
        # unigram guess and ended at 0.143 / 0.190 / 0.130 (seeds 42-44); from 0.05, 4-5 epochs and 0.192 / 0.188 /
        # 0.193.
        initializer_range=0.05,
        # Layer 0 starts where the neighbour-counting baseline looks: head 0 at the token to the left, head 1 at the
        # one to the right, through 64 dimensions that positions own. 0.232 / 0.219 / 0.218 at [MASK] on seeds 42-44,
        # above neighbour counting (0.216 / 0.196 / 0.208) from epoch 10 / 7 / 8; every weight random: 0.192 / 0.188 /
        # 0.193.
        position_dims=64,
        neighbour_offsets="-1,1",
        neighbour_layer=0,
        neighbour_scale=2.0,
        # Time to quality (round 5): 12 epochs instead of 24, at the same held-out accuracy (docs/experiments.md).
        # Rare tokens learn only in the steps where they occur, so a shorter run loses them first (12 epochs of the
        # previous recipe: 0.047 on tokens outside the 100 most frequent, against 0.057): the peak learning rate is
        # held for the first half (wsd), the word embeddings and the output bias learn at 5x the rest, and that
        # bias starts at the unigram guess, so no epoch is spent learning how often each token occurs.
        lr_schedule="wsd",
        decay_ratio=0.5,
        embedding_lr=5e-3,
        output_bias_init="unigram",
    ),
    # The tutorial's Colab GPU run.
    "bert-base": dict(
        model="bert-base-uncased",
        splitter="period",
        max_length=256,
        batch_size=16,
        epochs=2,
        lr=5e-5,
        pairs_per_paragraph=1,
        bucket_by_length=True,
    ),
}


def get_profile(name: str, **overrides: Any) -> Config:
    """Build the named profile, with overrides; e.g. ``get_profile("tiny", epochs=1)``."""
    if name not in PROFILES:
        raise ConfigError(f"Unknown profile {name!r}: choose one of {', '.join(PROFILES)}.")
    known = {f.name for f in fields(Config)}
    unknown = set(overrides) - known
    if unknown:
        raise ConfigError(f"Unknown option(s) {', '.join(sorted(unknown))}: see --help for the list.")
    return Config(**{**PROFILES[name], **overrides, "profile": name})


def choose_profile() -> tuple[str, str]:
    """The profile a notebook should run, and why: $BERT_MEDITATIONS_PROFILE, else bert-base on a GPU, else default."""
    import os

    import torch

    chosen = os.environ.get("BERT_MEDITATIONS_PROFILE")
    if chosen:
        if chosen not in PROFILES:
            raise ConfigError(
                f"$BERT_MEDITATIONS_PROFILE={chosen!r} is not a profile: use one of {', '.join(PROFILES)}."
            )
        return chosen, "set by $BERT_MEDITATIONS_PROFILE"
    if torch.cuda.is_available():
        return "bert-base", "a CUDA GPU is available"
    return "default", "no GPU: the CPU profile"


# What a learner should expect, printed at the top of notebooks 02-06: by profile, or "pretrained" for any --model.
EXPECT = {
    "tiny": "seconds on a CPU, for quick tries: too small and too short to learn, so its answers read as noise.",
    "default": "a 2-layer BERT trained from scratch in a minute or two on a laptop CPU: it learns to fill a [MASK] "
    "with the book's common words, while a table of counts remembers its phrases better (notebooks 04-05), and its "
    "next-sentence verdicts stay near a coin flip (notebook 05).",
    "pretrained": "a model that was pretrained already (bert-base-uncased for the bert-base profile, on a GPU): its "
    "first loss is far below a fresh model's, and it answers sensibly before the first step.",
}


def notebook_config() -> tuple[Config, str]:
    """The notebooks' config (choose_profile's, plus any options in $BERT_MEDITATIONS_ARGS) and what to expect."""
    name, reason = choose_profile()
    extra = os.environ.get("BERT_MEDITATIONS_ARGS", "")
    try:
        cfg, _ = parse_args(["--profile", name, *shlex.split(extra)])
    except SystemExit:  # argparse has printed the offending option
        raise ConfigError(
            f"$BERT_MEDITATIONS_ARGS={extra!r} is not valid (see above): it takes the options of "
            f'`python -m helpers.train --help`, e.g. "--epochs 4 --model runs/default".'
        ) from None
    start = "a fresh model" if cfg.model == "scratch" else f"the pretrained {cfg.model}"
    options = f"; options from $BERT_MEDITATIONS_ARGS: {extra}" if extra.strip() else ""
    expect = EXPECT.get(name if cfg.model == "scratch" else "pretrained")
    if expect is None:
        raise ConfigError(
            f"Profile {name!r} has no entry in helpers.config.EXPECT; add one sentence there saying "
            f"what a learner should expect from it."
        )
    return cfg, f"profile {name!r} ({reason}{options}), starting from {start}.\nWhat to expect: {expect}"


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse_optional(kind):
    def parse(text: str):
        return None if text.lower() in ("none", "") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def build_parser(profile: str = "default", description: str = "", extra=None) -> argparse.ArgumentParser:
    """An argparse parser with one option per Config field, defaulting to the profile's values."""
    defaults = get_profile(profile)
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument(
        "--profile",
        default=profile,
        choices=list(PROFILES),
        help="named profile; the defaults shown are this profile's",
    )
    if extra is not None:
        extra(parser)
    hints = get_type_hints(Config)
    group = parser.add_argument_group("profile values (override any)")
    for f in fields(Config):
        if f.name == "profile":
            continue
        hint = hints[f.name]
        if hint is bool:
            kind = _parse_bool
        elif hint in (int, float, str):
            kind = hint
        else:  # Optional[int] / Optional[str]
            inner = next(a for a in hint.__args__ if a is not type(None))
            kind = _parse_optional(inner)
        metavar = "BOOL" if hint is bool else kind.__name__.upper()  # e.g. --bucket-by-length BOOL
        group.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            type=kind,
            default=getattr(defaults, f.name),
            metavar=metavar,
            help=f.metadata.get("help", ""),
        )
    return parser


def parse_args(argv: list[str] | None = None, description: str = "", extra=None) -> tuple[Config, argparse.Namespace]:
    """Parse ``--profile`` first, then every other option against that profile's defaults."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--profile", default="default")
    known, _ = pre.parse_known_args(argv)
    if known.profile not in PROFILES:
        raise SystemExit(f"error: unknown profile {known.profile!r}: choose one of {', '.join(PROFILES)}.")
    parser = build_parser(known.profile, description, extra)
    args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in fields(Config) if f.name != "profile"}
    try:
        cfg = Config(**values, profile=args.profile)
    except ConfigError as err:
        parser.exit(2, f"error: {err}\n")
    return cfg, args
