"""Predictor: NSP and fill-mask agree with the stock model, batch like one by one, and fail clearly."""

from __future__ import annotations

import json
import math
import re
import shutil
import threading

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertForNextSentencePrediction, BertForPreTraining

from helpers.checkpoint import CheckpointError
from helpers.pairs import IS_NEXT, IS_RANDOM, LABEL_NAMES
from helpers.serving import MAX_CHARS, FillMaskResult, InferenceError, NSPResult, Predictor
from tests.app_fixtures import tiny_checkpoint  # noqa: F401 - a fixture

PAIRS = [
    (
        "Remember how long you have been putting off these things.",
        "You must now at last perceive of what universe you are a part.",
    ),
    ("Everything is opinion.", "The sun warms the stones of the road."),
    ("Short.", "A second sentence that is a good deal longer than the first one, with several clauses in it."),
    ("The mind is its own place.", "Be like the rocky headland on which the waves constantly break."),
]


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):  # noqa: F811
    return Predictor.from_checkpoint(tiny_checkpoint)


def stock_nsp_logits(predictor: Predictor, a: str, b: str) -> torch.Tensor:
    """The stock BertForPreTraining forward on one pair, without any of Predictor's code."""
    enc = predictor.tokenizer(a, b, return_tensors="pt", truncation=True, max_length=predictor.max_length)
    with torch.no_grad():
        return predictor.model(**enc).seq_relationship_logits[0]  # (2,)


def test_loaded_for_inference(predictor, tiny_checkpoint):  # noqa: F811
    assert not predictor.model.training  # dropout off
    profile = json.loads((tiny_checkpoint / "profile.json").read_text())
    assert predictor.max_length == profile["max_length"]  # the length it was trained on, not the model's 512
    result = predictor.predict_nsp(*PAIRS[0])
    assert isinstance(result, NSPResult)


@pytest.mark.parametrize("pair", PAIRS)
def test_nsp_probabilities_sum_to_one_and_verdict_is_argmax(predictor, pair):
    result = predictor.predict_nsp(*pair)
    probs = [result.probabilities[LABEL_NAMES[IS_NEXT]], result.probabilities[LABEL_NAMES[IS_RANDOM]]]
    assert math.isclose(sum(probs), 1.0, abs_tol=1e-6)
    assert all(0 < p < 1 for p in probs)
    assert result.label == max((IS_NEXT, IS_RANDOM), key=lambda i: result.logits[i])
    assert result.verdict == LABEL_NAMES[result.label]
    # softmax of the reported logits
    assert math.isclose(probs[0], 1 / (1 + math.exp(result.logits[1] - result.logits[0])), abs_tol=1e-6)
    assert not result.truncated and result.notes == []


@pytest.mark.parametrize("pair", PAIRS)
def test_nsp_matches_the_stock_forward(predictor, pair):
    result = predictor.predict_nsp(*pair)
    assert torch.allclose(torch.tensor(result.logits), stock_nsp_logits(predictor, *pair), atol=1e-5)


def test_nsp_batch_equals_one_by_one(predictor):
    batched = predictor.predict_nsp_batch(PAIRS)
    for pair, together in zip(PAIRS, batched):
        alone = predictor.predict_nsp(*pair)
        assert together.label == alone.label
        assert together.logits == pytest.approx(alone.logits, abs=1e-5)


def test_nsp_batch_can_return_errors_in_place(predictor):
    results = predictor.predict_nsp_batch([PAIRS[0], ("", "x"), PAIRS[1]], errors="return")
    assert isinstance(results[1], InferenceError) and "Sentence A is empty" in str(results[1])
    assert results[0].logits == pytest.approx(predictor.predict_nsp(*PAIRS[0]).logits, abs=1e-5)
    assert results[2].logits == pytest.approx(predictor.predict_nsp(*PAIRS[1]).logits, abs=1e-5)
    with pytest.raises(InferenceError):
        predictor.predict_nsp_batch([PAIRS[0], ("", "x")])


def test_fill_mask_one_sorted_list_of_k_per_mask(predictor):
    text = "The [MASK] of the universe loves to [MASK] whatever is, and to [MASK] new things."
    predictions = predictor.fill_mask(text, top_k=4)
    assert len(predictions) == 3
    for options in predictions:
        assert len(options) == 4
        probs = [p for _, p in options]
        assert probs == sorted(probs, reverse=True)
        assert all(0 < p <= 1 for p in probs) and sum(probs) <= 1 + 1e-6
        assert len({token for token, _ in options}) == 4


