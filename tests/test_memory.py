"""The context-count memory: what it counts, how contexts combine, what it never counts, and its file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import BertTokenizerFast

from helpers.memory import (
    MEMORY_FILE,
    SHAPES,
    SIDE,
    UNSEEN,
    ContextCounts,
    CountingRule,
    MemoryFileError,
    argmax_hits,
    context_key,
    mix,
    text_fingerprint,
)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "old", "man", "an", "dog", "sea", "zebra"]


def word_tokenizer(words=WORDS) -> BertTokenizerFast:
    """A tokenizer whose every word is one token: ids 0-4 are the specials, then ``words`` in order."""
    vocab = {token: index for index, token in enumerate(SPECIALS + list(words))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


@pytest.fixture(scope="module")
def tok() -> BertTokenizerFast:
    return word_tokenizer()


def ids_of(tok, *texts: str) -> list[list[int]]:
    """Each text as [CLS] words [SEP]; the word 'MASK' becomes the tokenizer's mask token."""
    return [tok(text.replace("MASK", tok.mask_token))["input_ids"] for text in texts]


def query(tok, text: str) -> torch.Tensor:
    """One row of input_ids, (1, seq_len)."""
    return torch.tensor(ids_of(tok, text))


def unigram_p(tok, counts: dict[str, int], word: str) -> float:
    """The memory's unigram probability of ``word``: its count plus the UNSEEN pseudo-count of every ordinary token."""
    ordinary = len(tok) - len(SPECIALS)
    return (counts.get(word, 0) + UNSEEN) / (sum(counts.values()) + UNSEEN * ordinary)


# ----- what is counted, and how matched contexts combine -----


def test_counts_by_context_shape(tok):
    memory = ContextCounts.build(ids_of(tok, "the old man", "the old man", "an old dog"), tok)
    old, man, dog = tok.convert_tokens_to_ids(["old", "man", "dog"])
    table = memory.table
    context = np.searchsorted(table.keys, context_key((1, 0), [old], len(tok)))  # one token to the left: "old"
    assert table.keys[context] == context_key((1, 0), [old], len(tok))
    entries = slice(table.starts[context], table.starts[context + 1])
    assert dict(zip(table.tokens[entries].tolist(), table.counts[entries].tolist())) == {man: 2, dog: 1}
    assert table.totals[context] == 3
    assert memory.unigram[[old, man, dog]].tolist() == [3, 2, 1]
    assert memory.unigram[tok.all_special_ids].sum() == 0  # specials are never hidden, so never counted


def test_interpolating_and_backing_off_differ_where_a_wide_context_is_rare(tok):
    # "an old [MASK]": one token left says man 3 : dog 1, but the two-token context "an old" was seen once, with dog.
    memory = ContextCounts.build(ids_of(tok, *["the old man"] * 3, "an old dog"), tok)
    row = query(tok, "an old MASK")  # [CLS] an old [MASK] [SEP]
    man, dog = tok.convert_tokens_to_ids(["man", "dog"])
    flat = CountingRule("interpolate", growth=1.0, confidence=1.0, unigram=0.05)
    p = memory.probabilities(row, rule=flat)
    backed_off = memory.probabilities(row, rule=CountingRule("backoff", 1.0, 1.0, 0.05))
    assert p.probs[0].argmax() == man and backed_off.probs[0].argmax() == dog
    assert p.widest.tolist() == [3]  # "an old _ [SEP]": two tokens left and one right
    # By hand: the contexts old_, _[SEP], old_[SEP] (each seen 4 times: man 3, dog 1, weight 4/5) and an old_,
    # an old_[SEP] (seen once: dog, weight 1/2); nothing two tokens right of [SEP]; plus 0.05 of the unigram.
    counts = {"the": 3, "old": 4, "man": 3, "an": 1, "dog": 1}
    total = 3 * 0.8 + 2 * 0.5 + 0.05
    expected_man = (3 * 0.8 * 3 / 4 + 0.05 * unigram_p(tok, counts, "man")) / total
    expected_dog = (3 * 0.8 * 1 / 4 + 2 * 0.5 + 0.05 * unigram_p(tok, counts, "dog")) / total
    assert p.probs[0, man].item() == pytest.approx(expected_man, rel=1e-5)
    assert p.probs[0, dog].item() == pytest.approx(expected_dog, rel=1e-5)
    # Back-off keeps the widest width alone (an old_[SEP]: dog) beside the unigram.
    assert backed_off.probs[0, dog].item() == pytest.approx(
        (0.5 + 0.05 * unigram_p(tok, counts, "dog")) / 0.55, rel=1e-5
    )


