"""Where a number came from: the machine, the code's commit and the date, kept beside every measurement.

The recorded run (``make record``), the benchmarks (``make bench``), the learning-curve experiments
(``make learning``) and notebook 04 all read this one module, so a figure always says the same things about itself.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from helpers.config import ROOT


def cpu_model() -> str:
    """The processor's name, as /proc/cpuinfo gives it (or the platform's word for it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line)
    except (OSError, StopIteration):
        return None
    return round(kb / 2**20, 1)


def machine() -> dict[str, Any]:
    """This machine as a measurement names it: CPU, cores, torch's threads, the GPU if any, versions, the date."""
    import torch
    import transformers

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "memory_gb": _memory_gb(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "date": datetime.date.today().isoformat(),
    }


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout
    except OSError:  # no git on this machine
        return ""


def code_version(outputs: tuple[str, ...] = ()) -> str:
    """The git commit of this checkout (with '+changes' when a tracked file other than ``outputs`` differs from it)."""
    sha = _git("rev-parse", "--short", "HEAD").strip() or "unknown"
    # Porcelain lines are "XY PATH": two status letters (either may be a space), a space, the path.
    changed = [line[3:] for line in _git("status", "--porcelain", "--untracked-files=no").splitlines() if line.strip()]
    return sha + ("+changes" if set(changed) - set(outputs) else "")


def commit_date(version: str) -> str | None:
    """The date (YYYY-MM-DD) of the commit a code version names ('abc1234' or 'abc1234+changes'), or None."""
    return _git("show", "-s", "--format=%cs", version.split("+")[0]).strip() or None


def made_with(version: str) -> str:
    """'commit abc1234 of 2026-12-05': how a notebook or the README names the code behind a row of results."""
    date = commit_date(version)
    return f"commit {version}" + (f" of {date}" if date else "")