def test_fill_mask_matches_the_stock_forward(predictor):
    text = "Nothing is [MASK] to the soul, and [MASK] is the cause."
    predictions = predictor.fill_mask(text, top_k=3)
    enc = predictor.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = predictor.model(**enc).prediction_logits[0]  # (seq_len, vocab)
    positions = (enc["input_ids"][0] == predictor.tokenizer.mask_token_id).nonzero().squeeze(1)
    expected = logits[positions].softmax(-1).topk(3, dim=-1)
    for options, values, ids in zip(predictions, expected.values, expected.indices):
        assert [p for _, p in options] == pytest.approx(values.tolist(), abs=1e-6)
        assert [t for t, _ in options] == predictor.tokenizer.convert_ids_to_tokens(ids.tolist())


def test_fill_mask_batch_equals_one_by_one(predictor):
    texts = ["A [MASK] word.", "Two [MASK] in one [MASK] sentence, a longer one with more words in it.", "[MASK]"]
    together = predictor.fill_mask_batch(texts, top_k=5)
    for text, batched in zip(texts, together):
        alone = predictor.fill_mask(text, top_k=5)
        assert len(batched.predictions) == len(alone)
        for b, a in zip(batched.predictions, alone):
            assert [p for _, p in b] == pytest.approx([p for _, p in a], abs=1e-5)


def test_the_core_functions_give_the_predictors_answers_without_its_plumbing(predictor):
    """helpers.inference's few-line core is what Predictor serves: same probabilities, same top-k per mask."""
    from helpers.inference import fill_mask_top_k, nsp_probabilities

    probs = nsp_probabilities(predictor.model, predictor.tokenizer, PAIRS, predictor.max_length)
    assert probs.shape == (len(PAIRS), 2)
    for pair, row in zip(PAIRS, probs):
        expected = stock_nsp_logits(predictor, *pair).softmax(-1)
        assert torch.allclose(row, expected, atol=1e-5)
        assert row.tolist() == pytest.approx(list(predictor.predict_nsp(*pair).probabilities.values()), abs=1e-5)
    texts = ["A [MASK] word.", "Two [MASK] in one [MASK] sentence.", "No mask here.", "[MASK]"]
    guesses = fill_mask_top_k(predictor.model, predictor.tokenizer, texts, k=3, max_length=predictor.max_length)
    assert [len(per_text) for per_text in guesses] == [1, 2, 0, 1]  # each text keeps its own masks
    for text, per_text in zip(texts, guesses):
        if per_text:
            served = predictor.fill_mask(text, top_k=3)
            assert [[t for t, _ in options] for options in per_text] == [[t for t, _ in o] for o in served]
            for options, expected in zip(per_text, served):
                assert [p for _, p in options] == pytest.approx([p for _, p in expected], abs=1e-5)


def test_twenty_masks_give_twenty_lists(predictor):
    text = " ".join(f"word{i} [MASK]" for i in range(20))
    result = predictor.fill_mask_result(text, top_k=2)
    assert result.n_masks == 20 and len(result.predictions) == 20
    assert all(len(options) == 2 for options in result.predictions)


def test_top_k_is_clamped(predictor):
    assert len(predictor.fill_mask("a [MASK]", top_k=0)[0]) == 1
    vocab = predictor.model.config.vocab_size
    assert len(predictor.fill_mask("a [MASK]", top_k=vocab + 50)[0]) == vocab
    with pytest.raises(InferenceError, match="top_k must be a whole number"):
        predictor.fill_mask("a [MASK]", top_k="many")


def test_long_pair_is_truncated_and_flagged(predictor):
    long = "the soul is dyed by its thoughts and " * 40
    result = predictor.predict_nsp(long, "Short.")
    assert result.truncated
    assert any("cut off" in note for note in result.notes)
    # Truncation cut the longer sentence only: the model still read all of B.
    enc = predictor.tokenizer(long, "Short.", truncation="longest_first", max_length=predictor.max_length)
    assert len(enc["input_ids"]) == predictor.max_length
    assert result.logits == pytest.approx(stock_nsp_logits(predictor, long, "Short.").tolist(), abs=1e-5)


def test_masks_past_the_limit_are_reported(predictor):
    words = "justice " * (predictor.max_length + 20)
    result = predictor.fill_mask_result("[MASK] " + words + " [MASK]", top_k=3)
    assert result.truncated and result.n_masks == 2 and len(result.predictions) == 1
    assert any("1 of the 2 [MASK]s lie past" in note for note in result.notes)
    with pytest.raises(InferenceError, match="past the first"):
        predictor.fill_mask(words + " [MASK]")


