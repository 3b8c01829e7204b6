"""The house rules that keep the teaching core readable: short functions, and a core that needs no plumbing."""

from __future__ import annotations

import ast
import re

import helpers
from helpers.config import ROOT

HELPERS = ROOT / "helpers"
MAX_FUNCTION_LINES = 80


def _groups() -> dict[str, list[str]]:
    """The two layers as helpers/__init__.py's docstring lists them: module names, in order."""
    core, plumbing = helpers.__doc__.split("The plumbing")
    names = lambda text: re.findall(r"^    ([a-z_]+)\s", text, re.MULTILINE)  # noqa: E731
    return {"core": names(core), "plumbing": names(plumbing)}


def test_every_module_is_listed_in_exactly_one_layer():
    groups = _groups()
    listed = groups["core"] + groups["plumbing"]
    modules = sorted(p.stem for p in HELPERS.glob("*.py") if p.stem != "__init__")
    assert sorted(listed) == modules, "helpers/__init__.py must list every module once, as core or plumbing"


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in HELPERS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.name} ({lines} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_data_and_model_stages_import_no_plumbing():
    groups = _groups()
    # train and inference sit at the seam (the loop saves checkpoints and logs; inference re-exports the server's
    # Predictor); every stage before them must stand alone.
    stages = [name for name in groups["core"] if name not in ("train", "inference")]
    for name in stages:
        tree = ast.parse((HELPERS / f"{name}.py").read_text(encoding="utf-8"))
        imported = {node.module.split(".")[1] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("helpers.")}
        assert not imported & set(groups["plumbing"]), f"{name} imports plumbing: {imported & set(groups['plumbing'])}"
