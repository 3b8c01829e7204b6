"""The scratch tokenizer (bert-base-uncased special ids, deterministic, stock save/load) and pair tokenization."""

import json
import os
import subprocess
import sys

import pytest
from transformers import AutoTokenizer

from helpers.config import ROOT
from helpers.pairs import IS_NEXT, IS_RANDOM, Pair, make_pairs
from helpers.tokens import ModelSourceError, check_max_length, load_tokenizer, tokenize_pairs, train_scratch_tokenizer

# bert-base-uncased's ids for its special tokens, which the scratch tokenizer reproduces so that the notebooks read the
# same offline and online (code asks tokenizer.*_token_id, never these numbers).
BERT_SPECIAL_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}


def test_scratch_special_ids_are_bert_base_uncased(scratch_tokenizer):
    tok = scratch_tokenizer
    assert {token: tok.convert_tokens_to_ids(token) for token in BERT_SPECIAL_IDS} == BERT_SPECIAL_IDS
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (
        0,
        100,
        101,
        102,
        103,
    )
    assert len(tok) == 1000
    assert sorted(tok.all_special_ids) == [0, 100, 101, 102, 103]
    # The [unusedN] fillers are ordinary vocabulary entries, not special tokens.
    assert tok.convert_ids_to_tokens(1) == "[unused0]"
    assert "[unused0]" not in tok.all_special_tokens


def test_scratch_tokenizer_is_lowercase_wordpiece(scratch_tokenizer):
    tokens = scratch_tokenizer.tokenize("Remember THIS, Antoninus!")
    assert tokens == [t.lower() for t in tokens]
    assert "," in tokens and "!" in tokens
    assert (
        scratch_tokenizer.decode(scratch_tokenizer("remember this")["input_ids"], skip_special_tokens=True)
        == "remember this"
    )


def test_training_is_deterministic(paragraphs):
    # tokenizers' trainer breaks ties in hash-map order (huggingface/tokenizers#1794); the helper works around it.
    first = train_scratch_tokenizer(paragraphs, vocab_size=2000).get_vocab()
    second = train_scratch_tokenizer(paragraphs, vocab_size=2000).get_vocab()
    assert first == second
    assert len(first) == 2000


