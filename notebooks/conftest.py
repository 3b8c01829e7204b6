"""nbval runs the notebooks here: give their kernels the environment the stored outputs were made in."""

import os

import pytest

# The stored outputs come from the default profile (what `make lab` runs on a CPU) with a fixed hash seed and no
# extra options (scripts/run_notebooks.py). Each notebook's kernel starts after this file is imported and inherits
# these variables; PYTHONHASHSEED only counts when a process starts, which is why it is set here.
os.environ["PYTHONHASHSEED"] = "0"
os.environ["BERT_MEDITATIONS_PROFILE"] = "default"
os.environ.pop("BERT_MEDITATIONS_ARGS", None)
# No hub, no telemetry, no progress bars from downloads: the notebooks need no network.
for key, value in {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(key, value)

# W&B as `make notebooks` runs it: offline (notebook 04 trains with tracking on and reads its own run back). The helper
# tests keep tracking off (tests/conftest.py), so the variable is set only while a notebook's cells run: its kernel
# starts at the first cell and keeps the environment it started with.
_TRACKING = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
_saved: dict[str, str | None] = {}


@pytest.hookimpl(tryfirst=True)  # before nbval's setup starts the notebook's kernel
def pytest_runtest_setup(item):
    if item.path.suffix == ".ipynb" and not _saved:
        _saved.update({key: os.environ.get(key) for key in _TRACKING})
        os.environ.update(_TRACKING)


def pytest_runtest_teardown(item, nextitem):
    if item.path.suffix == ".ipynb" and (nextitem is None or nextitem.path != item.path) and _saved:
        for key, value in _saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _saved.clear()
