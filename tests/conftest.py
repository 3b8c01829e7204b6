"""Shared fixtures: the real corpus, its sentences, a scratch tokenizer and the tiny profile."""

import os

# Before anything imports transformers or wandb: no hub, no tracking, no telemetry in tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402

from helpers.config import ROOT, Config, get_profile  # noqa: E402
from helpers.corpus import SHA256, read_paragraphs, sha256_of  # noqa: E402
from helpers.pairs import split_corpus  # noqa: E402

CORPUS = ROOT / "data" / "meditations.txt"


@pytest.fixture(scope="session")
def corpus_file():
    """The checked corpus in data/; the tests never download it."""
    if not CORPUS.is_file():
        pytest.fail(f"{CORPUS} is missing: run `python -c 'import helpers.corpus as c; c.ensure_corpus()'` once online.")
    assert sha256_of(CORPUS) == SHA256, f"{CORPUS} is not the expected Meditations text"
    return CORPUS


@pytest.fixture(scope="session")
def paragraphs(corpus_file) -> list[str]:
    """All paragraphs of data/meditations.txt (507 of them)."""
    return read_paragraphs(corpus_file)


@pytest.fixture(scope="session")
def period_sentences(paragraphs) -> dict[int, list[str]]:
    """Paragraph index -> sentences, with the reference recipe's '.' splitter."""
    return split_corpus(paragraphs, "period")


@pytest.fixture(scope="session")
def smart_sentences(paragraphs) -> dict[int, list[str]]:
    """Paragraph index -> sentences, with the smart splitter."""
    return split_corpus(paragraphs, "smart")


@pytest.fixture(scope="session")
def scratch_tokenizer(paragraphs):
    """A WordPiece tokenizer trained on the whole corpus (1,000 tokens; about 0.1 s)."""
    from helpers.tokens import train_scratch_tokenizer

    return train_scratch_tokenizer(paragraphs, vocab_size=1000)


# The checkpoint notebook 04 trains and notebooks 05 and 06 read: a finished run of the default profile. The tests
# that need a real default run (marked xdist_group("notebooks")) read it too, after the notebooks, on their worker.
NOTEBOOK_RUN = ROOT / "runs" / "notebook"


def pytest_collection_modifyitems(config, items):
    """For `make test`'s workers (pytest-xdist, --dist loadgroup): each test file runs on one worker, so its module
    fixtures are built once; the six notebooks run on one worker, in order (05 and 06 read the checkpoint 04 trains),
    followed by the tests that read that checkpoint too."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.xdist_group("notebooks"))
        elif not any(mark.name == "xdist_group" for mark in item.iter_markers()):
            item.add_marker(pytest.mark.xdist_group(item.path.name))
    readers = [item for item in items if item.path.suffix != ".ipynb" and
               any(mark.name == "xdist_group" and mark.args == ("notebooks",) for mark in item.iter_markers())]
    items[:] = [item for item in items if item not in readers] + readers  # after the notebooks, which come last


@pytest.fixture(scope="session")
def default_run():
    """A finished run of the default profile (checkpoint, final, epochs, baselines): notebook 04's, else trained here."""
    from types import SimpleNamespace

    from helpers.checkpoint import read_json
    from helpers.record import record_profile
    from helpers.train import ensure_trained

    cfg = get_profile("default", wandb="disabled")
    saved = read_json(NOTEBOOK_RUN / "profile.json") or {}
    # A learner's own run there (other options) is left alone: the tests then train the default in a folder of theirs.
    same = {k: v for k, v in saved.items() if k not in ("corpus", "wandb")} == record_profile(cfg)
    folder = NOTEBOOK_RUN if same or not NOTEBOOK_RUN.exists() else ROOT / "runs" / "tests-default"
    metrics = read_json(ensure_trained(cfg, folder, progress=False, verbose=False, track=False) / "metrics.json")
    return SimpleNamespace(checkpoint=folder, final=metrics["final"], epochs=metrics["epochs"],
                           baselines=metrics["baselines"])


@pytest.fixture
def tiny_cfg() -> Config:
    """The tiny profile (fresh per test, so tests may change it)."""
    return get_profile("tiny")
