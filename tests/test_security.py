"""Security posture: safe weight formats, no remote code, a local-only demo, no analytics, no user text or keys on
disk."""

from __future__ import annotations

import ast
import json
import pickle
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nbformat
import pytest

import helpers.corpus as corpus
from helpers.checkpoint import CheckpointError, load_training_state
from helpers.config import ROOT, get_profile
from helpers.corpus import CorpusError, ensure_corpus, load_paragraphs
from helpers.model import load_model
from helpers.serving import Predictor
from helpers.tokens import ModelSourceError
from tests.app_fixtures import free_port, stop_process, subprocess_env, tiny_checkpoint  # noqa: F401

SCANNED = [ROOT / "helpers", ROOT / "benchmarks"]
MODEL_CLASS = re.compile(r"(Bert\w*|AutoModel\w*|\w+For\w+|\w+Model)$")
ABSOLUTE = re.compile(rb"(/root/|/tmp/pytest|/work/|/home/)")


def _calls():
    """(file, call node) for every call in the scanned Python sources."""
    for base in SCANNED:
        for path in sorted(base.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                if isinstance(node, ast.Call):
                    yield path.relative_to(ROOT), node


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


# ----- weights only from safetensors, never pickles -----


def test_every_model_from_pretrained_asks_for_safetensors():
    checked = []
    for path, call in _calls():
        func = call.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "from_pretrained"
            and isinstance(func.value, ast.Name)
            and MODEL_CLASS.match(func.value.id)
            and not func.value.id.endswith(("Tokenizer", "Config"))
        ):
            checked.append(f"{path}:{call.lineno}")
            assert _is_true(_keyword(call, "use_safetensors")), (
                f"{path}:{call.lineno} loads weights without use_safetensors=True"
            )
    assert len(checked) >= 3, f"the scan found too few model loads to be trusted: {checked}"


def test_torch_load_only_with_weights_only():
    found = []
    for path, call in _calls():
        if ast.unparse(call.func) == "torch.load":
            found.append(f"{path}:{call.lineno}")
            assert _is_true(_keyword(call, "weights_only")), (
                f"{path}:{call.lineno} calls torch.load without weights_only=True"
            )
    for base in SCANNED:  # `from torch import load` would hide a call from the scan above
        for path in base.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module == "torch":
                    assert "load" not in {alias.name for alias in node.names}, f"{path}:{node.lineno}"
    assert any("checkpoint.py" in where for where in found), "the scan missed the resume path's torch.load"


def test_never_trust_remote_code():
    sources = [p for base in SCANNED for p in base.rglob("*.py")] + sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in sources:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"trust_remote_code\s*[=:]\s*True", text), f"{path} enables trust_remote_code"
    for path, call in _calls():
        assert not _is_true(_keyword(call, "trust_remote_code")), f"{path}:{call.lineno}"


class _Bomb:
    """A pickle that would leave a file behind if anything ever unpickled it."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


@pytest.fixture
def pickle_only_checkpoint(tiny_checkpoint, tmp_path):  # noqa: F811
    """The tiny checkpoint with model.safetensors replaced by a booby-trapped pytorch_model.bin."""
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_checkpoint, folder)
    (folder / "model.safetensors").unlink()
    trap = tmp_path / "unpickled"
    with open(folder / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"bert.embeddings.word_embeddings.weight": _Bomb(trap)}, handle)
    return folder, trap


def test_pickled_weights_are_refused_by_every_loader(pickle_only_checkpoint):
    folder, trap = pickle_only_checkpoint
    with pytest.raises(CheckpointError, match="pickled weights"):
        Predictor.from_checkpoint(folder)
    with pytest.raises(ModelSourceError):
        load_model(get_profile("tiny", model=str(folder)), tokenizer=None)
    with pytest.raises(CheckpointError):
        load_training_state(folder)
    assert not trap.exists(), "a pickle was unpickled"


def test_a_booby_trapped_training_state_is_refused(tiny_checkpoint, tmp_path):  # noqa: F811
    folder = tmp_path / "trapped"
    shutil.copytree(tiny_checkpoint, folder)
    trap = tmp_path / "unpickled"
    import torch

    torch.save({"epoch": _Bomb(trap)}, folder / "training_state.pt")
    marker = json.loads((folder / "checkpoint.json").read_text())
    marker.pop("sha256", None)  # so that torch.load itself is what must refuse it
    (folder / "checkpoint.json").write_text(json.dumps(marker))
    with pytest.raises(CheckpointError, match="damaged"):
        load_training_state(folder)
    assert not trap.exists(), "torch.load unpickled arbitrary code"


# ----- the demo: local, no analytics, no user text kept -----

PROBE = """
import json, os, sys
os.environ.pop("GRADIO_ANALYTICS_ENABLED", None)
import argparse, inspect
import helpers.app as app
from gradio import analytics
parser = argparse.ArgumentParser()
app.add_serve_options(parser)
args = parser.parse_args([])
import contextlib, io
help_text = io.StringIO()
with contextlib.redirect_stdout(help_text), contextlib.suppress(SystemExit):
    app.main(["--help"])
