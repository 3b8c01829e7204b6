"""Re-execute the notebooks in place and store their outputs (``make notebooks``).

    python scripts/run_notebooks.py                 # all of notebooks/*.ipynb, in order
    python scripts/run_notebooks.py 03 05           # only the notebooks whose names contain 03 or 05

The stored outputs are what nbval compares against in ``make test``, so they are produced the way the test
runs them: the tiny profile, PYTHONHASHSEED=0, no network, a python3 kernel from this environment and the
notebooks/ folder as working directory.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

# The environment of `make test` (the kernel inherits it; PYTHONHASHSEED only counts before a kernel starts).
FORCED_ENV = {"BERT_MEDITATIONS_PROFILE": "tiny", "PYTHONHASHSEED": "0"}
# Quiet and offline unless the caller says otherwise.
DEFAULT_ENV = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
               "GRADIO_ANALYTICS_ENABLED": "False", "WANDB_MODE": "offline", "WANDB_SILENT": "true",
               "TOKENIZERS_PARALLELISM": "false"}


def select(patterns: list[str]) -> list[Path]:
    """The notebooks to run, in name order (later ones reuse what earlier ones leave in runs/)."""
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not patterns:
        return found
    chosen = [nb for nb in found if any(p in nb.name for p in patterns)]
    if not chosen:
        raise SystemExit(f"error: no notebook in {NOTEBOOKS.relative_to(ROOT)}/ matches {' '.join(patterns)}; "
                         f"pass part of a name such as 03.")
    return chosen


def execute(path: Path, timeout: int) -> float:
    """Run every cell of ``path`` in a fresh kernel and write the outputs back; return the seconds taken."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    started = time.perf_counter()
    try:
        client.execute()
    finally:
        # Written even on failure, so the error output can be read in the notebook itself.
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
            print(f"error: a cell of {path.relative_to(ROOT)} raised (the traceback is stored in the notebook).",
                  file=sys.stderr)
            return 1
        total += seconds
        print(f"{seconds:.1f} s")
    print(f"total {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
