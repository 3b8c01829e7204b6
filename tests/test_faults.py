"""Faults: training killed at random moments and resumed, damaged checkpoints, cut downloads, a full disk."""

from __future__ import annotations

import errno
import hashlib
import http.server
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertForPreTraining

import helpers.corpus as corpus
from helpers.checkpoint import CheckpointError, is_checkpoint, load_training_state, recover, run_lock, save_checkpoint
from helpers.config import ROOT, get_profile
from helpers.corpus import SHA256, CorpusError, ensure_corpus, sha256_of
from helpers.serving import Predictor
from tests.app_fixtures import subprocess_env, tiny_checkpoint  # noqa: F401

EPOCHS = 6


# ----- SIGKILL during training, then --resume -----


def _train(args: list[str], log: Path) -> subprocess.Popen:
    """``python -m helpers.train ARGS`` on the tiny profile, offline, output to ``log``."""
    with open(log, "ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "helpers.train", *args, "--no-progress"],
            cwd=ROOT,
            env=subprocess_env(WANDB_MODE="disabled"),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def _siblings(folder: Path, kind: str) -> list[Path]:
    return sorted(folder.parent.glob(f".{folder.name}.{kind}-*"))


def _marker(folder: Path) -> dict:
    return json.loads((folder / "checkpoint.json").read_text(encoding="utf-8"))


def _saved_step(folder: Path) -> int | None:
    try:
        return _marker(folder).get("global_step")
    except (OSError, ValueError):  # absent, or caught mid-rename
        return None


def _kill_when(process: subprocess.Popen, folder: Path, moment: str, rng: random.Random, timeout: float = 240) -> bool:
    """SIGKILL ``process`` during a save (a .tmp-* sibling exists) or at a random time after a checkpoint exists.

    Returns False when the process finished first.
    """
    deadline = time.monotonic() + timeout
    delay = rng.uniform(0.0, 1.5)  # an epoch of the tiny profile takes about a second
    start_step = _saved_step(folder)
    armed_at = None
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"training did not reach the kill moment {moment!r} in {timeout:.0f} s")
        if moment == "save" and _siblings(folder, "tmp"):
            break
        if moment == "random":
            # Armed once this process has saved a checkpoint of its own: then it is surely training.
            if armed_at is None and _saved_step(folder) not in (None, start_step):
                armed_at = time.monotonic()
            if armed_at is not None and time.monotonic() - armed_at >= delay:
                break
        time.sleep(0.002)
    if process.poll() is not None:
        return False
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    return True


