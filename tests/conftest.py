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


def pytest_collection_modifyitems(config, items):
    """For `make test`'s workers (pytest-xdist, --dist loadgroup): each test file runs on one worker, so its module
    fixtures are built once; the six notebooks run on one worker, in order (05 and 06 read the checkpoint 04 trains)."""
    for item in items:
        if not any(mark.name == "xdist_group" for mark in item.iter_markers()):
            group = "notebooks" if item.path.suffix == ".ipynb" else item.path.name
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """The default profile trained once (what `make demo` trains), for the tests that read a real run: its result."""
    from helpers.train import train

    return train(get_profile("default", wandb="disabled"), tmp_path_factory.mktemp("default") / "run", progress=False,
                 verbose=False, track=False)


@pytest.fixture
def tiny_cfg() -> Config:
    """The tiny profile (fresh per test, so tests may change it)."""
    return get_profile("tiny")
