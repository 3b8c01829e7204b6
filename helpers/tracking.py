"""Weights & Biases: online when logged in, offline otherwise, off on request; never fatal."""

from __future__ import annotations

import json
import netrc
import os
import shlex
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.config import ROOT, Config


def logged_in() -> bool:
    """True when a W&B API key is configured (environment or ~/.netrc), without contacting W&B."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_mode(requested: str) -> str:
    """'auto' -> $WANDB_MODE if set, else 'online' when logged in, else 'offline'."""
    if requested != "auto":
        return requested
    env = os.environ.get("WANDB_MODE")
    if env in ("online", "offline", "disabled"):
        return env
    return "online" if logged_in() else "offline"


class Tracker:
    """A thin, fault-tolerant wrapper: the first tracking error is reported once, and training goes on."""

    def __init__(self, cfg: Config, enabled: bool = True, run_dir: str | os.PathLike | None = None):
        self.mode = resolve_mode(cfg.wandb) if enabled else "disabled"
        self.run = None
        if self.mode == "disabled":
            return
        self.dir = Path(run_dir or os.environ.get("WANDB_DIR") or ROOT / "runs")
        self._guard(self._start, cfg)

    def _start(self, cfg: Config) -> None:
        import wandb

        self.dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=cfg.wandb_project,
            config=cfg.to_dict(),
            mode=self.mode,
            dir=str(self.dir),
            settings=wandb.Settings(silent=True, console="off"),
            reinit="finish_previous",
        )

    def _guard(self, fn, *args) -> Any:
        try:
            return fn(*args)
        except Exception as err:  # noqa: BLE001 - tracking must never stop training
            warnings.warn(
                f"W&B tracking stopped ({type(err).__name__}: {err}); training continues without it.", stacklevel=3
            )
            self.run, self.mode = None, "disabled"
            return None

    @property
    def active(self) -> bool:
        return self.run is not None

    @property
    def run_path(self) -> Path | None:
        """The local folder of this run (``wandb/offline-run-*``), for ``wandb sync``."""
        return Path(self.run.dir).parent if self.active else None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.active:
            self._guard(self.run.log, metrics, step)

    def table(self, key: str, columns: list[str], rows: list[list[Any]], step: int | None = None) -> None:
        if self.active:
            import wandb

            self._guard(lambda: self.run.log({key: wandb.Table(columns=columns, data=rows)}, step=step))

    def summary(self, values: dict[str, Any]) -> None:
        if self.active:
            self._guard(self.run.summary.update, values)

    def finish(self) -> None:
        if self.active:
            self._guard(self.run.finish)
            self.run = None


class RunReadError(RuntimeError):
    """A folder W&B cannot read back as a run; the message says what to do."""


@dataclass
class LoggedRun:
    """A finished run as W&B stored it: what it was configured with, logged step by step, and ended on."""

    path: Path
    state: str  # "finished", "running", "crashed", ... as W&B records it
    config: dict[str, Any]
    history: pd.DataFrame  # one row per logged step (index ``_step``), one column per logged key
    summary: dict[str, Any]


def sync_command(run_dir: str | os.PathLike) -> str:
    """The shell command that uploads an offline run once you are online and logged in."""
    return f"wandb sync {shlex.quote(str(run_dir))}"


def _inspect(run_dir: Path, *flags: str) -> str:
    """``wandb leet inspect --json [flags] RUN_DIR``'s output; reads the local log only, no network."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "wandb", "leet", "inspect", "--json", *flags, str(run_dir)],
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RunReadError(
            f"Could not run `wandb leet inspect` ({type(err).__name__}); install wandb 0.31 "
            f"(pip install 'wandb>=0.31,<0.32') and try again."
        ) from None
    if out.returncode != 0:
        reason = (out.stderr.strip().splitlines() or ["no message"])[-1].removeprefix("Error: ")
        raise RunReadError(
            f"W&B cannot read {run_dir} as a run ({reason[:200]}): pass the folder of one run, "
            f"such as TrainResult.wandb_run or runs/wandb/offline-run-..., with wandb 0.31 installed."
        )
    return out.stdout


def read_run(run_dir: str | os.PathLike) -> LoggedRun:
    """Read a local (offline or synced) W&B run back with W&B's own ``wandb leet inspect``: config, history, summary."""
    run_dir = Path(run_dir).expanduser()
    if not run_dir.exists():
        raise RunReadError(
            f"{run_dir} does not exist: pass the run folder that training printed "
            f"(TrainResult.wandb_run), such as runs/wandb/offline-run-...."
        )
    # One JSON record per line (header, run, history, summary, ...); history items are flat {key: value} rows.
    records = [json.loads(line) for line in _inspect(run_dir).splitlines() if line.startswith("{")]
    rows = [record["history"]["item"] for record in records if record.get("type") == "history"]
    history = pd.DataFrame(rows)
    if "_step" in history:
        history = history.set_index("_step").sort_index()
    # --summary: W&B's own view of the run's end: its state, its config and its summary (nested as logged).
    overview = json.loads(_inspect(run_dir, "--summary"))
    return LoggedRun(
        path=run_dir,
        state=str(overview.get("state", "unknown")),
        config=dict(overview.get("config") or {}),
        history=history,
        summary=dict(overview.get("summary") or {}),
    )
