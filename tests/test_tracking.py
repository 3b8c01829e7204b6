"""Reading a W&B run back offline: a real tiny run trained and read with the network cut, and bad folders."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from helpers.config import ROOT
from helpers.tracking import RunReadError, read_run, sync_command

# Trains the tiny profile with W&B offline and reads the run back, in a process with no network at all.
CUT_SCRIPT = textwrap.dedent("""
    import json, socket, sys
    from helpers.config import get_profile
    from helpers.tracking import read_run, sync_command
    from helpers.train import train

    assert [name for _, name in socket.if_nameindex()] == ["lo"], socket.if_nameindex()  # really cut off
    result = train(get_profile("tiny", wandb="auto", log_every=2), sys.argv[1], progress_bar=False, verbose=False)
    logged = read_run(result.wandb_run)
    print(json.dumps({
        "run": str(result.wandb_run), "sync": sync_command(result.wandb_run), "state": logged.state,
        "config": logged.config, "summary": logged.summary,
        "losses": {r["step"]: r["loss"] for r in result.history if r["step"] % 2 == 0},
        "logged_losses": logged.history["train/loss"].dropna().to_dict(),
        "epochs": {e["step"]: e["mlm_accuracy_at_mask"] for e in result.epochs},
        "logged_epochs": logged.history["val/mlm_accuracy_at_mask"].dropna().to_dict(),
        "final": result.final}))
""")


def _unshare_or_skip() -> str:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("`unshare` (util-linux) is not installed, so the network cannot be cut for this test")
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(
            f"`unshare -n` is not permitted here ({probe.stderr.strip()[:120]}); it needs root or user namespaces"
        )
    return unshare


@pytest.mark.slow
def test_a_real_offline_run_is_read_back_with_the_network_cut(tmp_path):
    unshare = _unshare_or_skip()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "WANDB_DIR": str(tmp_path / "wandb-runs"),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }  # no WANDB_MODE, no key
    done = subprocess.run(
        [unshare, "-n", sys.executable, "-c", CUT_SCRIPT, str(tmp_path / "tiny")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # Not logged in and no network: W&B went offline by itself, and the run is whole.
    assert "/offline-run-" in out["run"] and out["sync"] == f"wandb sync {out['run']}"
    assert out["state"] == "finished"
    assert out["config"]["profile"] == "tiny" and out["config"]["log_every"] == 2
    # What training computed is what W&B stored: every second step's loss, each epoch's held-out accuracy.
    assert out["logged_losses"] == pytest.approx(out["losses"]) and len(out["losses"]) >= 2
    assert out["logged_epochs"] == pytest.approx(out["epochs"]) and len(out["epochs"]) == 2
    assert out["summary"]["final/nsp_accuracy"] == pytest.approx(out["final"]["nsp_accuracy"])


def test_a_folder_that_is_not_a_run_gets_one_sentence(tmp_path):
    with pytest.raises(RunReadError, match="does not exist: pass the run folder"):
        read_run(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunReadError, match=r"W&B cannot read .*empty as a run \(.*latest.*\): pass the folder"):
        read_run(empty)
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "run-x.wandb").write_bytes(b"not a W&B log")
    with pytest.raises(RunReadError, match=r"damaged as a run \(.*header.*\)") as caught:
        read_run(tmp_path / "damaged")
    assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)


def test_the_sync_command_quotes_the_folder():
    assert sync_command("runs/wandb/offline-run-1") == "wandb sync runs/wandb/offline-run-1"
    assert sync_command("my runs/offline-run-1") == "wandb sync 'my runs/offline-run-1'"
