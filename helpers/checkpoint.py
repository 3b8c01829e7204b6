"""Checkpoints that are whole or absent, load with stock transformers, and resume a run exactly."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from helpers.config import Config

MARKER = "checkpoint.json"  # written last inside the folder: its presence means "complete"
STATE = "training_state.pt"


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing, incomplete, corrupt or not ours to overwrite."""


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def is_checkpoint(folder: str | os.PathLike) -> bool:
    return (Path(folder) / MARKER).is_file()


def recover(folder: str | os.PathLike) -> None:
    """Finish a replacement that a crash interrupted between its two renames."""
    folder = Path(folder)
    if folder.exists():
        for stale in folder.parent.glob(f".{folder.name}.old-*"):
            shutil.rmtree(stale, ignore_errors=True)
        return
    olds = sorted(folder.parent.glob(f".{folder.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds and is_checkpoint(olds[-1]):
        os.rename(olds[-1], folder)


def check_output_dir(folder: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse a non-empty folder unless ``overwrite``: a run never silently replaces someone's files."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"--output {folder} is a file; pass a folder path.")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        what = "a checkpoint" if is_checkpoint(folder) else "other files"
        raise CheckpointError(f"--output {folder} already holds {what}; pass --resume {folder} to continue it, "
                              f"--overwrite to replace it, or choose another folder.")


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state = {"python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
             "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def model_card(cfg: Config, metrics: dict[str, Any]) -> str:
    rows = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()
                     if not isinstance(v, (list, dict)))
    return f"""---
library_name: transformers
pipeline_tag: fill-mask
tags: [bert, pretraining, mlm, nsp, meditations]
---
# BERT pretrained on Marcus Aurelius' *Meditations* (profile `{cfg.profile}`)

A `BertForPreTraining` trained with both objectives, Masked Language Modeling and Next Sentence
Prediction, on George Long's public-domain translation of the *Meditations*. Source model: `{cfg.model}`.
It is a teaching model: small data, short training.

Load it with stock transformers:

```python
from transformers import pipeline, BertForNextSentencePrediction
fill = pipeline("fill-mask", model="PATH")
nsp = BertForNextSentencePrediction.from_pretrained("PATH")  # logit 0 = "B follows A", 1 = "B is random"
```

## Validation metrics (held-out paragraphs)

| metric | value |
|---|---|
{rows}

The full profile is in `profile.json`, the metrics per epoch in `metrics.json`.
"""


def save_checkpoint(folder: str | os.PathLike, model, tokenizer, cfg: Config, metrics: dict[str, Any],
                    training_state: dict[str, Any] | None = None) -> Path:
    """Write everything into a hidden sibling folder, then swap it in with renames: whole or absent."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        from transformers.utils import logging as hf_logging
        bars_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # the "Writing model shards" bar would interleave with the training bar
        try:
            model.save_pretrained(tmp, safe_serialization=True)
        finally:
            if bars_on:
                hf_logging.enable_progress_bar()
        tokenizer.save_pretrained(tmp)
        _write_json(tmp / "profile.json", cfg.to_dict())
        _write_json(tmp / "metrics.json", metrics)
        (tmp / "README.md").write_text(model_card(cfg, metrics.get("final", {})), encoding="utf-8")
        if training_state is not None:
            torch.save(training_state, tmp / STATE)
        _write_json(tmp / MARKER, {"complete": True, "profile": cfg.profile,
                                   "resumable": training_state is not None,
                                   "epoch": (training_state or {}).get("epoch"),
                                   "global_step": (training_state or {}).get("global_step")})
        _fsync_tree(tmp)
        old = None
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{os.getpid()}"
            os.rename(folder, old)
        os.rename(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"Could not save the checkpoint to {folder} ({err.strerror or err}); "
                              f"the previous checkpoint there, if any, is untouched.") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def load_training_state(folder: str | os.PathLike) -> tuple[Config, dict[str, Any]]:
    """The saved profile and training state of a resumable checkpoint."""
    folder = Path(folder)
    recover(folder)
    if not is_checkpoint(folder):
        raise CheckpointError(f"{folder} holds no complete checkpoint to resume; start a new run with --output.")
    if not (folder / STATE).is_file():
        raise CheckpointError(f"{folder} is a finished checkpoint without training state; it cannot be resumed.")
    cfg_dict = json.loads((folder / "profile.json").read_text(encoding="utf-8"))
    try:
        state = torch.load(folder / STATE, weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise CheckpointError(f"{folder / STATE} is damaged ({type(err).__name__}); resume from another checkpoint "
                              f"or start again.") from None
    return Config(**cfg_dict), state
