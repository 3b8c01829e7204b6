"""Property-based tests of the data path: any paragraphs (or file bytes) give well-formed batches or one clear error."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from helpers.corpus import CorpusError, read_paragraphs
from helpers.dataset import MeditationsDataset
from helpers.masking import IGNORE_INDEX, MaskingRule, mask_tokens
from helpers.pairs import IS_NEXT, IS_RANDOM, PairError, make_pairs, split_corpus
from helpers.tokens import tokenize_pairs

# Sized so that each property runs in a few seconds on 2 shared cores.
FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
SPECIAL_TEXT = ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]")

# Pieces a paragraph is glued from: words in several scripts, sentence ends, '.' runs, control characters.
ODD = [
    "...",
    ".",
    ". ",
    "? ",
    "! ",
    ".. .",
    " . . ",
    "\x00",
    "\x07",
    "\t",
    "\r",
    "\x0b",
    "\u200f",
    "\u202e",
    "\u200b",
    "\ufeff",
    "مرحبا بالعالم",
    "שלום",
    "😀",
    "👩‍👩‍👧",
    "Mr.",
    "e.g.",
    "M. Antoninus",
    "é",
    "e\u0301",
    "ﬁ",
    "Ⅻ",
    "ǅ",
    "İ",
    "ß",
    "𝔘𝔫𝔦",
    "a" * 300,
]
words = st.text(st.characters(codec="utf-8", exclude_characters="[]"), min_size=1, max_size=12)
plain_words = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
sentences = st.lists(st.one_of(plain_words, words), min_size=1, max_size=8).map(" ".join)
pieces = st.one_of(sentences, st.sampled_from(ODD))
ordinary_paragraph = st.lists(st.one_of(sentences.map(lambda s: s + ". "), pieces), max_size=12).map("".join)
# Up to 40 sentences of up to 150 words (tens of thousands of characters): long input for the splitter and
# truncation.
# Common words only: a pair of two long segments of rare words costs the tokenizer's pair truncation seconds
# and gigabytes (huggingface/tokenizers#2035), which the demo tests cover separately.
common_words = st.sampled_from(["the", "soul", "reason", "nature", "man", "good", "is", "and", "of", "to"])
long_paragraph = st.builds(
    lambda word, n, k: (" ".join([word] * k) + ". ") * n, common_words, st.integers(2, 40), st.integers(50, 150)
)
# Two to six sentences, capitalised (the smart splitter only cuts before a capital), with assorted endings.
ends = st.sampled_from([". ", "? ", "! ", "... ", ".", ". \x00 ", ".\u202e ", ".\n"])
structured_paragraph = st.lists(st.tuples(sentences, ends), min_size=2, max_size=6).map(
    lambda parts: "".join(s[:1].upper() + s[1:] + end for s, end in parts)
)
paragraph = st.one_of(
    st.just(""), st.sampled_from(ODD), ordinary_paragraph, structured_paragraph, structured_paragraph, long_paragraph
)
# Short lists find the degenerate corpora; longer ones (with two sentences at least) reach the batches.
paragraph_lists = st.one_of(
    st.lists(paragraph, max_size=3),
    st.lists(paragraph, min_size=3, max_size=8),
    st.lists(structured_paragraph, min_size=2, max_size=5),
)


def _spans(own: list[str], longest: int) -> dict[str, set[tuple[int, int]]]:
    """Text of every span of up to ``longest`` consecutive sentences -> its (start, end) positions."""
    found: dict[str, set[tuple[int, int]]] = {}
    for start in range(len(own)):
        for length in range(1, longest + 1):
            if start + length <= len(own):
                found.setdefault(" ".join(own[start : start + length]), set()).add((start, start + length))
    return found


def check_pairs(sentences: dict[int, list[str]], pairs, per_paragraph: int, segments: int, exhaustive: bool) -> None:
    """Labels 0/1 only, 'follows' = the adjacent span, 'random' = another paragraph's span, balanced."""
    pairable = [i for i, own in sentences.items() if len(own) >= 2]
    expected = sum(2 * (len(sentences[i]) - 1) for i in pairable) if exhaustive else per_paragraph * len(pairable)
    assert len(pairs) == expected
    labels = [p.next_sentence_label for p in pairs]
    assert set(labels) <= {IS_NEXT, IS_RANDOM}
    assert abs(labels.count(IS_NEXT) - labels.count(IS_RANDOM)) <= (0 if exhaustive else 1)
    spans = {i: _spans(own, segments) for i, own in sentences.items()}  # once per paragraph, not per pair
    for pair in pairs:
        own = spans[pair.paragraph_a]
        assert pair.sentence_a in own, pair
        if pair.next_sentence_label == IS_NEXT:
            assert pair.paragraph_b == pair.paragraph_a
            ends = {end for _, end in own[pair.sentence_a]}
            assert any(start in ends for start, _ in own.get(pair.sentence_b, ())), "B does not start where A ends"
        else:
            assert pair.paragraph_b != pair.paragraph_a, "a 'random' B came from A's own paragraph"
            assert pair.sentence_b in spans[pair.paragraph_b]


