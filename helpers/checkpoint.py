"""Checkpoints that are whole or absent, load with stock transformers, and resume a run exactly."""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from helpers.config import ROOT, Config, ConfigError
from helpers.corpus import sha256_of
from helpers.memory import MEMORY_FILE
from helpers.report import model_card

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


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_checkpoint(folder: str | os.PathLike) -> bool:
    return (Path(folder) / MARKER).is_file()


def interrupted(folder: str | os.PathLike) -> tuple[int, int] | None:
    """(epochs done, epochs asked for) of a checkpoint saved at an epoch's end but never finished; else None."""
    marker, profile = read_json(Path(folder) / MARKER), read_json(Path(folder) / "profile.json")
    if marker is None or profile is None:
        return None
    done, epochs = marker.get("epoch"), profile.get("epochs")
    if isinstance(done, int) and isinstance(epochs, int) and done < epochs:
        return done, epochs
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: the process exists but is someone else's
        return True
    return True


def recover(folder: str | os.PathLike) -> None:
    """Finish a replacement that a crash interrupted between its two renames; drop what dead saves left behind."""
    folder = Path(folder)
    if not folder.exists():
        olds = sorted(folder.parent.glob(f".{folder.name}.old-*"), key=lambda p: p.stat().st_mtime)
        complete = [old for old in olds if is_checkpoint(old)]
        if complete:
            os.rename(complete[-1], folder)
    if folder.exists():
        for stale in folder.parent.glob(f".{folder.name}.old-*"):
            shutil.rmtree(stale, ignore_errors=True)
    # A save killed mid-write leaves .NAME.tmp-PID behind; remove it once that process is gone.
    for tmp in folder.parent.glob(f".{folder.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def verify_files(folder: str | os.PathLike, skip: tuple[str, ...] = ()) -> None:
    """Raise CheckpointError if a file differs from the sha256 that checkpoint.json recorded when it was saved.

    ``skip``: files checked elsewhere (the demo serves the model alone when its memory file is damaged).
    """
    folder = Path(folder)
    marker = read_json(folder / MARKER)
    if marker is None:
        raise CheckpointError(
            f"{folder / MARKER} is unreadable, so the checkpoint is damaged; resume from another "
            f"checkpoint or start again."
        )
    recorded = marker.get("sha256") or {}
    for name, digest in sorted(recorded.items()):
        if name in skip:
            continue
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path} is missing from the checkpoint; restore a copy or start again.")
        if sha256_of(path) != digest:
            raise CheckpointError(
                f"{path} is damaged (its sha256 differs from the one recorded when it was saved); "
                f"restore a copy or start again."
            )


def _portable(path: str | None) -> str | None:
    """A path as written into profile.json: relative to the repository when inside it, else the file name only."""
    if not path:
        return path
    resolved = Path(path).expanduser().resolve()
    try:
        return resolved.relative_to(ROOT).as_posix()
    except ValueError:
        return resolved.name


