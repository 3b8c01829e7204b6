"""Notebooks 04-06 run to the end from a pretrained start, the Colab path (`bert-base`), with no hub.

The hub is unreachable here, so the pretrained model is the session's run of the default profile (tests/conftest.py's
default_run: its loss ends far below a fresh model's); the three notebooks run under the bert-base profile pointed at
that folder through $BERT_MEDITATIONS_ARGS, in a copy of the repository (their runs/notebook must not replace the one
nbval reads).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from helpers.config import ROOT
from tests.conftest import notebook_client

# After the notebooks, on their worker: the session's default run is the checkpoint notebook 04 trained.
pytestmark = pytest.mark.slow  # reads notebook 04's checkpoint: runs after the notebooks (tests/conftest.py)

NOTEBOOKS = ["04_training.ipynb", "05_inference.ipynb", "06_gradio_demo.ipynb"]
# A short bert-base run: the profile's recipe (pretrained start, 256 tokens, 80/10/10) on part of the book.
ARGS = "--epochs 1 --max-paragraphs 150 --batch-size 8"


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """The tracked files and the corpus cache, in a folder of their own."""
    root = tmp_path_factory.mktemp("checkout")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in [p.decode() for p in tracked if p] + ["data/meditations.txt"]:
        source = ROOT / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    return root


@pytest.fixture(scope="module")
def pretrained(default_run) -> Path:
    """A small BERT that has learned something: its MLM loss ends well below a uniform guess's ln(vocabulary)."""
    folder = default_run.checkpoint
    final = json.loads((folder / "metrics.json").read_text())["final"]
    vocabulary = json.loads((folder / "config.json").read_text())["vocab_size"]
    # Notebook 04's first-loss check tells a pretrained start from a fresh one; a fresh one is within 1.5 of uniform.
    assert final["mlm_loss"] < math.log(vocabulary) - 1.5, (final["mlm_loss"], math.log(vocabulary))
    return folder


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_from_a_pretrained_start(name, copy, pretrained, monkeypatch):
    # The kernel inherits this process's environment; PYTHONPATH puts the copy's helpers first.
    for key, value in {
        "BERT_MEDITATIONS_PROFILE": "bert-base",
        "BERT_MEDITATIONS_ARGS": f"--model {pretrained} {ARGS}",
        "PYTHONPATH": str(copy),
        "PYTHONHASHSEED": "0",
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(copy / "notebooks" / name, as_version=4)
    notebook_client(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(copy / "notebooks")}}
    ).execute()
    printed = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs)
    assert "profile 'bert-base'" in printed and f"starting from the pretrained {pretrained}" in printed