print(json.dumps({"help": help_text.getvalue(),
                  "env": os.environ.get("GRADIO_ANALYTICS_ENABLED"), "enabled": analytics.analytics_enabled(),
                  "telemetry": os.environ.get("HF_HUB_DISABLE_TELEMETRY"), "host": args.host, "share": args.share,
                  "serve_host": inspect.signature(app.serve).parameters["host"].default,
                  "serve_share": inspect.signature(app.serve).parameters["share"].default}))
"""


def test_demo_is_local_by_default_share_is_opt_in_and_analytics_are_off():
    env = subprocess_env()
    env.pop("GRADIO_ANALYTICS_ENABLED")
    env.pop("HF_HUB_DISABLE_TELEMETRY")
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["env"] == "False" and seen["enabled"] is False and seen["telemetry"] == "1"
    assert seen["host"] == "127.0.0.1" and seen["share"] is False
    assert seen["serve_host"] == "127.0.0.1" and seen["serve_share"] is False
    help_text = seen["help"]  # what `python -m helpers.app --help` prints
    assert re.search(r"--host HOST.*\(default: 127\.0\.0\.1\)", " ".join(help_text.split()))
    assert "--share" in help_text and "off by default" in help_text


def test_every_launch_passes_host_and_share_explicitly():
    # Gradio's Blocks.launch; Playwright's chromium.launch (the demo's screenshot) starts a browser, not a server.
    launches = [
        (path, call)
        for path, call in _calls()
        if ast.unparse(call.func).endswith(".launch") and not ast.unparse(call.func).endswith("chromium.launch")
    ]
    assert launches, "no launch() found"
    for path, call in launches:
        assert _keyword(call, "server_name") is not None, f"{path}:{call.lineno} lets Gradio pick the address"
        share = _keyword(call, "share")
        assert share is not None and not _is_true(share), f"{path}:{call.lineno} shares the demo unconditionally"
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):  # the code only: the prose may name the option
        code = "\n".join(c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code")
        assert not re.search(r"share\s*=\s*True", code), notebook


def _files_holding(roots: list[Path], needle: bytes, since: float | None = None) -> list[str]:
    hits = []
    for root in roots:
        for path in root.rglob("*"):
            if ".git" in path.parts or not path.is_file() or path.is_symlink():
                continue
            try:
                if since is not None and path.stat().st_mtime < since:
                    continue
                if needle in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                continue
    return hits


@pytest.mark.slow
def test_user_text_is_never_written_to_disk_or_logs(tiny_checkpoint, tmp_path):  # noqa: F811
    gradio_client = pytest.importorskip("gradio_client")
    home = tmp_path / "home"
    home.mkdir()
    marker = f"zzmarker{uuid.uuid4().hex[:12]}"
    log = tmp_path / "server.log"
    port = free_port()
    started = time.time()
    env = subprocess_env(HOME=str(home), TMPDIR=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    env.pop("GRADIO_TEMP_DIR", None)
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "helpers.app", "--checkpoint", str(tiny_checkpoint), "--port", str(port)],
            cwd=home,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 180
        while "Demo running at" not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "the demo did not start"
            time.sleep(0.2)
        client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        answers = [
            client.predict(f"{marker} one.", f"Two {marker}.", api_name="/nsp"),
            client.predict(f"The [MASK] of {marker}.", 3, api_name="/fill_mask"),
            client.predict(f"{marker}", "", api_name="/nsp"),  # a refused input too
            client.predict(f"no mask {marker}", 3, api_name="/fill_mask"),
        ]
        assert all(answer for answer in answers)
    finally:
        stop_process(process)
    assert marker.encode() not in log.read_bytes(), "user text reached the server's output"
    assert not _files_holding([home, tmp_path], marker.encode()), "user text was written to disk"
    assert not _files_holding([ROOT], marker.encode(), since=started), "user text was written into the repository"


# ----- the corpus checksum, the W&B key, absolute paths -----


def test_a_corpus_with_the_wrong_checksum_is_refused(tmp_path, monkeypatch, corpus_file):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "meditations.txt").write_bytes(corpus_file.read_bytes().replace(b"Rusticus", b"Rusticvs", 1))
    monkeypatch.setattr(corpus, "data_dir", lambda: folder)
    monkeypatch.delenv(corpus.ENV_VAR, raising=False)
    with pytest.raises(CorpusError, match="not the expected Meditations text"):
        ensure_corpus()
    with pytest.raises(CorpusError):
        load_paragraphs()


FAKE_KEY = "0123456789abcdef" * 2 + "fedcba98"  # 40 hex digits, like a real W&B key


@pytest.mark.slow
def test_wandb_key_and_machine_paths_never_reach_checkpoint_output_or_notebooks(tmp_path):
    assert len(FAKE_KEY) == 40
    work = tmp_path / "work"
    work.mkdir()
    env = subprocess_env(
        WANDB_API_KEY=FAKE_KEY,
        WANDB_MODE="offline",
        WANDB_DIR=str(work / "wandb"),
        WANDB_SILENT="true",
        HOME=str(work),
        TMPDIR=str(work),
    )
    # Run from a scratch folder with a relative --output, so nothing absolute is echoed because we passed it.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "helpers.train",
            "--profile",
            "tiny",
            "--epochs",
            "1",
            "--output",
            "ckpt",
            "--wandb",
            "offline",
            "--no-progress",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((work / "wandb").rglob("offline-run-*")), "no offline W&B run was written: the key was never in play"
    api_key_value = re.compile(rb"api_key\W{0,5}[0-9a-f]{40}")
    checkpoint_files = [p for p in sorted((work / "ckpt").iterdir()) if p.is_file()]
    outputs = {"stdout": result.stdout, "stderr": result.stderr}
    outputs |= {str(p): p.read_bytes() for p in checkpoint_files}
    outputs |= {str(p): p.read_bytes() for p in sorted((ROOT / "notebooks").glob("*.ipynb"))}
    for where, data in outputs.items():
        assert FAKE_KEY.encode() not in data, f"the W&B key is in {where}"
        assert not api_key_value.search(data), f"an API key is in {where}"
        leaked = ABSOLUTE.search(data)
        assert not leaked, (
            f"{where} holds an absolute path of this machine: {data[max(leaked.start() - 40, 0) : leaked.end() + 60]!r}"
        )
    for path in (work / "wandb").rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), f"the W&B key was saved in {path}"


def test_profile_json_holds_no_absolute_corpus_path(tmp_path, corpus_file):
    from transformers import AutoTokenizer, BertConfig, BertForPreTraining

    from helpers.checkpoint import save_checkpoint
    from helpers.tokens import train_scratch_tokenizer

    copy = tmp_path / "elsewhere" / "my corpus.txt"
    copy.parent.mkdir()
    shutil.copy(corpus_file, copy)
    cfg = get_profile("tiny", corpus=str(copy))
    tokenizer = train_scratch_tokenizer(["one two three four"] * 5, vocab_size=300)
    model = BertForPreTraining(
        BertConfig(
            vocab_size=len(tokenizer), hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8
        )
    )
    folder = save_checkpoint(tmp_path / "ckpt", model, tokenizer, cfg, {}, {"epoch": 1})
    profile = json.loads((folder / "profile.json").read_text())
    assert profile["corpus"] == "my corpus.txt"
    assert not ABSOLUTE.search((folder / "profile.json").read_bytes())
    assert load_training_state(folder)[0].corpus == str(copy), "a resume must still find the corpus"
    assert AutoTokenizer.from_pretrained(folder)  # and the folder is an ordinary checkpoint
