"""The checkpoint carries its memory: saved whole with the weights, read by the demo, and never in the way.

A checkpoint without its context-count table, with a damaged one, or with one built for another tokenizer or other
training text gets one clear sentence, and the model alone still serves; stock transformers loads the model alone.
"""

from __future__ import annotations

import json
import shutil

import pytest
from transformers import pipeline

from helpers.checkpoint import read_json, verify_files
from helpers.config import get_profile
from helpers.dataset import prepare_data
from helpers.memory import MEMORY_FILE, ContextCounts
from helpers.serving import Predictor
from helpers.tokens import train_scratch_tokenizer
from tests.app_fixtures import tiny_checkpoint  # noqa: F401 - a fixture

TEXT = "The [MASK] of a man is the work of his reason."


@pytest.fixture
def copy(tiny_checkpoint, tmp_path):  # noqa: F811
    """A copy of the tiny checkpoint that a test may damage."""
    return shutil.copytree(tiny_checkpoint, tmp_path / "run")


def test_the_checkpoint_holds_its_memory_checksummed_with_the_weights(tiny_checkpoint):  # noqa: F811
    marker = read_json(tiny_checkpoint / "checkpoint.json")
    assert MEMORY_FILE in marker["sha256"]  # written in the same whole-or-absent save, checksummed with the rest
    recorded = json.loads((tiny_checkpoint / "metrics.json").read_text())["memory"]
    cfg = get_profile("tiny")
    data = prepare_data(cfg)
    expected = ContextCounts.build(data.training_text(cfg).ids, data.tokenizer)  # from the training paragraphs only
    assert recorded["text_fingerprint"] == expected.text_fingerprint
    predictor = Predictor.from_checkpoint(tiny_checkpoint)
    assert predictor.memory is not None and predictor.memory_note is None
    result = predictor.fill_mask_result(TEXT, top_k=3)
    for answer in (result.predictions, result.memory_predictions, result.mixed_predictions):
        assert len(answer) == 1 and len(answer[0]) == 3  # three answers, one list per [MASK], top-3 each
        assert all(0 <= p <= 1 for _, p in answer[0]) and answer[0][0][1] >= answer[0][-1][1]


def test_stock_transformers_loads_the_model_alone_beside_its_memory(tiny_checkpoint):  # noqa: F811
    fill = pipeline("fill-mask", model=str(tiny_checkpoint))
    assert len(fill(TEXT, top_k=2)) == 2


def _serves_alone(folder, words: str) -> Predictor:
    predictor = Predictor.from_checkpoint(folder)
    assert predictor.memory is None and words in predictor.memory_note, predictor.memory_note
    assert predictor.memory_note.endswith("so fill-mask shows the model alone.")
    assert predictor.memory_note.count(". ") == 0  # one sentence
    result = predictor.fill_mask_result(TEXT, top_k=3)
    assert len(result.predictions[0]) == 3 and result.memory_predictions is None and result.mixed_predictions is None
    return predictor


def test_without_its_memory_the_model_serves_alone(copy):
    (copy / MEMORY_FILE).unlink()
    _serves_alone(copy, "There is no context-count file")


def test_a_damaged_memory_leaves_the_model_to_serve_alone(copy):
    raw = bytearray((copy / MEMORY_FILE).read_bytes())
    raw[-10] ^= 0xFF  # one byte of the counts
    (copy / MEMORY_FILE).write_bytes(bytes(raw))
    verify_files(copy, skip=(MEMORY_FILE,))  # the rest of the checkpoint is whole
    _serves_alone(copy, "is damaged")


def test_a_memory_of_another_tokenizer_or_other_text_is_refused(copy, paragraphs):
    cfg = get_profile("tiny")
    data = prepare_data(cfg)
    other = train_scratch_tokenizer(paragraphs[200:320], vocab_size=1000)  # another vocabulary
    ContextCounts.build(other(paragraphs[:5])["input_ids"], other).save(copy / MEMORY_FILE)
    _serves_alone(copy, "another tokenizer's vocabulary")
    # The right tokenizer, but counted on other paragraphs than the run trained on: the recorded fingerprint differs.
    ContextCounts.build(data.tokenizer(paragraphs[-20:])["input_ids"], data.tokenizer).save(copy / MEMORY_FILE)
    _serves_alone(copy, "counted on other training text")


def test_the_demo_says_when_it_serves_the_model_alone(copy):
    from helpers.app import FILL_HEADERS, build_demo, fill_handler

    (copy / MEMORY_FILE).unlink()
    demo = build_demo(copy)
    info = next(b.value for b in demo.blocks.values() if getattr(b, "elem_id", None) == "checkpoint-info")
    assert "**Memory** none: There is no context-count file" in info
    shown, tables = fill_handler(demo.predictor)([TEXT], [3])
    assert "With the memory" not in shown[0] and all(len(row) == len(FILL_HEADERS) for row in tables[0])


def test_the_profile_mixes_at_the_strength_the_experiment_chose():
    from helpers.config import ROOT, Config
    from helpers.memory import MODEL_STRENGTH

    chosen = json.loads((ROOT / "benchmarks" / "memory.json").read_text())["constants"]["memory_strength"]
    assert Config.memory_strength == MODEL_STRENGTH == chosen == get_profile("default").memory_strength