def test_wider_contexts_weigh_more_with_growth(tok):
    memory = ContextCounts.build(ids_of(tok, *["the old man"] * 3, "an old dog"), tok)
    dog = tok.convert_tokens_to_ids("dog")
    row = query(tok, "an old MASK")
    assert memory.probabilities(row, rule=CountingRule(growth=3.0)).probs[0].argmax() == dog


def test_counts_of_every_shape_sum_to_the_training_tokens(tok):
    ids = ids_of(tok, "the old man", "an old dog", "the sea", "man")
    memory = ContextCounts.build(ids, tok)
    hidden = [len(p) - 2 for p in ids]  # [CLS] and [SEP] are never hidden
    assert memory.unigram.sum() == sum(hidden)
    shape_of = memory.table.keys // len(tok) ** (2 * SIDE)  # (n_contexts,): the index of each context's shape
    per_shape = np.bincount(shape_of, weights=memory.table.totals, minlength=len(SHAPES))
    for index, (left, right) in enumerate(SHAPES):
        # [CLS] and [SEP] are context; a context reaching past them is not there to match.
        expected = sum(max(0, n - max(0, left - 1) - max(0, right - 1)) for n in hidden)
        assert per_shape[index] == expected, (left, right)
    assert memory.table.counts.sum() == memory.table.totals.sum() == per_shape.sum()


