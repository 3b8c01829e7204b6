"""Shared by the demo's tests: one tiny checkpoint per session, and the demo served from a subprocess."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.config import ROOT, get_profile

# Everything the demo's processes need to stay offline and quiet.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
for _key, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_key, _value)

_BUILT: dict[str, Path] = {}  # one tiny checkpoint per test process, whichever module asks first


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment, offline, with the repository importable."""
    env = {**os.environ, **OFFLINE_ENV, **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def build_tiny_checkpoint(folder: Path) -> Path:
    """Train the tiny profile into ``folder`` (about 5 s)."""
    from helpers.train import train

    train(get_profile("tiny"), folder, track=False, progress_bar=False, verbose=False)
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A finished tiny-profile checkpoint, trained once per session; tests must not modify it."""
    if "tiny" not in _BUILT:
        _BUILT["tiny"] = build_tiny_checkpoint(tmp_path_factory.mktemp("demo") / "tiny")
    return _BUILT["tiny"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A demo process: its URL, the Popen handle and its combined output."""

    url: str
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def start_process(args: list[str], log: Path, **env: str) -> subprocess.Popen:
    """``python ARGS`` from the repository root, output to ``log``."""
    with open(log, "wb") as handle:
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=subprocess_env(**env),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@contextmanager
def demo_server(args: list[str], timeout: float = 180.0, on_start=None):
    """Run ``python -m helpers.app ...`` (or helpers.main) until it prints its URL; stop it afterwards.

    ``on_start(process)`` is called right after the process starts (e.g. to begin watching its sockets).
    """
    workdir = Path(tempfile.mkdtemp(prefix="demo-server-"))
    log = workdir / "server.log"
    process = start_process(args, log)
    try:
        if on_start is not None:
            on_start(process)
        deadline = time.monotonic() + timeout
        url = None
        while url is None:
            text = log.read_text(encoding="utf-8", errors="replace")
            for line in text.splitlines():
                if line.startswith("Demo running at "):
                    url = line.split()[3]
            if url is None:
                if process.poll() is not None:
                    raise AssertionError(f"the demo exited with {process.returncode} before serving:\n{text}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"the demo did not start within {timeout:.0f} s:\n{text}")
                time.sleep(0.2)
        yield Server(url, process, log)
    finally:
        stop_process(process)
        shutil.rmtree(workdir, ignore_errors=True)