def _whole_or_absent(folder: Path) -> None:
    """After a crash the folder is a complete checkpoint (every file it lists, unchanged) or not there at all."""
    recover(folder)
    if not folder.exists():
        return
    assert is_checkpoint(folder), f"{folder} exists without checkpoint.json: {sorted(os.listdir(folder))}"
    for name, digest in _marker(folder)["sha256"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, f"{name} changed after the marker"


SOAK = os.environ.get("BERT_MEDITATIONS_SOAK") == "1"


@pytest.mark.slow
@pytest.mark.parametrize(
    "seed, moments",
    [
        (0, ["save", "random"]),
        pytest.param(
            1,
            ["random", "save", "random"],
            marks=pytest.mark.skipif(
                not SOAK, reason="a second kill schedule (a minute); set BERT_MEDITATIONS_SOAK=1 to run it"
            ),
        ),
    ],
)
def test_sigkill_at_random_moments_then_resume_finishes(tmp_path, seed, moments):
    rng = random.Random(seed)
    folder, log = tmp_path / "runs" / "tiny", tmp_path / "train.log"
    fresh = ["--profile", "tiny", "--epochs", str(EPOCHS), "--output", str(folder), "--wandb", "disabled"]
    kills = 0
    for moment in moments:
        recover(folder)
        if is_checkpoint(folder):
            process = _train(["--resume", str(folder)], log)
        else:
            # Killed before the first checkpoint was whole: nothing to resume, and --resume says so in one line.
            if kills:
                refused = subprocess.run(
                    [sys.executable, "-m", "helpers.train", "--resume", str(folder)],
                    cwd=ROOT,
                    env=subprocess_env(),
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                assert refused.returncode == 1 and "Traceback" not in refused.stderr
                assert "no complete checkpoint to resume" in refused.stderr
            process = _train(fresh + (["--overwrite"] if folder.exists() else []), log)
        if _kill_when(process, folder, moment, rng):
            kills += 1
            _whole_or_absent(folder)
    assert kills >= 1, "no kill landed: the runs finished first"
    # The last resume runs to the end.
    recover(folder)
    process = _train(["--resume", str(folder)] if is_checkpoint(folder) else fresh, log)
    assert process.wait(timeout=300) == 0, log.read_text(errors="replace")[-3000:]
    marker = _marker(folder)
    assert marker["complete"] and marker["epoch"] == EPOCHS
    metrics = json.loads((folder / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == list(range(1, EPOCHS + 1))
    steps = [record["step"] for record in metrics["history"]]
    assert steps == list(range(1, len(steps) + 1)), "a step is missing or was counted twice"
    assert metrics["final"]["steps_per_process"] == [steps[-1]]
    assert not _siblings(folder, "tmp") and not _siblings(folder, "old"), "a crashed save left a folder behind"
    Predictor.from_checkpoint(folder).predict_nsp("A.", "B.")  # and it loads


def _load(checkpoint: Path):
    return (
        BertForPreTraining.from_pretrained(checkpoint, use_safetensors=True),
        AutoTokenizer.from_pretrained(checkpoint),
    )


CRASH_BETWEEN_RENAMES = """
import os, sys, torch
from helpers.checkpoint import save_checkpoint
from helpers.config import get_profile
from tests.test_faults import _load
model, tokenizer = _load(sys.argv[1])
calls = []
real_rename = os.rename
def rename(src, dst):
    calls.append(src)
    if len(calls) == 2:  # the old folder is out of the way, the new one not yet in place: die here
        os._exit(9)
    real_rename(src, dst)
os.rename = rename
save_checkpoint(sys.argv[2], model, tokenizer, get_profile("tiny"), {"mark": "B"}, {"epoch": 2, "x": torch.ones(1)})
"""


def test_crash_between_the_two_renames_is_recovered(tiny_checkpoint, tmp_path):  # noqa: F811
    model, tokenizer = _load(tiny_checkpoint)
    folder = tmp_path / "ckpt"
    save_checkpoint(folder, model, tokenizer, get_profile("tiny"), {"mark": "A"}, {"epoch": 1, "x": torch.zeros(1)})
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_BETWEEN_RENAMES, str(tiny_checkpoint), str(folder)],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crashed.returncode == 9, crashed.stderr[-2000:]
    assert not folder.exists() and _siblings(folder, "old") and _siblings(folder, "tmp")
    cfg, state = load_training_state(folder)  # recovers first
    assert json.loads((folder / "metrics.json").read_text()) == {"mark": "A"} and state["epoch"] == 1
    assert cfg.profile == "tiny"
    assert not _siblings(folder, "old") and not _siblings(folder, "tmp"), "the crashed save's folders are still there"


# ----- damaged checkpoints are refused with one clear sentence -----


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif how == "zeroed tail":  # the header stays valid; only a checksum can tell
        path.write_bytes(data[:-1000] + bytes(1000))
    else:
        raise ValueError(how)


@pytest.fixture
def damaged_copy(tiny_checkpoint, tmp_path):  # noqa: F811
    def make(name: str, how: str) -> Path:
        folder = tmp_path / f"copy-{how.replace(' ', '-')}"
        shutil.copytree(tiny_checkpoint, folder)
        _damage(folder / name, how)
        return folder

    return make


def _one_sentence(err: BaseException) -> str:
    message = str(err)
    assert "\n" not in message and "Traceback" not in message and message.endswith("."), message
    return message


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage"])
def test_damaged_weights_are_refused_by_every_loader(damaged_copy, how):
    folder = damaged_copy("model.safetensors", how)
    with pytest.raises(CheckpointError) as caught:
        Predictor.from_checkpoint(folder)
    # Caught by the sha256 recorded at save time, before the weights are even parsed.
    assert "model.safetensors is damaged" in _one_sentence(caught.value)
    # Stock transformers, as helpers.train loads a checkpoint to resume it: it raises rather than loading junk.
    with pytest.raises(Exception):  # noqa: B017 - safetensors' own error type
        BertForPreTraining.from_pretrained(folder, use_safetensors=True)
    # The resume path checks the weights before anything else loads them.
    with pytest.raises(CheckpointError) as caught:
        load_training_state(folder)
    assert "model.safetensors" in _one_sentence(caught.value)


def test_silently_corrupted_weights_fail_the_checksum_on_resume(damaged_copy):
    folder = damaged_copy("model.safetensors", "zeroed tail")
    with pytest.raises(CheckpointError) as caught:
        load_training_state(folder)
    assert "sha256 differs" in _one_sentence(caught.value)


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage"])
def test_damaged_training_state_is_refused(damaged_copy, how):
    folder = damaged_copy("training_state.pt", how)
    with pytest.raises(CheckpointError) as caught:
        load_training_state(folder)
    _one_sentence(caught.value)


def test_damaged_training_state_without_checksums_is_still_refused(damaged_copy):
    """Checkpoints saved before checksums existed: torch.load itself must fail cleanly."""
    folder = damaged_copy("training_state.pt", "truncated")
    marker = _marker(folder)
    marker.pop("sha256")
    (folder / "checkpoint.json").write_text(json.dumps(marker))
    with pytest.raises(CheckpointError, match="damaged"):
        load_training_state(folder)


def test_resume_of_damaged_checkpoint_is_one_line_on_the_command_line(damaged_copy):
    folder = damaged_copy("model.safetensors", "truncated")
    result = subprocess.run(
        [sys.executable, "-m", "helpers.train", "--resume", str(folder)],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().startswith("error:") and "model.safetensors" in result.stderr


# ----- a second run into the folder of a live one -----

HOLD_LOCK = """
import sys, time
from helpers.checkpoint import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_live_runs_folder_is_refused_until_that_run_dies(tmp_path):
    folder = tmp_path / "runs" / "live"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(folder)],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CheckpointError) as caught:
            with run_lock(folder):
                pytest.fail("a second run got the lock while the first one lives")
        message = _one_sentence(caught.value)
        assert f"{folder} is being written by a training run that is still going (pid {holder.pid})" in message
        assert message.count(". ") == 0  # one sentence
    finally:
        holder.kill()  # SIGKILL: no clean-up code of the holder runs
        holder.wait(timeout=30)
    with run_lock(folder) as lock:  # the kernel released the dead run's lock: no stale lock to delete by hand
        assert lock.parent == folder.parent and lock.read_text().strip() == str(os.getpid())
        with pytest.raises(CheckpointError, match="still going"):  # held by this process: a nested run is refused
            with run_lock(folder):
                pass
    with run_lock(folder):  # and released again on leaving the block
        pass


def test_other_ranks_of_a_distributed_run_share_rank_0s_lock(tmp_path, monkeypatch):
    folder = tmp_path / "shared"
    with run_lock(folder):
        monkeypatch.setenv("RANK", "1")
        with run_lock(folder):  # torchrun's rank 1 of the same run: not refused
            pass


# ----- a download cut mid-transfer -----


class _Corpus(http.server.BaseHTTPRequestHandler):
    """/half: promises the whole file, sends half, closes. /half-unsized: no Content-Length, half, closes.
    /stall: headers, then nothing. /good: the real bytes."""

    body = b""

    def do_GET(self):  # http.server's name
        self.send_response(200)
        if self.path != "/half-unsized":
            self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if self.path == "/good":
            self.wfile.write(self.body)
        elif self.path.startswith("/half"):
            self.wfile.write(self.body[: len(self.body) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif self.path == "/stall":
            self.wfile.flush()
            time.sleep(3)
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def http_corpus(corpus_file):
    handler = type("Handler", (_Corpus,), {"body": corpus_file.read_bytes()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def empty_data_dir(tmp_path, monkeypatch, corpus_file):
    """The default corpus location moved to an empty tmp folder; the real data/ is checked unchanged after."""
    folder = tmp_path / "data"
    monkeypatch.setattr(corpus, "data_dir", lambda: folder)
    monkeypatch.delenv(corpus.ENV_VAR, raising=False)
    yield folder
    assert sha256_of(corpus_file) == SHA256


@pytest.mark.parametrize(
    "route, words", [("/half", "cut short"), ("/half-unsized", "nothing was saved"), ("/stall", "timed out")]
)
def test_cut_download_leaves_nothing_and_the_next_run_retries(http_corpus, empty_data_dir, route, words):
    with pytest.raises(CorpusError) as caught:
        corpus.download(corpus.default_path(), http_corpus + route, timeout=1.0)
    assert words in _one_sentence(caught.value)
    assert not empty_data_dir.exists() or not any(empty_data_dir.iterdir()), "a partial file was left behind"
    if route != "/stall":  # (ensure_corpus waits 30 s for a stalled server)
        with pytest.raises(CorpusError):
            ensure_corpus(url=http_corpus + route)  # nothing was cached, so it downloads again, and fails again
    path = ensure_corpus(url=http_corpus + "/good")  # the retry against a good server succeeds
    assert path == empty_data_dir / "meditations.txt" and sha256_of(path) == SHA256
    assert sorted(p.name for p in empty_data_dir.iterdir()) == ["meditations.txt"]


# ----- a full disk -----


def _tree(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("target", ["torch.save", "save_pretrained"])
def test_disk_full_on_save_is_reported_and_the_previous_checkpoint_survives(
    tiny_checkpoint,  # noqa: F811 - the fixture imported above
    tmp_path,
    monkeypatch,
    target,
):
    model, tokenizer = _load(tiny_checkpoint)
    folder = tmp_path / "ckpt"
    save_checkpoint(folder, model, tokenizer, get_profile("tiny"), {"mark": "A"}, {"epoch": 1})
    before = _tree(folder)
    if target == "torch.save":
        monkeypatch.setattr(torch, "save", _no_space)
    else:
        monkeypatch.setattr(type(model), "save_pretrained", _no_space)
    with pytest.raises(CheckpointError) as caught:
        save_checkpoint(folder, model, tokenizer, get_profile("tiny"), {"mark": "B"}, {"epoch": 2})
    message = _one_sentence(caught.value)
    assert "No space left on device" in message and "previous checkpoint there, if any, is untouched" in message
    assert _tree(folder) == before
    assert not _siblings(folder, "tmp") and not _siblings(folder, "old")
    assert load_training_state(folder)[1]["epoch"] == 1


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 1.5 MB tmpfs (root only); skips where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and the mount command")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"could not mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        for _ in range(5):  # where / has shared propagation the mount can be listed (and need undoing) twice
            if not os.path.ismount(mount):
                break
            if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(mount)], capture_output=True)  # busy: detach it now


def test_disk_full_on_a_real_small_filesystem(tiny_checkpoint, small_tmpfs):  # noqa: F811
    model, tokenizer = _load(tiny_checkpoint)
    folder = small_tmpfs / "ckpt"
    # The first checkpoint (about 0.9 MB) fits; the second cannot, as it is written beside the first.
    save_checkpoint(
        folder, model, tokenizer, get_profile("tiny"), {"mark": "A"}, {"epoch": 1, "w": torch.zeros(150_000)}
    )
    before = _tree(folder)
    with pytest.raises(CheckpointError) as caught:
        save_checkpoint(
            folder, model, tokenizer, get_profile("tiny"), {"mark": "B"}, {"epoch": 2, "w": torch.zeros(150_000)}
        )
    assert "No space left on device" in _one_sentence(caught.value)
    assert _tree(folder) == before and sorted(os.listdir(small_tmpfs)) == ["ckpt"]
    assert load_training_state(folder)[1]["epoch"] == 1
    # Now the weights themselves do not fit (safetensors reports it in its own words): same sentence, nothing left.
    free = shutil.disk_usage(small_tmpfs).free
    (small_tmpfs / "filler").write_bytes(bytes(max(free - 100_000, 0)))
    with pytest.raises(CheckpointError) as caught:
        save_checkpoint(small_tmpfs / "second", model, tokenizer, get_profile("tiny"), {}, {"epoch": 1})
    assert "No space left on device" in _one_sentence(caught.value)
    assert sorted(os.listdir(small_tmpfs)) == ["ckpt", "filler"]
