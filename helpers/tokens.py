"""Tokenizers (a hub/local one, or a WordPiece trained here offline) and pair tokenization."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertTokenizerFast, PreTrainedTokenizerBase

from helpers.pairs import Pair

HUB_HINT = (
    "Use --model scratch (a small BERT and a tokenizer trained on the corpus, no network needed) "
    "or --model PATH to a local checkpoint directory."
)


class ModelSourceError(RuntimeError):
    """A tokenizer or model could not be loaded; the message names the offline alternatives."""


def train_scratch_tokenizer(texts: Sequence[str], vocab_size: int = 8000) -> BertTokenizerFast:
    """A lower-cased WordPiece tokenizer trained on ``texts`` with bert-base-uncased's special ids."""
    # The trainer gives special tokens the first ids in list order; 99 [unusedN] fillers put
    # [UNK] at 100, [CLS] at 101, [SEP] at 102 and [MASK] at 103, exactly as in bert-base-uncased.
    specials = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    if vocab_size < len(specials) + 100:
        raise ModelSourceError(
            f"--vocab-size={vocab_size} is too small: the special tokens alone take "
            f"{len(specials)} ids; use at least {len(specials) + 100}."
        )
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    # tokenizers' trainer gives "##x" pieces ids in hash-map order, which breaks merge ties differently
    # from run to run (huggingface/tokenizers#1794). Registering every "##x" up front, in sorted order,
    # makes the vocabulary identical on every run; they become ordinary entries of the final vocab.
    chars = sorted({ch for text in texts for ch in tok.normalizer.normalize_str(text) if not ch.isspace()})
    pieces = [f"##{ch}" for ch in chars]
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size + len(pieces), special_tokens=specials + pieces, min_frequency=2, show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # Rebuild from the learned vocabulary so that only the real special tokens are special.
    vocab = tok.get_vocab()
    if len(vocab) > vocab_size:  # the pieces made room for themselves; drop the last merges
        vocab = dict(sorted(vocab.items(), key=lambda kv: kv[1])[:vocab_size])
    final = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    final.normalizer, final.pre_tokenizer, final.decoder = tok.normalizer, tok.pre_tokenizer, tok.decoder
    tok = final
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        do_lower_case=True,
        model_max_length=512,
    )


def load_tokenizer(source: str, texts: Sequence[str] | None = None, vocab_size: int = 8000) -> PreTrainedTokenizerBase:
    """``"scratch"`` trains on ``texts``; anything else is a hub id or a local directory."""
    if source == "scratch":
        if not texts:
            raise ModelSourceError("The scratch tokenizer needs the corpus text to train on.")
        return train_scratch_tokenizer(texts, vocab_size)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        where = "directory" if Path(source).exists() else "hub model"
        raise ModelSourceError(
            f"Could not load the tokenizer of {where} {source!r} ({str(err).splitlines()[0][:160]}). {HUB_HINT}"
        ) from None


def model_max_length(tokenizer: PreTrainedTokenizerBase, model_limit: int | None = None) -> int:
    """The longest pair the model takes: its position embeddings, else the tokenizer's limit."""
    limits = [n for n in (model_limit, getattr(tokenizer, "model_max_length", None)) if n and n < 1_000_000]
    return min(limits) if limits else 512


def check_max_length(max_length: int, tokenizer: PreTrainedTokenizerBase, model_limit: int | None = None) -> None:
    """One clear sentence if ``max_length`` is outside 8..the model's limit."""
    limit = model_max_length(tokenizer, model_limit)
    if not 8 <= max_length <= limit:
        raise ValueError(f"--max-length={max_length} is outside what this model takes: use a value from 8 to {limit}.")


def clip_to_tokens(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_tokens: int) -> list[str]:
    """Cut each text after its first ``max_tokens`` tokens.

    Pair truncation ("longest_first") never keeps more than ``max_tokens`` of either side, so clipping first
    changes nothing in the result, but it keeps tokenizers' pair truncation from taking time and memory
    that grow with the square of the length (huggingface/tokenizers#2035) on very long input.
    """
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    return [
        text if len(offsets) <= max_tokens else text[: offsets[max_tokens - 1][1]]
        for text, offsets in zip(texts, enc["offset_mapping"])
    ]


def tokenize_pairs(
    tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Pair], max_length: int = 256, pad_to_max_length: bool = False
) -> dict[str, list]:
    """Pairs -> ``input_ids``, ``token_type_ids``, ``attention_mask``, ``special_tokens_mask`` and
    ``next_sentence_label`` lists; the longer segment is truncated first.

    ``pad_to_max_length=True`` is the reference recipe (every pair padded to ``max_length``);
    the training path pads per batch instead (dynamic padding).
    """
    check_max_length(max_length, tokenizer)
    # An epoch's pairs share their sentences (about 1,000 distinct ones in 3,600 places): each is clipped once.
    distinct = list(dict.fromkeys([p.sentence_a for p in pairs] + [p.sentence_b for p in pairs]))
    clipped = dict(zip(distinct, clip_to_tokens(tokenizer, distinct, max_length)))
    firsts, seconds = [clipped[p.sentence_a] for p in pairs], [clipped[p.sentence_b] for p in pairs]
    # split_special_tokens: "[SEP]" or "[MASK]" typed in the corpus is text, never a control token.
    encoded = tokenizer(
        firsts,
        seconds,
        split_special_tokens=True,
        truncation="longest_first",
        max_length=max_length,
        padding="max_length" if pad_to_max_length else False,
        return_token_type_ids=True,
        return_attention_mask=True,
        return_special_tokens_mask=True,
    )
    out = {key: encoded[key] for key in ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask")}
    out["next_sentence_label"] = [p.next_sentence_label for p in pairs]
    return out