def check_output_dir(folder: str | os.PathLike, overwrite: bool = False, option: str = "--output") -> None:
    """Refuse a file, or a non-empty folder unless ``overwrite``: a run never silently replaces someone's files."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{option} {folder} is a file; pass a folder path.")
    if not folder.is_dir() or not any(folder.iterdir()) or overwrite:
        return
    # helpers.train (--output) can resume or overwrite; helpers.main (--checkpoint) serves a finished
    # checkpoint and trains only into an empty folder, so it has only the other folder to suggest.
    if option != "--output":
        raise CheckpointError(
            f"{folder} holds files but no finished checkpoint; pass another {option} folder, "
            f"or empty this one to train there."
        )
    what = "a checkpoint" if is_checkpoint(folder) else "other files"
    raise CheckpointError(
        f"--output {folder} already holds {what}; pass --resume {folder} to continue it, "
        f"--overwrite to replace it, or choose another folder."
    )


@contextmanager
def run_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold ``folder`` for one training run; a second run into it while this one lives raises CheckpointError."""
    folder = Path(folder).expanduser()
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun's other ranks belong to the run that rank 0 locked
        yield folder.parent / f".{folder.name}.lock"
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    path = folder.parent / f".{folder.name}.lock"  # beside the folder: the folder itself is swapped by renames
    while True:
        handle = open(path, "a+", encoding="utf-8")
        try:
            # flock, not a pid file alone: the kernel drops the lock when its process dies, even by SIGKILL, so a
            # crashed run never leaves a stale lock behind. Non-blocking: a second run is refused, not queued.
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "unknown"
            handle.close()
            raise CheckpointError(
                f"{folder} is being written by a training run that is still going (pid {pid}); "
                f"wait for it to finish, stop it, or choose another --output."
            ) from None
        # The holder before us removes the file as it lets go: a lock on that removed file guards nothing.
        try:
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")  # only for the message above: the lock is the flock, not this text
        handle.flush()
        yield path
    finally:
        path.unlink(missing_ok=True)  # removed while still held, so no run can lock a file about to vanish
        handle.close()  # closing the file releases the flock


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state = {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
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


@dataclass
class Progress:
    """How far the loop has come: the one object it advances, every save writes and a resume starts from."""

    epoch: int = 0  # the epoch under way, from 0 (the run's epochs once it has finished)
    batches_done: int = 0  # that epoch's batches trained on
    global_step: int = 0  # optimizer steps taken, over every epoch
    seconds: float = 0.0  # seconds trained, over every call of train() (a resumed run counts what it trained before)

    def step(self, batches_done: int) -> None:
        """One optimizer step taken; it trained on the epoch's batches up to ``batches_done``."""
        self.global_step += 1
        self.batches_done = batches_done

    def end_epoch(self) -> None:
        """The epoch's row is in: what comes next is the next epoch, from its first batch."""
        self.epoch, self.batches_done = self.epoch + 1, 0


@dataclass
class Resume:
    """What a save writes besides the weights, so that a resumed run continues exactly where this one stopped."""

    progress: Progress
    rng: dict[str, Any] | None = None  # Python, NumPy and torch RNG states (dropout) at the save
    optimizer: dict[str, Any] | None = None  # AdamW's moments, for load_state_dict
    scheduler: dict[str, Any] | None = None  # the learning-rate schedule's position
    history: list[dict[str, float]] = field(default_factory=list)  # per-step metrics so far
    epochs: list[dict[str, float]] = field(default_factory=list)  # per-epoch rows so far

    def state(self) -> dict[str, Any]:
        """training_state.pt's dict: the one place the resume state is written."""
        return {
            "progress": asdict(self.progress),
            "rng": self.rng,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "history": self.history,
            "epochs": self.epochs,
        }


def load_resume(folder: str | os.PathLike) -> tuple[Config, Resume]:
    """The saved profile of a resumable checkpoint and its resume state: the one place that state is read."""
    cfg, state = load_training_state(folder)
    try:
        return cfg, Resume(
            Progress(**state["progress"]),
            state["rng"],
            state["optimizer"],
            state["scheduler"],
            state["history"],
            state["epochs"],
        )
    except (KeyError, TypeError):
        raise CheckpointError(
            f"{Path(folder) / STATE} was written by another version of the training loop; "
            f"start a new run with --output."
        ) from None


def save_checkpoint(
    folder: str | os.PathLike,
    model,
    tokenizer,
    cfg: Config,
    metrics: dict[str, Any],
    training_state: dict[str, Any] | None = None,
    also: Callable[[Path], None] | None = None,
) -> Path:
    """Write everything into a hidden sibling folder, then swap it in with renames: whole or absent.

    ``also(folder)`` may write more files into the folder first (the count table beside the weights, say); they are
    checksummed and swapped in with the rest.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        _write_files(tmp, model, tokenizer, cfg, metrics, training_state)
        if also is not None:
            also(tmp)
        # Checksums of every file: safetensors and torch.save carry none, so bit rot would otherwise load silently.
        checksums = {path.name: sha256_of(path) for path in sorted(tmp.iterdir()) if path.is_file()}
        progress = (training_state or {}).get("progress") or {}
        marker = {"complete": True, "profile": cfg.profile, "resumable": training_state is not None}
        marker |= {"epoch": progress.get("epoch"), "global_step": progress.get("global_step"), "sha256": checksums}
        _write_json(tmp / MARKER, marker)
        _fsync_tree(tmp)
        _swap_in(tmp, folder)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = _io_failure(err)
        if reason is None:
            raise
        raise CheckpointError(
            f"Could not save the checkpoint to {folder} ({reason}); "
            f"the previous checkpoint there, if any, is untouched."
        ) from None
    return folder


def _write_files(tmp: Path, model, tokenizer, cfg: Config, metrics: dict, training_state: dict | None) -> None:
    """The model, tokenizer, profile, metrics, model card and (to resume) training state, into ``tmp``."""
    from transformers.utils import logging as hf_logging

    bars_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the "Writing model shards" bar would interleave with the training bar
    try:
        model.save_pretrained(tmp, safe_serialization=True)
    finally:
        if bars_on:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(tmp)
    # profile.json is published with the model: no absolute path of this machine goes into it. The corpus
    # path as given stays in the training state, which only a resume on this machine reads.
    _write_json(tmp / "profile.json", {**cfg.to_dict(), "corpus": _portable(cfg.corpus)})
    _write_json(tmp / "metrics.json", metrics)
    (tmp / "README.md").write_text(model_card(cfg, metrics.get("final", {})), encoding="utf-8")
    if training_state is not None:
        # Through a Python file: a full disk then surfaces as OSError (torch's own writer says only
        # "unexpected pos"), kept as the RuntimeError's context.
        with open(tmp / STATE, "wb") as handle:
            torch.save({**training_state, "corpus_path": cfg.corpus}, handle)


def _swap_in(tmp: Path, folder: Path) -> None:
    """Replace ``folder`` by the finished ``tmp`` with two renames (recover() finishes one a crash interrupted)."""
    old = None
    if folder.exists():
        old = folder.parent / f".{folder.name}.old-{os.getpid()}"
        os.rename(folder, old)
    os.rename(tmp, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _io_failure(err: BaseException) -> str | None:
    """Why a write failed, when ``err`` is (or wraps) an I/O error: disk full, read-only, no permission."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError):
            return seen.strerror or str(seen)
        seen = seen.__cause__ or seen.__context__
    # safetensors reports I/O errors as its own SafetensorError: "... I/O error: No space left on device (os error 28)"
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if type(err).__name__ == "SafetensorError" and "os error" in text:
        return text.split("I/O error: ")[-1].split(" (os error")[0][:160]
    return None


def load_training_state(folder: str | os.PathLike) -> tuple[Config, dict[str, Any]]:
    """The saved profile and training state of a resumable checkpoint."""
    folder = Path(folder)
    recover(folder)
    if not is_checkpoint(folder):
        raise CheckpointError(f"{folder} holds no complete checkpoint to resume; start a new run with --output.")
    if not (folder / STATE).is_file():
        raise CheckpointError(f"{folder} is a finished checkpoint without training state; it cannot be resumed.")
    verify_files(folder, skip=(MEMORY_FILE,))  # a resumed run counts its memory afresh from the training text
    try:
        from safetensors import safe_open

        with safe_open(folder / "model.safetensors", framework="pt") as weights:  # reads and checks the header
            weights.keys()
    except Exception as err:  # noqa: BLE001 - SafetensorError, OSError: the weights cannot be read back
        raise CheckpointError(
            f"{folder / 'model.safetensors'} is damaged or cut short ({str(err)[:120]}); resume "
            f"from another checkpoint or start again."
        ) from None
    cfg_dict = read_json(folder / "profile.json")
    if cfg_dict is None:
        raise CheckpointError(
            f"{folder / 'profile.json'} is damaged (not a readable JSON object); resume from "
            f"another checkpoint or start again."
        )
    try:
        state = torch.load(folder / STATE, weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise CheckpointError(
            f"{folder} holds a damaged {STATE} ({type(err).__name__}); resume from another checkpoint or start again."
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{folder} holds a {STATE} of the wrong shape; resume from another checkpoint or start again."
        )
    if state.get("corpus_path") is not None:
        cfg_dict["corpus"] = state["corpus_path"]  # the path as given, not the portable one of profile.json
    try:
        cfg = Config(**cfg_dict)
    except (TypeError, ConfigError) as err:
        raise CheckpointError(
            f"{folder / 'profile.json'} does not describe a run of this version ({err}); start a new run with --output."
        ) from None
    return cfg, state
