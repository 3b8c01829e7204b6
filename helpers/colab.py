"""Plumbing for the notebooks' Colab cell: install what Colab lacks from the clone, keeping Colab's own torch.

The cell clones the repository, then calls :func:`install_what_colab_lacks`. This module imports the standard library
only (``helpers/__init__.py`` imports nothing), so nothing that pip may upgrade is imported before pip runs.
"""

from __future__ import annotations

import importlib.metadata as metadata
import sys
from collections.abc import Callable
from pathlib import Path

CONSTRAINTS = Path("/tmp/keep-torch.txt")


def installed() -> dict[str, str]:
    """Every installed distribution's version, by lower-case name."""
    return {d.metadata["Name"].lower(): d.version for d in metadata.distributions()}


def install_what_colab_lacks(clone: str, shell: Callable[[str], object]) -> None:
    """pip-install the clone with its notebooks extra through ``shell`` (the cell's ``!``), holding torch."""
    before = installed()
    # pip adds what is missing or older than pyproject.toml allows; the constraint stops it replacing Colab's torch.
    CONSTRAINTS.write_text(f"torch=={metadata.version('torch')}\n", encoding="utf-8")
    shell(f'{sys.executable} -m pip install --quiet --constraint {CONSTRAINTS} --editable "{clone}[notebooks]"')
    after = installed()
    upgraded = {name for name, version in after.items() if before.get(name, version) != version}
    loaded = {name.partition(".")[0] for name in sys.modules}
    imported = {d.lower() for top, ds in metadata.packages_distributions().items() if top in loaded for d in ds}
    if imported & upgraded:
        print(
            f"This cell upgraded {', '.join(sorted(imported & upgraded))}, which this session had already imported: "
            f"restart it (Runtime > Restart session), then run the notebook from the top."
        )
