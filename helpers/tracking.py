"""Weights & Biases: online when logged in, offline otherwise, off on request; never fatal."""

from __future__ import annotations

import netrc
import os
import warnings
from pathlib import Path
from typing import Any

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
        self.run = wandb.init(project=cfg.wandb_project, config=cfg.to_dict(), mode=self.mode, dir=str(self.dir),
                              settings=wandb.Settings(silent=True, console="off"), reinit="finish_previous")

    def _guard(self, fn, *args) -> Any:
        try:
            return fn(*args)
        except Exception as err:  # noqa: BLE001 - tracking must never stop training
            warnings.warn(f"W&B tracking stopped ({type(err).__name__}: {err}); training continues without it.",
                          stacklevel=3)
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