def check_encoded(encoded: dict[str, list], tokenizer, max_length: int, n_pairs: int) -> None:
    """[CLS] A [SEP] B [SEP], at most max_length tokens, segment ids 0 then 1, specials flagged."""
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert all(len(values) == n_pairs for values in encoded.values())
    for ids, types, attention, special in zip(
        encoded["input_ids"], encoded["token_type_ids"], encoded["attention_mask"], encoded["special_tokens_mask"]
    ):
        assert 3 <= len(ids) <= max_length
        assert ids[0] == cls_id and ids[-1] == sep_id and ids.count(sep_id) == 2
        assert types[0] == 0 and types[-1] == 1
        assert all(a <= b for a, b in zip(types, types[1:])), f"token_type_ids not monotone: {types}"
        first_sep = ids.index(sep_id)
        assert set(types[: first_sep + 1]) == {0} and set(types[first_sep + 1 :]) == {1}
        assert attention == [1] * len(ids)
        assert [i for i, flag in enumerate(special) if flag] == [0, first_sep, len(ids) - 1]
        assert tokenizer.pad_token_id not in ids and tokenizer.mask_token_id not in ids


def check_batch(batch: dict[str, torch.Tensor], features: list[dict], tokenizer, max_length: int) -> None:
    """A collated batch: padded, labels only at changed-or-kept selected tokens, specials untouched."""
    assert {"input_ids", "token_type_ids", "attention_mask", "labels", "next_sentence_label"} <= set(batch)
    rows, width = batch["input_ids"].shape  # (batch, longest pair in the batch)
    assert rows == len(features) and width == max(len(f["input_ids"]) for f in features) <= max_length
    assert batch["labels"].shape == batch["token_type_ids"].shape == batch["attention_mask"].shape == (rows, width)
    assert batch["next_sentence_label"].tolist() == [f["next_sentence_label"] for f in features]
    assert set(batch["next_sentence_label"].tolist()) <= {IS_NEXT, IS_RANDOM}
    for row, feature in enumerate(features):
        n = len(feature["input_ids"])
        original = torch.tensor(feature["input_ids"])  # (n,)
        special = torch.tensor(feature["special_tokens_mask"], dtype=torch.bool)  # (n,)
        ids, labels = batch["input_ids"][row], batch["labels"][row]  # (width,)
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        assert ids[n:].eq(tokenizer.pad_token_id).all() and labels[n:].eq(IGNORE_INDEX).all()
        assert batch["token_type_ids"][row].tolist() == feature["token_type_ids"] + [0] * (width - n)
        labelled = labels[:n] != IGNORE_INDEX
        assert not (labelled & special).any(), "a special token was selected for MLM"
        assert labels[:n][labelled].equal(original[labelled]), "a label is not the original token"
        changed = ids[:n] != original
        assert not (changed & ~labelled).any(), "a token changed where no label is set"
        assert ids[:n][special].equal(original[special])


