"""Pretraining on your own text: `python -m helpers.train --corpus FILE` end to end, and bad files in one sentence.

The README and the end of notebook 06 show this command; here it runs on a small book this test writes.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from helpers.config import ROOT

pytestmark = pytest.mark.slow  # a real command-line run: about 15 s

WORDS = "lighthouse keeper lamp storm harbour gull tide rope lantern fog bell cliff wave boat net salt".split()


def small_book(path, paragraphs: int = 60, seed: int = 0) -> None:
    """A made-up book, one paragraph per line: a few sentences each, from a small vocabulary of its own."""
    rng = random.Random(seed)
    lines = []
    for _ in range(paragraphs):
        sentences = [" ".join(rng.choices(WORDS, k=rng.randint(5, 10))).capitalize() + "." for _ in range(3)]
        lines.append(" ".join(sentences))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def train(corpus, output) -> subprocess.CompletedProcess:
    args = ["--profile", "tiny", "--epochs", "1", "--corpus", str(corpus), "--output", str(output)]
    return subprocess.run(
        [sys.executable, "-m", "helpers.train", *args, "--wandb", "disabled", "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_your_own_text_trains_its_own_tokenizer_split_and_baselines(tmp_path):
    book = tmp_path / "lighthouse.txt"
    small_book(book)
    done = train(book, tmp_path / "run")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "60 paragraphs" in done.stdout  # the split is of this text
    run = tmp_path / "run"
    vocabulary = json.loads((run / "tokenizer.json").read_text())["model"]["vocab"]
    assert {"lighthouse", "keeper", "harbour"} <= set(vocabulary)  # a tokenizer of this text, not of the book
    profile = json.loads((run / "profile.json").read_text())
    assert profile["corpus"] == "lighthouse.txt"  # named, with no path of this machine
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 < metrics["baselines"]["baseline_unigram"] < 1  # counted on this text's training paragraphs


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", "holds no text; pass a file with one paragraph per line."),
        (b"One paragraph only. It has two sentences.\n", "put each paragraph on a line of its own"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00binary", "looks like a binary file (it holds NUL bytes)"),
    ],
    ids=["empty", "one paragraph", "binary"],
)
def test_a_file_that_cannot_be_a_corpus_is_one_sentence(tmp_path, capsys, content, said):
    from helpers.train import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(content)
    # The command line's own entry point, in this process (the run above starts a real one).
    args = ["--profile", "tiny", "--corpus", str(corpus), "--output", str(tmp_path / "run"), "--wandb", "disabled"]
    assert main([*args, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")  # one sentence, no stack trace
    assert not (tmp_path / "run" / "checkpoint.json").exists()