def test_huge_text_is_cut_before_tokenizing(predictor):
    result = predictor.fill_mask_result("[MASK] " + "x" * (MAX_CHARS * 5), top_k=1)
    assert result.truncated and any(f"{MAX_CHARS:,} characters" in note for note in result.notes)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "The text is empty"),
        ("   \n\t ", "The text is empty"),
        ("No mask in this sentence.", "has no [MASK]"),
        ("A lower-case [mask] here.", "exactly as [MASK]"),
        ("An xml-style <mask> here.", "exactly as [MASK]"),
        ("[CLS] [SEP] [PAD]", "The text is empty"),
        (None, "must be text"),
    ],
)
def test_fill_mask_bad_input_is_one_clear_sentence(predictor, text, message):
    with pytest.raises(InferenceError) as caught:
        predictor.fill_mask(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value) and str(caught.value).endswith(".")


@pytest.mark.parametrize(
    "a, b, message",
    [
        ("", "Something.", "Sentence A is empty"),
        ("Something.", "   ", "Sentence B is empty"),
        ("[SEP]", "Something.", "Sentence A is empty"),
        (42, "Something.", "Sentence A must be text"),
    ],
)
def test_nsp_bad_input_is_one_clear_sentence(predictor, a, b, message):
    with pytest.raises(InferenceError, match=message):
        predictor.predict_nsp(a, b)


def test_typed_special_tokens_are_left_out(predictor):
    clean = predictor.predict_nsp("The soul is dyed by its thoughts.", "So think well.")
    typed = predictor.predict_nsp("[CLS] The soul is dyed [SEP] by its thoughts.", "So [PAD] think well. [SEP]")
    assert typed.logits == pytest.approx(clean.logits, abs=1e-6)  # the same tokens reached the model
    assert any("[CLS], [SEP]" in note for note in typed.notes) and any("[SEP], [PAD]" in note for note in typed.notes)
    filled = predictor.fill_mask_result("[CLS] The [MASK] is short. [SEP]", top_k=3)
    assert filled.predictions == predictor.fill_mask("The [MASK] is short.", top_k=3)
    assert any("left out" in note for note in filled.notes)


def test_non_latin_and_emoji_are_read_as_unknown(predictor):
    result = predictor.predict_nsp("Τὰ εἰς ἑαυτόν 😀", "自省録 🙂 and some English.")
    assert math.isclose(sum(result.probabilities.values()), 1.0, abs_tol=1e-6)
    assert any("[UNK]" in note for note in result.notes)
    filled = predictor.fill_mask_result("😀 [MASK] 🙂", top_k=2)
    assert isinstance(filled, FillMaskResult) and len(filled.predictions) == 1


def test_threads_get_the_same_answers(predictor):
    expected = [predictor.predict_nsp(*pair).logits for pair in PAIRS]
    got: dict[int, tuple] = {}

    def work(index: int) -> None:
        got[index] = predictor.predict_nsp(*PAIRS[index % len(PAIRS)]).logits

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 16
    for index, logits in got.items():
        assert logits == pytest.approx(expected[index % len(PAIRS)], abs=1e-5)


# ----- checkpoints that are not usable -----


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _tiny_config(tokenizer) -> BertConfig:
    return BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )


def _masked_lm(tmp_path, tiny):
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    BertForMaskedLM(_tiny_config(tokenizer)).save_pretrained(tmp_path / "mlm")
    tokenizer.save_pretrained(tmp_path / "mlm")
    return tmp_path / "mlm"


def _nsp_only(tmp_path, tiny):
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    BertForNextSentencePrediction(_tiny_config(tokenizer)).save_pretrained(tmp_path / "nsp")
    tokenizer.save_pretrained(tmp_path / "nsp")
    return tmp_path / "nsp"


def _masked_lm_without_architectures(tmp_path, tiny):
    folder = _masked_lm(tmp_path, tiny)
    config = json.loads((folder / "config.json").read_text())
    config.pop("architectures")
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _truncated(tmp_path, tiny):
    folder = _copy(tiny, tmp_path / "cut")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


def _truncated_foreign(tmp_path, tiny):
    """A damaged save_pretrained folder that is not one of ours (no checksums to compare with)."""
    folder = _truncated(tmp_path, tiny)
    (folder / "checkpoint.json").unlink()
    return folder


def _garbage_weights(tmp_path, tiny):
    folder = _copy(tiny, tmp_path / "garbage")
    (folder / "model.safetensors").write_bytes(b"\x00\x01not safetensors at all" * 50)
    return folder