def check_mask_tokens(padded: torch.Tensor, tokenizer, seed: int) -> None:
    """The hand-written BERT masking on a padded batch: same contract as the collator, by token id."""
    generator = torch.Generator().manual_seed(seed)
    masked, labels = mask_tokens(padded, tokenizer, mode="bert", generator=generator)
    special = torch.isin(padded, torch.tensor(tokenizer.all_special_ids))  # (batch, seq_len)
    selected = labels != IGNORE_INDEX
    assert masked.shape == labels.shape == padded.shape
    assert not (selected & special).any()
    assert labels[selected].equal(padded[selected])
    assert not ((masked != padded) & ~selected).any()
    assert not torch.isin(
        masked[selected & (masked != padded)],
        torch.tensor([i for i in tokenizer.all_special_ids if i != tokenizer.mask_token_id]),
    ).any()


def _event(name: str) -> None:
    """Count outcomes in hypothesis' statistics (--hypothesis-show-statistics); a no-op outside @given."""
    try:
        event(name)
    except InvalidArgument:
        pass


def run_data_path(
    paragraphs: list[str],
    tokenizer,
    splitter: str,
    per_paragraph: int,
    segments: int,
    exhaustive: bool,
    max_length: int,
    batch_size: int,
    seed: int,
) -> None:
    """paragraphs -> sentences -> pairs -> tokens -> collated batches and hand-masked batches, all checked."""
    sentences = split_corpus(paragraphs, splitter)
    assert sorted(sentences) == list(range(len(paragraphs)))
    assert all(s.strip() == s and s for own in sentences.values() for s in own)
    try:
        pairs = make_pairs(sentences, per_paragraph, seed=seed, exhaustive=exhaustive, max_segment_sentences=segments)
    except PairError as err:
        # Documented: no paragraph with two sentences, no second paragraph to draw a random B from, or a
        # position whose every candidate B from another paragraph is, by text, the true next sentence.
        pairable = [i for i, own in sentences.items() if len(own) >= 2]
        with_text = [i for i, own in sentences.items() if own]
        no_candidate = any(
            all(s == own[k + 1] for j in with_text if j != i for s in sentences[j])
            for i in pairable
            for own in [sentences[i]]
            for k in range(len(own) - 1)
        )
        assert not pairable or len(with_text) < 2 or no_candidate, f"PairError on a corpus that has pairs: {err}"
        assert "\n" not in str(err) and str(err).endswith(".")
        _event("PairError")
        return
    _event("batches checked")
    check_pairs(sentences, pairs, per_paragraph, segments, exhaustive)
    pairs = pairs[:24]  # enough for several batches; tokenizing more of the long paragraphs only costs time
    encoded = tokenize_pairs(tokenizer, pairs, max_length=max_length)
    check_encoded(encoded, tokenizer, max_length, len(pairs))
    dataset = MeditationsDataset(encoded)
    collator = MaskingRule().collator(tokenizer, seed=seed)
    for start in range(0, len(dataset), batch_size):
        features = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        check_batch(collator([dict(f) for f in features]), features, tokenizer, max_length)
        padded = tokenizer.pad([{"input_ids": f["input_ids"]} for f in features], return_tensors="pt")["input_ids"]
        check_mask_tokens(padded, tokenizer, seed + start)