def test_training_is_deterministic_across_processes(paragraphs):
    # Hash-map order changes with the process's hash seed, so compare with a fresh process of another seed.
    script = (
        "import sys, json; from helpers.corpus import read_paragraphs; "
        "from helpers.tokens import train_scratch_tokenizer; "
        "print(json.dumps(train_scratch_tokenizer(read_paragraphs(sys.argv[1]), 1500).get_vocab()))"
    )
    here = train_scratch_tokenizer(paragraphs, vocab_size=1500).get_vocab()
    hash_seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(ROOT / "data" / "meditations.txt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == here


def test_vocab_size_too_small():
    with pytest.raises(ModelSourceError, match="--vocab-size=150 is too small"):
        train_scratch_tokenizer(["some text here"], vocab_size=150)


def test_saves_and_reloads_with_stock_autotokenizer(scratch_tokenizer, tmp_path, paragraphs):
    scratch_tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.get_vocab() == scratch_tokenizer.get_vocab()
    assert (reloaded.mask_token_id, reloaded.pad_token_id, reloaded.cls_token_id) == (103, 0, 101)
    a, b = paragraphs[3][:200], paragraphs[10][:200]
    assert reloaded(a, b).data == scratch_tokenizer(a, b).data
    assert reloaded(paragraphs[:20]).data == scratch_tokenizer(paragraphs[:20]).data
    # load_tokenizer takes the same folder (a local directory is an offline source).
    assert load_tokenizer(str(tmp_path))(a, b).data == scratch_tokenizer(a, b).data


def test_pairs_become_bert_features(scratch_tokenizer):
    tok = scratch_tokenizer
    pairs = [
        Pair("The mind is free.", "It chooses.", IS_NEXT, 0, 0),
        Pair("Short.", "Another paragraph's sentence here.", IS_RANDOM, 1, 5),
    ]
    enc = tokenize_pairs(tok, pairs, max_length=64)
    assert set(enc) == {"input_ids", "token_type_ids", "attention_mask", "special_tokens_mask", "next_sentence_label"}
    assert enc["next_sentence_label"] == [IS_NEXT, IS_RANDOM]
    for k, pair in enumerate(pairs):
        ids, types = enc["input_ids"][k], enc["token_type_ids"][k]
        a_ids = tok(pair.sentence_a, add_special_tokens=False)["input_ids"]
        b_ids = tok(pair.sentence_b, add_special_tokens=False)["input_ids"]
        # [CLS] A [SEP] B [SEP], segment 0 for the first three parts and 1 for the last two
        assert ids == [tok.cls_token_id] + a_ids + [tok.sep_token_id] + b_ids + [tok.sep_token_id]
        assert types == [0] * (len(a_ids) + 2) + [1] * (len(b_ids) + 1)
        assert enc["attention_mask"][k] == [1] * len(ids)
        assert enc["special_tokens_mask"][k] == [1] + [0] * len(a_ids) + [1] + [0] * len(b_ids) + [1]


def test_lengths_and_longest_first_truncation(scratch_tokenizer, period_sentences):
    tok = scratch_tokenizer
    long_a = " ".join(["reason governs the whole"] * 40)
    short_b = "It is enough."
    enc = tokenize_pairs(tok, [Pair(long_a, short_b, IS_NEXT, 0, 0)], max_length=32)
    ids, types = enc["input_ids"][0], enc["token_type_ids"][0]
    assert len(ids) == 32
    b_ids = tok(short_b, add_special_tokens=False)["input_ids"]
    assert ids[-len(b_ids) - 1 :] == b_ids + [tok.sep_token_id]  # the short segment survives whole
    assert types.count(1) == len(b_ids) + 1
    # Both long: each keeps about half.
    enc = tokenize_pairs(tok, [Pair(long_a, long_a, IS_NEXT, 0, 0)], max_length=33)
    assert len(enc["input_ids"][0]) == 33 and abs(enc["token_type_ids"][0].count(1) - 15) <= 1
    # The whole corpus at a small max_length: nothing longer, padding only on request.
    pairs = make_pairs(period_sentences, seed=0)
    for max_length, some in ((8, pairs[:20]), (16, pairs), (64, pairs)):  # heavy truncation is slow in tokenizers
        enc = tokenize_pairs(tok, some, max_length=max_length)
        assert max(map(len, enc["input_ids"])) <= max_length
        assert all(
            ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id and ids.count(tok.sep_token_id) == 2
            for ids in enc["input_ids"]
        )
    padded = tokenize_pairs(tok, pairs[:10], max_length=64, pad_to_max_length=True)
    assert {len(ids) for ids in padded["input_ids"]} == {64}
    assert all(
        mask[len(ids) - ids.count(tok.pad_token_id) :] == [0] * ids.count(tok.pad_token_id)
        for ids, mask in zip(padded["input_ids"], padded["attention_mask"])
    )


@pytest.mark.parametrize("max_length", [0, 7, 513, 4096])
def test_max_length_out_of_range(scratch_tokenizer, max_length):
    pair = Pair("a b", "c d", IS_NEXT, 0, 0)
    with pytest.raises(ValueError, match=f"--max-length={max_length} .*8 to 512") as info:
        tokenize_pairs(scratch_tokenizer, [pair], max_length=max_length)
    assert str(info.value).count(". ") == 0 and str(info.value).endswith(".")


def test_max_length_respects_the_model_limit(scratch_tokenizer):
    check_max_length(8, scratch_tokenizer)
    check_max_length(512, scratch_tokenizer)
    with pytest.raises(ValueError, match="8 to 128"):
        check_max_length(256, scratch_tokenizer, model_limit=128)


def test_unreachable_hub_model_names_the_offline_alternatives(tmp_path):
    # A fresh process, offline, with an empty cache: the hub id cannot be resolved.
    script = (
        "from helpers.tokens import load_tokenizer, ModelSourceError\n"
        "try:\n    load_tokenizer('bert-base-uncased')\n"
        "except ModelSourceError as err:\n    print('ModelSourceError:', err)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(ROOT)}
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ModelSourceError:")
    assert "'bert-base-uncased'" in done.stdout
    assert "--model scratch" in done.stdout and "local checkpoint directory" in done.stdout


def test_bad_local_sources(tmp_path):
    with pytest.raises(ModelSourceError, match="--model scratch"):
        load_tokenizer(str(tmp_path))  # an empty folder
    with pytest.raises(ModelSourceError, match="needs the corpus text"):
        load_tokenizer("scratch", texts=[])