def _random_files(tmp_path, tiny):
    folder = tmp_path / "random"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    (folder / "data.bin").write_bytes(bytes(range(256)))
    return folder


def _bad_config(tmp_path, tiny):
    folder = _copy(tiny, tmp_path / "badjson")
    (folder / "config.json").write_text("{ not json")
    return folder


def _gpt2(tmp_path, tiny):
    folder = _copy(tiny, tmp_path / "gpt2")
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    return folder


def _pickled_only(tmp_path, tiny):
    folder = _copy(tiny, tmp_path / "pickled")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    return folder


def _no_tokenizer(tmp_path, tiny):
    folder = _copy(tiny, tmp_path / "notok")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (folder / name).unlink(missing_ok=True)
    return folder


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp, tiny: tmp / "does-not-exist", "does not exist"),
        (lambda tmp, tiny: tiny / "config.json", "is a file"),
        (lambda tmp, tiny: tmp, "holds no config.json"),
        (_random_files, "holds no config.json"),
        (_bad_config, "not valid JSON"),
        (_gpt2, "not BERT"),
        (_masked_lm, "BertForMaskedLM, which has no next-sentence-prediction head"),
        (_nsp_only, "has no masked-word (MLM) head"),
        (_masked_lm_without_architectures, "has no next-sentence-prediction head"),
        (_truncated, "is damaged"),  # caught by the sha256 that checkpoint.json recorded
        (_truncated_foreign, "could not be read"),
        (_garbage_weights, "is damaged"),
        (_pickled_only, "only pickled weights"),
        (_no_tokenizer, "tokenizer.json is missing"),  # its checksum was recorded at save time
    ],
    ids=[
        "missing",
        "file",
        "empty",
        "random-files",
        "bad-json",
        "gpt2",
        "masked-lm",
        "nsp-only",
        "masked-lm-no-arch",
        "truncated",
        "truncated-foreign",
        "garbage",
        "pickled",
        "no-tokenizer",
    ],
)
def test_unusable_checkpoint_is_one_clear_sentence(tmp_path, tiny_checkpoint, make, message):  # noqa: F811
    folder = make(tmp_path, tiny_checkpoint)
    with pytest.raises(CheckpointError) as caught:
        Predictor.from_checkpoint(folder)
    text = str(caught.value)
    assert message in text
    assert str(folder) in text
    assert "\n" not in text and text.endswith(".")