def test_masks_and_padding_are_never_matched_as_context(tok):
    # A training paragraph holding a [MASK]: no context containing it is counted.
    memory = ContextCounts.build(ids_of(tok, "the old man", "the MASK dog"), tok)
    vocab, keys = len(tok), memory.table.keys
    for index, (left, right) in enumerate(SHAPES):
        packed = keys[keys // vocab ** (2 * SIDE) == index] % vocab ** (2 * SIDE)  # this shape's contexts
        assert len(packed)
        for power in range(left + right):  # each context token, one base-vocab digit
            assert not np.isin(packed // vocab**power % vocab, [tok.mask_token_id, tok.pad_token_id]).any()
    # At query time: a neighbour that is [MASK] or [PAD] matches nothing, so both read like "no context there".
    the, old = tok.convert_tokens_to_ids(["the", "old"])
    masked = torch.tensor([[tok.cls_token_id, the, old, tok.mask_token_id, tok.mask_token_id, tok.mask_token_id]])
    padded = torch.tensor([[tok.cls_token_id, the, old, tok.mask_token_id, tok.pad_token_id, tok.pad_token_id]])
    first = torch.zeros_like(masked, dtype=torch.bool)
    first[0, 3] = True  # "the old _": two tokens left match, nothing right
    a, b = memory.probabilities(masked, first), memory.probabilities(padded, first)
    assert torch.equal(a.probs, b.probs) and a.widest.tolist() == b.widest.tolist() == [2]
    lonely = torch.tensor([[tok.mask_token_id] * 3])  # nothing but masks: the unigram alone
    out = memory.probabilities(lonely)
    assert out.widest.tolist() == [0, 0, 0]
    assert torch.allclose(out.probs, out.probs[:1].expand(3, -1))


def test_probabilities_sum_to_one_on_real_batches(tiny_cfg):
    from helpers.dataset import prepare_data, validation_batches

    data = prepare_data(tiny_cfg)
    text = data.training_text(tiny_cfg)
    memory = ContextCounts.build(text.ids, data.tokenizer)
    batches = validation_batches(data, tiny_cfg)
    for rule in (CountingRule(), CountingRule("backoff"), CountingRule(growth=1.0, confidence=4.0, unigram=0.2)):
        for batch in batches:
            selected = batch["labels"] != -100
            out = memory.probabilities(batch["input_ids"], selected, rule=rule)
            assert out.probs.shape == (int(selected.sum()), len(data.tokenizer))
            assert torch.allclose(out.probs.sum(-1), torch.ones(len(out.probs)), atol=1e-5)
            assert (out.probs >= 0).all()
            assert (out.probs[:, data.tokenizer.all_special_ids] == 0).all()  # never a special token
            # Row-major order, as the model's logits at sequence[selected]: the answers line up.
            assert out.widest.shape == (int(selected.sum()),)
    hit, answer = argmax_hits(memory, batches)  # the baseline's argmax: the hidden tokens, row-major
    assert torch.equal(answer, torch.cat([b["labels"][b["labels"] != -100] for b in batches]))
    assert 0 < hit.float().mean() < 1


# ----- the leave-out rule: a paragraph scored is never in the counts it is scored with -----


def test_leaving_a_paragraph_out_equals_never_counting_it(paragraphs, scratch_tokenizer):
    ids = scratch_tokenizer(paragraphs[:40], add_special_tokens=True)["input_ids"]
    full = ContextCounts.build(ids, scratch_tokenizer)
    for k in (0, 7, 23):
        without = ContextCounts.build(ids[:k] + ids[k + 1 :], scratch_tokenizer)
        own = ContextCounts.build([ids[k]], scratch_tokenizer)
        row = torch.tensor([ids[k]])
        hidden = torch.rand(row.shape, generator=torch.Generator().manual_seed(k)) < 0.3
        hidden[0, 0] = hidden[0, -1] = False
        masked = row.masked_fill(hidden, scratch_tokenizer.mask_token_id)
        kept = full.probabilities(masked, hidden, leave_out=[[own]])
        never = without.probabilities(masked, hidden)
        assert torch.allclose(kept.probs, never.probs, atol=1e-6)
        assert torch.equal(kept.widest, never.widest)
        # Without the leave-out the paragraph's own words are found: the rule makes a difference here.
        assert not torch.allclose(full.probabilities(masked, hidden).probs, never.probs, atol=1e-6)


def test_a_held_out_paragraph_is_never_in_the_table(tok):
    training = ids_of(tok, "the old man", "an old dog")
    held_out = ids_of(tok, "the zebra sea")[0]
    memory = ContextCounts.build(training, tok)
    zebra = tok.convert_tokens_to_ids("zebra")
    assert memory.unigram[zebra] == 0
    assert memory.text_fingerprint == text_fingerprint(training) != text_fingerprint([*training, held_out])
    row = torch.tensor([held_out]).masked_fill(torch.tensor([held_out]) == zebra, tok.mask_token_id)
    p = memory.probabilities(row).probs[0, zebra].item()
    assert p < 0.05 * UNSEEN  # the unseen floor of the unigram, nothing counted


def test_the_benchmark_development_split_keeps_its_paragraphs_out_of_everything(tiny_cfg):
    from benchmarks.memory import dev_split, leave_out, pair_batches, paragraph_tables
    from helpers.dataset import prepare_data

    data = prepare_data(tiny_cfg)
    dev = dev_split(data, tiny_cfg)
    held = set(dev.val_sentences)
    assert held and not held & set(dev.train_sentences)
    assert set(dev.train_sentences) | held == set(data.train_sentences)  # the real validation paragraphs untouched
    assert all(p.paragraph_a in held and p.paragraph_b in held for p in dev.val_pairs)
    text = dev.training_text(tiny_cfg)
    memory = ContextCounts.build(text.ids, dev.tokenizer)
    kept = dev.tokenizer([" ".join(data.sentences[i]) for i in sorted(dev.train_sentences)])["input_ids"]
    assert memory.text_fingerprint == text_fingerprint(kept)
    # Training pairs scored with a leave-out: each row leaves out exactly the paragraphs its sentences came from.
    tables = paragraph_tables(dev, text)
    batch = pair_batches(dev, tiny_cfg, text.pairs[:16], seed=1)[0]
    for row, out in enumerate(leave_out(batch, tables)):
        assert out == [tables[p] for p in sorted({int(batch["paragraph_a"][row]), int(batch["paragraph_b"][row])})]


# ----- the mix -----


def test_mix_weights_the_model_by_the_widest_context(tok):
    memory = ContextCounts.build(ids_of(tok, "the old man", "an old dog"), tok)
    out = memory.probabilities(query(tok, "MASK old MASK"))
    model = torch.softmax(torch.randn(len(out.probs), len(tok), generator=torch.Generator().manual_seed(0)), -1)
    assert torch.allclose(mix(model, out, 1.0), model) and torch.allclose(mix(model, out, 0.0), out.probs)
    shares = [0.9, 0.7, 0.5, 0.3, 0.1]
    mixed = mix(model, out, shares)
    for row, width in enumerate(out.widest.tolist()):
        assert torch.allclose(mixed[row], shares[width] * model[row] + (1 - shares[width]) * out.probs[row])
    assert torch.allclose(mixed.sum(-1), torch.ones(len(mixed)), atol=1e-5)
    with pytest.raises(ValueError, match="one per widest width"):
        mix(model, out, [0.5, 0.5])


def test_by_default_the_model_weighs_against_the_evidence_the_table_found(tok):
    memory = ContextCounts.build(ids_of(tok, *["the old man"] * 5, "an old dog"), tok)
    rule = CountingRule()  # the chosen defaults: every matched context weighs n / (n + 4), the unigram 0.05
    out = memory.probabilities(query(tok, "the old MASK MASK"), rule=rule)
    model = torch.softmax(torch.randn(len(out.probs), len(tok), generator=torch.Generator().manual_seed(1)), -1)
    # The first [MASK] matched "old", "the old", "[CLS] the old" ... seen 5-6 times; the second only "[SEP]" to its
    # right (its left neighbour is a [MASK]), so the table knows less there and the model gets a larger share.
    assert out.evidence[0] > out.evidence[1] > rule.unigram
    for row in range(2):
        share = 0.5 / (0.5 + out.evidence[row].item())
        expected = share * model[row] + (1 - share) * out.probs[row]
        assert torch.allclose(mix(model, out, strength=0.5)[row], expected, atol=1e-6)
    nothing = memory.probabilities(query(tok, "MASK"), rule=rule)  # [CLS] [MASK] [SEP]: "[CLS] _" and "_ [SEP]"
    lonely = memory.probabilities(torch.tensor([[tok.mask_token_id]]), rule=rule)  # no neighbour at all
    assert lonely.evidence.item() == pytest.approx(rule.unigram) and nothing.evidence.item() > rule.unigram


# ----- the file -----


def test_save_and_load_give_the_same_table(tok, tmp_path):
    training = ids_of(tok, "the old man", "an old dog", "the sea")
    memory = ContextCounts.build(training, tok)
    loaded = ContextCounts.load(memory.save(tmp_path / MEMORY_FILE), tok, text_fingerprint(training))
    assert np.array_equal(loaded.unigram, memory.unigram)
    for field in ("keys", "starts", "tokens", "counts", "totals"):
        assert np.array_equal(getattr(memory.table, field), getattr(loaded.table, field)), field
    assert (loaded.vocab_fingerprint, loaded.text_fingerprint) == (memory.vocab_fingerprint, memory.text_fingerprint)
    row = query(tok, "the MASK MASK")
    assert torch.equal(memory.probabilities(row).probs, loaded.probabilities(row).probs)


def _saved(tok, tmp_path):
    return ContextCounts.build(ids_of(tok, "the old man", "an old dog"), tok).save(tmp_path / MEMORY_FILE)


def _one_sentence(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message.endswith(".") and message.count(". ") == 0
    return message


def test_a_missing_file_says_so(tok, tmp_path):
    with pytest.raises(MemoryFileError) as err:
        ContextCounts.load(tmp_path / MEMORY_FILE, tok)
    assert "no context-count file" in _one_sentence(err)


@pytest.mark.parametrize("damage", ["flip a data byte", "edit the metadata", "truncate", "garbage"])
def test_a_damaged_file_says_so(tok, tmp_path, damage):
    path = _saved(tok, tmp_path)
    if damage == "edit the metadata":  # a well-formed file whose metadata no longer matches its recorded sha256
        from safetensors import safe_open
        from safetensors.numpy import save_file

        with safe_open(str(path), framework="np") as handle:
            meta, tensors = handle.metadata(), {name: handle.get_tensor(name) for name in handle.keys()}
        save_file(tensors, str(path), metadata=meta | {"pad_id": "7"})
    data = bytearray(path.read_bytes())
    if damage == "flip a data byte":
        data[-5] ^= 0xFF  # inside the tensors: the header still parses, the recorded sha256 no longer matches
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"not a safetensors file at all")
    path.write_bytes(bytes(data))
    with pytest.raises(MemoryFileError) as err:
        ContextCounts.load(path, tok)
    assert "damaged" in _one_sentence(err)


def test_a_file_of_another_tokenizer_or_text_says_so(tok, tmp_path):
    path = _saved(tok, tmp_path)
    other = word_tokenizer([*WORDS, "wave"])
    with pytest.raises(MemoryFileError) as err:
        ContextCounts.load(path, other)
    assert "another tokenizer" in _one_sentence(err)
    with pytest.raises(MemoryFileError) as err:
        ContextCounts.load(path, tok, text_fingerprint(ids_of(tok, "the sea")))
    assert "other training text" in _one_sentence(err)
    ContextCounts.load(path, tok, text_fingerprint(ids_of(tok, "the old man", "an old dog")))  # the right text loads


def test_the_benchmark_trains_the_plain_loop_and_the_lever_through_the_loop_it_patches(tiny_cfg, tmp_path):
    """benchmarks/memory.py swaps two names of helpers/train.py for the lever: both runs must still train."""
    from dataclasses import replace

    from benchmarks.memory import paragraph_tables, train_model
    from helpers.dataset import prepare_data

    cfg = replace(tiny_cfg, epochs=1, max_steps=3, wandb="disabled")
    data = prepare_data(cfg)
    text = data.training_text(cfg)
    lever = {"memory": ContextCounts.build(text.ids, data.tokenizer), "tables": paragraph_tables(data, text)}
    for name, how in (("plain", None), ("lever", lever)):
        stock, seconds = train_model(cfg, data, tmp_path / name, how)
        assert seconds > 0 and stock.config.vocab_size == len(data.tokenizer)
    plain, against = (json.loads((tmp_path / n / "metrics.json").read_text())["final"] for n in ("plain", "lever"))
    assert plain["step"] == against["step"] == 3
    assert plain["mlm_loss"] != against["mlm_loss"]  # the lever's sum was trained, not the plain model
