"""Re-execute the notebooks in place and store their outputs (``make notebooks``).

    python scripts/run_notebooks.py                 # all of notebooks/*.ipynb, in order
    python scripts/run_notebooks.py 03 05           # only the notebooks whose names contain 03 or 05

The stored outputs are what nbval compares against in ``make test``, so they are produced the way the test
runs them: the default profile (what `make lab` picks on a CPU), PYTHONHASHSEED=0, no network, a python3 kernel
from this environment and the notebooks/ folder as working directory. Three things differ, all about how the
outputs read on GitHub: progress bars are stored as text, a live page's iframe is not stored, and the repository URL
of each notebook's badge and Colab cell is (re)written from REPO_URL below first.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from queue import Empty

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

# The one place the repository's address lives: this script writes it into every notebook's Colab badge and
# setup cell, and tests/test_notebooks.py fails when a notebook disagrees. Set REPO_PUBLISHED = True once
# REPO_URL is a real repository; until then the setup cell stops on Colab with one sentence saying so.
REPO_URL = "https://github.com/bert-meditations/bert-meditations"
REPO_PUBLISHED = False
BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^/\s]+/[^/\s]+/blob/main/notebooks/")
REPO_LINE = re.compile(r'^REPO = ".*"$', re.MULTILINE)
PUBLISHED_LINE = re.compile(r"^REPO_PUBLISHED = (True|False)$", re.MULTILINE)

# tqdm.auto draws a widget in a kernel. A notebook stored without a live frontend keeps only the widget's first
# frame ("0/4") and GitHub renders no widgets at all, so the kernels this script starts use tqdm's text bar
# instead (set before any cell runs, so helpers.train picks it up too); nbclient's coalesce_streams then keeps
# the last frame of each bar. In Jupyter itself nothing changes: the bars stay widgets.
TEXT_BARS = "--IPKernelApp.exec_lines=import tqdm.auto, tqdm.std; tqdm.auto.tqdm = tqdm.std.tqdm"
WIDGET = "application/vnd.jupyter.widget-view+json"
# A page served on this machine (Gradio's inline iframe) is dead in a stored copy: the server has stopped.
LOOPBACK_FRAME = re.compile(r"<iframe[^>]+src=\"https?://(?:127\.0\.0\.1|localhost)[:/]")

# The environment of `make test` (the kernel inherits it; PYTHONHASHSEED only counts before a kernel starts).
FORCED_ENV = {"BERT_MEDITATIONS_PROFILE": "default", "BERT_MEDITATIONS_ARGS": "", "PYTHONHASHSEED": "0"}
# Quiet and offline unless the caller says otherwise.
DEFAULT_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "TOKENIZERS_PARALLELISM": "false",
}


def select(patterns: list[str]) -> list[Path]:
    """The notebooks to run, in name order (later ones reuse what earlier ones leave in runs/)."""
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not patterns:
        return found
    chosen = [nb for nb in found if any(p in nb.name for p in patterns)]
    if not chosen:
        raise SystemExit(
            f"error: no notebook in {NOTEBOOKS.relative_to(ROOT)}/ matches {' '.join(patterns)}; "
            f"pass part of a name such as 03."
        )
    return chosen


def stamp_repo(nb: nbformat.NotebookNode, name: str) -> None:
    """Write REPO_URL into the badge of the first cell and REPO_URL / REPO_PUBLISHED into the setup cell."""
    owner_repo = REPO_URL.removeprefix("https://github.com/")
    nb.cells[0].source = BADGE.sub(
        f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/", nb.cells[0].source
    )
    setup = next(cell for cell in nb.cells if cell.cell_type == "code")
    if not REPO_LINE.search(setup.source) or not PUBLISHED_LINE.search(setup.source):
        raise SystemExit(f'error: the first code cell of {name} lacks a REPO = "..." or REPO_PUBLISHED = ... line.')
    setup.source = REPO_LINE.sub(f'REPO = "{REPO_URL}"', setup.source)
    setup.source = PUBLISHED_LINE.sub(f"REPO_PUBLISHED = {REPO_PUBLISHED}", setup.source)


def readable_outputs(nb: nbformat.NotebookNode) -> None:
    """Drop what a stored copy cannot show: widgets (and their saved state) and iframes of a stopped local server."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [
                out
                for out in cell.outputs
                if WIDGET not in out.get("data", {})
                and not LOOPBACK_FRAME.search(str(out.get("data", {}).get("text/html", "")))
            ]


def in_steps(get_msg, step: float = 1.0):
    """``get_msg(timeout=...)`` as a series of waits of at most ``step`` seconds, up to the same deadline."""

    async def get_msg_in_steps(timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = step if deadline is None else max(0.0, min(step, deadline - time.monotonic()))
            try:
                return await get_msg(timeout=wait)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    return get_msg_in_steps


class SteadyClient(NotebookClient):
    """nbclient's NotebookClient, reading the kernel's replies at least once a second. pyzmq's asyncio poll can miss
    the wake-up of a reply that lands amid a burst of widget messages; one long wait then sits out the whole cell
    timeout before reading it (600 s in the pretrained-start test's notebook 05 under .ci/run, then a pass)."""

    async def async_start_new_kernel_client(self):
        client = await super().async_start_new_kernel_client()
        client.shell_channel.get_msg = in_steps(client.shell_channel.get_msg)
        return client


def execute(path: Path, timeout: int) -> float:
    """Run every cell of ``path`` in a fresh kernel and write the outputs back; return the seconds taken."""
    nb = nbformat.read(path, as_version=4)
    stamp_repo(nb, path.name)
    client = SteadyClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        coalesce_streams=True,
        extra_arguments=[TEXT_BARS],
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    started = time.perf_counter()
    try:
        client.execute()
    finally:
        # Written even on failure, so the error output can be read in the notebook itself.
        readable_outputs(nb)
        nbformat.write(nb, path)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="run only notebooks whose file name contains one of these")
    parser.add_argument("--timeout", type=int, default=900, help="seconds one cell may take")
    args = parser.parse_args(argv)
    os.environ.update(FORCED_ENV)
    for key, value in DEFAULT_ENV.items():
        os.environ.setdefault(key, value)
    total = 0.0
    for path in select(args.names):
        print(f"{path.relative_to(ROOT)} ...", end=" ", flush=True)
        try:
            seconds = execute(path, args.timeout)
        except CellExecutionError as err:
            print("FAILED")
            print(str(err).strip().splitlines()[-1], file=sys.stderr)
            print(
                f"error: a cell of {path.relative_to(ROOT)} raised (the traceback is stored in the notebook).",
                file=sys.stderr,
            )
            return 1
        total += seconds
        print(f"{seconds:.1f} s")
    print(f"total {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