def test_any_bert_with_both_heads_loads(tmp_path, tiny_checkpoint):  # noqa: F811
    """A BertForPreTraining saved by plain transformers: no profile.json, no metrics.json."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    folder = tmp_path / "plain"
    BertForPreTraining(_tiny_config(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    predictor = Predictor.from_checkpoint(folder)
    assert predictor.max_length == 512  # the model's own limit
    assert len(predictor.fill_mask("a [MASK] b", top_k=2)) == 1
    assert Predictor.from_checkpoint(folder, max_length=32).max_length == 32


@pytest.fixture(scope="module")
def hand_embedded(scratch_tokenizer):
    """A tiny BertForPreTraining whose word-embedding rows are set by hand around 'soul' (hidden size 32).

    'soul' is e0; 'mind', 'reason' and 'nature' lean away from it by more and more (cosine 0.995, 0.894, 0.707);
    the special tokens sit exactly on e0 (cosine 1) and every other row is orthogonal to e0 (cosine 0).
    """
    from helpers.config import get_profile
    from helpers.model import scratch_config

    tokenizer = scratch_tokenizer
    model = BertForPreTraining(scratch_config(get_profile("tiny"), tokenizer))
    table = torch.zeros_like(model.get_input_embeddings().weight)  # (vocab, 32)
    table[:, 2:] = torch.randn(table.shape[0], 30, generator=torch.Generator().manual_seed(0))  # orthogonal to e0
    ids = dict(
        zip(["soul", "mind", "reason", "nature"], tokenizer.convert_tokens_to_ids(["soul", "mind", "reason", "nature"]))
    )
    for word, lean in [("soul", 0.0), ("mind", 0.1), ("reason", 0.5), ("nature", 1.0)]:
        table[ids[word]] = 0
        table[ids[word], 0], table[ids[word], 1] = 1.0, lean
    table[sorted(set(tokenizer.all_special_ids))] = 0
    table[sorted(set(tokenizer.all_special_ids)), 0] = 1.0
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(table)
    return model, tokenizer


def test_nearest_tokens_are_the_closest_rows_in_order(hand_embedded):
    from helpers.inference import nearest_tokens

    model, tokenizer = hand_embedded
    found = nearest_tokens(model, tokenizer, ["soul", "Mind"], k=5)
    assert list(found) == ["soul", "Mind"]
    soul = found["soul"]
    assert [token for token, _ in soul[:3]] == ["mind", "reason", "nature"]
    assert [round(cos, 3) for _, cos in soul[:3]] == [0.995, 0.894, 0.707]
    assert len(soul) == 5 and all(abs(cos) < 1e-6 for _, cos in soul[3:])  # then the orthogonal rows
    assert [token for token, _ in found["Mind"][:2]] == ["soul", "reason"]  # cased input, uncased vocabulary
    for word, neighbours in found.items():
        tokens = {token for token, _ in neighbours}
        assert not tokens & set(tokenizer.all_special_tokens)  # the specials sit on e0 yet never appear
        assert tokenizer.tokenize(word)[0] not in tokens  # nor the word itself


def test_nearest_tokens_of_every_row_leave_out_specials_and_the_word(hand_embedded):
    from helpers.inference import nearest_tokens

    model, tokenizer = hand_embedded
    everything = nearest_tokens(model, tokenizer, ["soul"], k=len(tokenizer))["soul"]
    assert len(everything) == len(tokenizer) - len(set(tokenizer.all_special_ids)) - 1
    assert [cos for _, cos in everything] == sorted((cos for _, cos in everything), reverse=True)


@pytest.mark.parametrize("word, shown", [("unintelligible", "'un', '##in'"), ("☃", "'[UNK]'")])
def test_nearest_tokens_of_a_word_that_is_not_one_token_is_one_clear_sentence(hand_embedded, word, shown):
    from helpers.inference import nearest_tokens

    model, tokenizer = hand_embedded
    with pytest.raises(ValueError) as info:
        nearest_tokens(model, tokenizer, ["soul", word])
    message = str(info.value)
    assert message.startswith(f"{word!r} is not one token") and shown in message
    assert f"tokenizer.tokenize({word!r})" in message and message.count(". ") == 0


def test_word_ranks_read_the_word_off_the_stock_forwards_full_ranking(predictor):
    """Rank 1 is the top guess; a word's rank and probability are its place in the MLM head's softmax at the [MASK]."""
    from helpers.inference import word_ranks

    model, tokenizer = predictor.model, predictor.tokenizer
    texts = ["The [MASK] of the universe.", "Live according to [MASK].", "Nothing is [MASK] to the soul."]
    checked = 0
    for text in texts:
        enc = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).prediction_logits[0]  # (seq_len, vocab)
        probs = logits[enc["input_ids"][0] == tokenizer.mask_token_id][0].softmax(-1)  # (vocab,)
        order = probs.argsort(descending=True).tolist()  # every token, likeliest first
        typed = [
            i for i, token in enumerate(tokenizer.convert_ids_to_tokens(order)) if tokenizer.tokenize(token) == [token]
        ]  # places of the tokens a learner can type as a word
        for index in (typed[0], typed[len(typed) // 2], typed[-1]):  # near the top, the middle and the bottom
            word = tokenizer.convert_ids_to_tokens(order[index])
            (found,) = word_ranks(model, tokenizer, [text], [word])
            assert found.word == word and found.rank == index + 1
            assert found.probability == pytest.approx(probs[order[index]].item(), abs=1e-6)
            assert found.top == tokenizer.convert_ids_to_tokens(order[0])
            assert found.top_probability == pytest.approx(probs[order[0]].item(), abs=1e-6)
            checked += 1
    assert checked == 9
    batched = word_ranks(model, tokenizer, texts, ["nature"] * 3)  # padded together: the same answers as one by one
    for text, together in zip(texts, batched):
        (alone,) = word_ranks(model, tokenizer, [text], ["nature"])
        assert (together.rank, together.top) == (alone.rank, alone.top)
        assert together.probability == pytest.approx(alone.probability, abs=1e-5)


@pytest.mark.parametrize(
    "texts, words, message",
    [
        (["The [MASK] of things."], ["unintelligible"], "'unintelligible' is not one token"),
        (["No mask here."], ["soul"], "holds 0 [MASK] tokens"),
        (["Two [MASK] and [MASK]."], ["soul"], "holds 2 [MASK] tokens"),
        (["The [MASK].", "A [MASK]."], ["soul"], "2 texts and 1 words"),
    ],
)
def test_word_ranks_bad_input_is_one_clear_sentence(predictor, texts, words, message):
    from helpers.inference import word_ranks

    with pytest.raises(ValueError, match=re.escape(message)):
        word_ranks(predictor.model, predictor.tokenizer, texts, words)
