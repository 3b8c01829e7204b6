"""Shared fixtures: the real corpus, its sentences, a scratch tokenizer and the tiny profile."""

import os

# Before anything imports transformers or wandb: no hub, no tracking, no telemetry in tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# `make test` runs two pytest-xdist workers side by side: each gets its share of the cores for torch's threads, and so
# do the notebook kernels and processes it starts (they inherit the variable). Two workers with two threads each on
# two cores spin against each other: notebook 04's training took 653 s instead of 85.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import pytest

from helpers.config import ROOT, Config, get_profile
from helpers.corpus import SHA256, read_paragraphs, sha256_of
from helpers.pairs import split_corpus

CORPUS = ROOT / "data" / "meditations.txt"


@pytest.fixture(scope="session")
def corpus_file():
    """The checked corpus in data/; the tests never download it."""
    if not CORPUS.is_file():
        pytest.fail(
            f"{CORPUS} is missing: run `python -c 'import helpers.corpus as c; c.ensure_corpus()'` once online."
        )
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


# The checkpoint notebook 04 trains and notebooks 05 and 06 read: a finished run of the default profile. The test files
# that need a real default run (the default_run fixture below) read it too: after the notebooks, on their worker.
NOTEBOOK_RUN = ROOT / "runs" / "notebook"
NOTEBOOK_READERS = ("test_learning.py", "test_pretrained_start.py")


def work_unit(path: str) -> str:
    """What one pytest-xdist worker runs whole and in order: the six notebooks with the readers, or one test file."""
    name = path.rpartition("/")[2]
    return "notebooks" if name.endswith(".ipynb") or name in NOTEBOOK_READERS else path


def pytest_xdist_make_scheduler(config, log):
    """`make test`'s workers hand out work units, not single tests: a file's module fixtures are built once, and a
    notebook's cells share one kernel. (xdist's own --dist loadgroup renames node ids, which pytest 9.2 ignores.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid.partition("::")[0])

    return ByWorkUnit(config, log)


def pytest_collection_modifyitems(config, items):
    """The notebooks first, so their long unit starts at once on one worker, the readers after them (05 and 06 and
    the readers use the checkpoint 04 trains); the test files after that, in their own order."""
    first = [item for item in items if work_unit(item.path.name) == "notebooks"]
    readers = [item for item in first if item.path.suffix != ".ipynb"]
    items[:] = [item for item in first if item not in readers] + readers + [item for item in items if item not in first]


def _load_run_notebooks():
    """scripts/run_notebooks.py as a module: how the project runs a notebook (``make notebooks``), which tests reuse."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_notebooks = _load_run_notebooks()
notebook_client = run_notebooks.SteadyClient  # the tests that start a kernel run it as make notebooks does


@pytest.fixture(scope="session")
def default_run():
    """A finished run of the default profile (checkpoint, final, epochs, baselines): notebook 04's, else one here."""
    from types import SimpleNamespace

    from helpers.checkpoint import read_json
    from helpers.record import record_profile
    from helpers.train import ensure_trained

    cfg = get_profile("default", wandb="disabled")
    saved = read_json(NOTEBOOK_RUN / "profile.json") or {}
    # A learner's own run there (other options) is left alone: the tests then train the default in a folder of theirs.
    same = {k: v for k, v in saved.items() if k not in ("corpus", "wandb")} == record_profile(cfg)
    folder = NOTEBOOK_RUN if same or not NOTEBOOK_RUN.exists() else ROOT / "runs" / "tests-default"
    metrics = read_json(ensure_trained(cfg, folder, progress_bar=False, verbose=False, track=False) / "metrics.json")
    return SimpleNamespace(
        checkpoint=folder, final=metrics["final"], epochs=metrics["epochs"], baselines=metrics["baselines"]
    )


@pytest.fixture
def tiny_cfg() -> Config:
    """The tiny profile (fresh per test, so tests may change it)."""
    return get_profile("tiny")