@FAST
@given(
    paragraphs=paragraph_lists,
    splitter=st.sampled_from(["period", "smart"]),
    per_paragraph=st.integers(1, 4),
    segments=st.integers(1, 3),
    exhaustive=st.booleans(),
    max_length=st.integers(8, 64),
    batch_size=st.integers(1, 16),
    seed=st.integers(0, 2**16),
)
@example(
    paragraphs=[], splitter="period", per_paragraph=1, segments=1, exhaustive=False, max_length=8, batch_size=4, seed=0
)
@example(
    paragraphs=["", "..."],
    splitter="smart",
    per_paragraph=1,
    segments=1,
    exhaustive=False,
    max_length=8,
    batch_size=4,
    seed=0,
)
@example(
    paragraphs=["One sentence only.", "Another single one."],
    splitter="period",
    per_paragraph=2,
    segments=2,
    exhaustive=False,
    max_length=8,
    batch_size=4,
    seed=0,
)
@example(
    paragraphs=["First. Second.", "Third. Fourth."],
    splitter="period",
    per_paragraph=3,
    segments=1,
    exhaustive=True,
    max_length=8,
    batch_size=3,
    seed=1,
)
@example(
    paragraphs=["\x00. \x01. \x02.", "\u202eمرحبا. שלום. 😀."],
    splitter="period",
    per_paragraph=2,
    segments=3,
    exhaustive=False,
    max_length=9,
    batch_size=2,
    seed=2,
)
def test_any_paragraphs_give_well_formed_batches_or_a_pair_error(
    scratch_tokenizer, paragraphs, splitter, per_paragraph, segments, exhaustive, max_length, batch_size, seed
):
    run_data_path(
        paragraphs, scratch_tokenizer, splitter, per_paragraph, segments, exhaustive, max_length, batch_size, seed
    )


def test_the_real_corpus_passes_the_same_checks(paragraphs, scratch_tokenizer):
    run_data_path(paragraphs[:60], scratch_tokenizer, "smart", 2, 3, False, 64, 16, 7)
    run_data_path(paragraphs[:60], scratch_tokenizer, "period", 1, 1, True, 8, 5, 8)


@FAST
@given(
    raw=st.one_of(
        st.binary(max_size=600),
        st.text(st.characters(codec="utf-8"), max_size=300).map(lambda t: t.encode("utf-8")),
        st.lists(
            st.sampled_from(
                ["Line one. Two.", "", "  ", "\r\n", "\n", "\ufeff", "\x85", "\u2028", "\x00", "é", "\xff"]
            ),
            max_size=20,
        ).map(lambda parts: "\n".join(parts).encode("utf-8", "surrogateescape")),
        st.just(b"\xef\xbb\xbfHello. World.\r\nSecond. Line.\r\n"),
    )
)
def test_any_file_bytes_give_paragraphs_or_a_corpus_error(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_bytes(raw)
    try:
        paragraphs = read_paragraphs(path)
    except CorpusError as err:
        message = str(err)
        assert "\n" not in message and message.endswith(".")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return  # documented: not UTF-8
        assert b"\x00" in raw or not text.lstrip("\ufeff").strip(), f"CorpusError on a usable file: {message}"
        return
    text = raw.decode("utf-8")  # a file that was read is UTF-8 without NUL bytes
    assert b"\x00" not in raw and paragraphs
    for p in paragraphs:
        assert p and p == p.strip() and not any(ch in p for ch in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
    # No character is lost or invented: the same text, whitespace aside (and one leading BOM).
    assert "".join("".join(paragraphs).split()) == "".join(text.lstrip("\ufeff").split())


def test_a_skewed_corpus_still_gives_random_pairs():
    """One paragraph of 3,000 sentences and one of a single sentence: random B must come from the second."""
    paragraphs = [" ".join(f"Sentence {i}." for i in range(3000)), "The other paragraph."]
    pairs = make_pairs(split_corpus(paragraphs, "period"), pairs_per_paragraph=4, seed=0)
    assert {p.paragraph_b for p in pairs if p.next_sentence_label == IS_RANDOM} == {1}


def test_special_token_text_in_the_corpus_is_read_as_words(scratch_tokenizer):
    paragraphs = ["Keep [SEP] calm. Then [MASK] act. And [PAD] rest.", "Other words here. And more of them."]
    pairs = make_pairs(split_corpus(paragraphs, "period"), pairs_per_paragraph=2, seed=0)
    encoded = tokenize_pairs(scratch_tokenizer, pairs, max_length=64)
    check_encoded(encoded, scratch_tokenizer, 64, len(pairs))
