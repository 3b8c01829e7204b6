"""nbval runs the notebooks here: give their kernels the environment the stored outputs were made in."""

import os

# The stored outputs come from the default profile (what `make lab` runs on a CPU) with a fixed hash seed and no
# extra options (scripts/run_notebooks.py). Each notebook's kernel starts after this file is imported and inherits
# these variables; PYTHONHASHSEED only counts when a process starts, which is why it is set here.
os.environ["PYTHONHASHSEED"] = "0"
os.environ["BERT_MEDITATIONS_PROFILE"] = "default"
os.environ.pop("BERT_MEDITATIONS_ARGS", None)
# No hub, no telemetry, no progress bars from downloads: the notebooks need no network.
for key, value in {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                   "GRADIO_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(key, value)
