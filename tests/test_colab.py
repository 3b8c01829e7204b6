"""The notebooks' Colab cell (with helpers/colab.py, which it calls), run here with `google.colab` stubbed and its
shell calls recorded: what it would clone and install, that it keeps Colab's torch, and when it asks for a restart."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import sys
import types

import nbformat
import pytest

from helpers.config import ROOT
from tests.conftest import run_notebooks

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CLONE = "/content/bert-meditations"
RESTART = "(Runtime > Restart session)"


def setup_cell(path) -> str:
    return next(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


def test_there_are_six_notebooks_and_one_setup_cell_for_all():
    assert len(NOTEBOOKS) == 6
    cells = {path.name: setup_cell(path) for path in NOTEBOOKS}
    first = cells[NOTEBOOKS[0].name]
    for name, source in cells.items():
        assert source == first, f"{name}'s first code cell differs from {NOTEBOOKS[0].name}'s: keep all six identical"
    assert len(first.splitlines()) <= 16, "the Colab cell should stay short: its work lives in helpers/colab.py"
    assert first.count(f'REPO = "{run_notebooks.REPO_URL}"') == 1  # one constant, written by make notebooks


def test_readme_badges_use_the_repository_address():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    owner_repo = run_notebooks.REPO_URL.removeprefix("https://github.com/")
    badges = re.findall(r"https://colab\.research\.google\.com/github/([^)\s]+)", readme)
    assert sorted(badges) == sorted(f"{owner_repo}/blob/main/notebooks/{p.name}" for p in NOTEBOOKS)


class FakeDist:
    def __init__(self, name: str, version: str):
        self.metadata, self.version = {"Name": name}, version


class FakeColab:
    """Colab's shell as the cell sees it: records `!` lines (expanded like IPython does) and, on `pip install`,
    swaps the installed distributions from ``before`` to ``after``."""

    def __init__(self, namespace: dict, before: dict[str, str], after: dict[str, str]):
        self.namespace, self.calls, self.installed, self.after = namespace, [], before, after

    def system(self, command: str) -> None:
        command = command.format_map(self.namespace)
        self.calls.append(command)
        if " pip install " in command:
            self.installed = self.after

    def run_line_magic(self, name: str, line: str, *_) -> None:
        self.calls.append(f"%{name} {line}")


def run_on_colab(
    monkeypatch, before: dict[str, str], after: dict[str, str], tops: dict[str, list[str]], published: bool = True
) -> FakeColab:
    """Execute the first cell of notebook 01 as Colab would, with REPO_PUBLISHED set to ``published``."""
    from IPython.core.inputtransformer2 import TransformerManager

    source = setup_cell(NOTEBOOKS[0]).replace(
        f"REPO_PUBLISHED = {run_notebooks.REPO_PUBLISHED}", f"REPO_PUBLISHED = {published}"
    )
    namespace: dict = {}
    shell = FakeColab(namespace, before, after)
    namespace["get_ipython"] = lambda: shell
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(sys, "path", list(sys.path))  # the cell puts the clone first
    monkeypatch.setattr(
        importlib.metadata,
        "distributions",
        lambda: [FakeDist(name, version) for name, version in shell.installed.items()],
    )
    monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: tops)
    exec(TransformerManager().transform_cell(source), namespace)  # the notebook's own cell
    return shell


COLAB = {"torch": "2.9.0+cu126", "numpy": "2.0.2", "ipywidgets": "7.7.1", "not-imported-here": "1.0"}
TOPS = {"torch": ["torch"], "numpy": ["numpy"], "ipywidgets": ["ipywidgets"], "gradio": ["gradio"]}


def test_the_colab_branch_clones_and_installs_the_repository_with_its_notebooks_extra(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "not_imported_here", raising=False)
    shell = run_on_colab(
        monkeypatch,
        COLAB,
        {**COLAB, "gradio": "6.31.0", "not-imported-here": "2.0"},
        {**TOPS, "not_imported_here": ["not-imported-here"]},
    )
    clone, pip = shell.calls  # nothing else runs in a shell
    test, git = clone.split(" || ")  # a second run of the cell finds the clone there and clones nothing
    assert shlex.split(test) == ["[", "-d", CLONE, "]"]
    assert shlex.split(git) == ["git", "clone", "--quiet", "--depth", "1", run_notebooks.REPO_URL, CLONE]
    args = shlex.split(pip)
    assert args[:4] == [sys.executable, "-m", "pip", "install"]
    # One thing to install: the clone, editable, with its notebooks extra. No upgrade flags: pip only adds what is
    # missing or older than pyproject.toml allows.
    assert args[args.index("--editable") + 1] == f"{CLONE}[notebooks]"
    assert not {"-U", "--upgrade", "--force-reinstall", "--ignore-installed", "--no-deps"} & set(args)
    # torch is never named as something to install, and is pinned to the one Colab has.
    assert not [a for a in args if re.fullmatch(r"torch\b.*", a)]
    constraints = args[args.index("--constraint") + 1]
    with open(constraints, encoding="utf-8") as f:
        assert f.read().split() == [f"torch=={importlib.metadata.version('torch')}"]
    assert CLONE == sys.path[0]
    # Only what this session never imported was upgraded (gradio is new): no restart needed.
    assert RESTART not in capsys.readouterr().out


def test_an_upgraded_package_that_was_already_imported_asks_for_a_restart(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "numpy", sys.modules.get("numpy") or types.ModuleType("numpy"))
    run_on_colab(monkeypatch, COLAB, {**COLAB, "numpy": "2.4.6"}, TOPS)
    out = capsys.readouterr().out.strip()
    assert out.startswith("This cell upgraded numpy, which this session had already imported")
    assert RESTART in out and out.count(".") <= 2  # one sentence


def test_nothing_to_add_means_nothing_to_say(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "numpy", sys.modules.get("numpy") or types.ModuleType("numpy"))
    run_on_colab(monkeypatch, COLAB, COLAB, TOPS)
    assert capsys.readouterr().out == ""


def test_a_placeholder_repository_stops_before_any_shell_call(monkeypatch):
    with pytest.raises(SystemExit, match=r"^Set REPO in this cell .* is a placeholder, not a real repository\.$"):
        run_on_colab(monkeypatch, COLAB, COLAB, TOPS, published=False)


def test_off_colab_the_cell_does_and_prints_nothing(monkeypatch, capsys):
    from IPython.core.inputtransformer2 import TransformerManager

    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    calls = []
    shell = types.SimpleNamespace(system=calls.append, run_line_magic=lambda *a: calls.append(a))
    exec(TransformerManager().transform_cell(setup_cell(NOTEBOOKS[0])), {"get_ipython": lambda: shell})
    assert calls == [] and capsys.readouterr().out == ""
