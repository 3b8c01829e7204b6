"""requirements.lock, pyproject.toml and environment.yml describe one environment."""

import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from helpers.config import ROOT

KEY_PACKAGES = [
    "torch",
    "transformers",
    "tokenizers",
    "accelerate",
    "wandb",
    "gradio",
    "jupyterlab",
    "nbval",
    "ipywidgets",
    "pytest",
]


@pytest.fixture(scope="module")
def lock() -> dict[str, Version]:
    """Canonical package name -> pinned version, from requirements.lock."""
    pins = {}
    for number, line in enumerate((ROOT / "requirements.lock").read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        specs = list(requirement.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"requirements.lock:{number} is not an exact pin: {line}"
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"requirements.lock pins {name} twice"
        pins[name] = Version(specs[0].version)
    return pins


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _pip_entries(environment: dict) -> list[str]:
    pip = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "environment.yml needs one pip: section"
    return pip[0]


def test_lock_is_complete(lock):
    assert len(lock) > 100
    for name in KEY_PACKAGES + ["safetensors", "numpy", "packaging", "pyyaml"]:
        assert canonicalize_name(name) in lock, f"{name} is not in requirements.lock"


def test_torch_is_pinned_exactly(lock, environment):
    assert str(lock["torch"]) == "2.13.0"
    text = (ROOT / "requirements.lock").read_text()
    assert "\ntorch==2.13.0\n" in text  # no local tag such as +cpu: pip picks the wheel
    assert "torch==2.13.0" in _pip_entries(environment)


def test_every_pyproject_dependency_is_satisfied_by_the_lock(lock, pyproject):
    project = pyproject["project"]
    groups = {"dependencies": project["dependencies"], **project.get("optional-dependencies", {})}
    assert {"notebooks", "test"} <= set(groups)
    checked = 0
    for group, requirements in groups.items():
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"python_version": "3.11"}):
                continue
            name = canonicalize_name(requirement.name)
            assert name in lock, f"pyproject [{group}] needs {text}, and requirements.lock does not pin {name}"
            assert requirement.specifier.contains(lock[name], prereleases=True), (
                f"pyproject [{group}] needs {text}, and requirements.lock pins {name}=={lock[name]}"
            )
            checked += 1
    assert checked >= 15


def test_pyproject_torch_range_admits_the_pin_and_colab(pyproject):
    # The lock pins torch exactly; pyproject stays loose so that Colab keeps its own (CUDA) torch.
    torch = next(Requirement(t) for t in pyproject["project"]["dependencies"] if Requirement(t).name == "torch")
    # 2.4 is the lowest the code needs (fused AdamW on a CPU, docs/engineering.md); 2.3 lacks it.
    assert (
        torch.specifier.contains("2.13.0")
        and torch.specifier.contains("2.4.0")
        and not torch.specifier.contains("2.3.0")
    )


def test_environment_yml_pins_match_the_lock(lock, environment):
    entries = _pip_entries(environment)
    assert "-r requirements.lock" in entries
    named = {}
    for entry in entries:
        if entry.startswith("-"):
            continue
        requirement = Requirement(entry)
        named[canonicalize_name(requirement.name)] = requirement
    for package in KEY_PACKAGES:
        assert canonicalize_name(package) in named, f"environment.yml does not list {package}"
    for name, requirement in named.items():
        specs = list(requirement.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"environment.yml: {requirement} is not an exact pin"
        assert name in lock, f"environment.yml names {name}, which requirements.lock does not pin"
        assert Version(specs[0].version) == lock[name], (
            f"environment.yml pins {requirement}, requirements.lock pins {name}=={lock[name]}"
        )


def test_python_is_3_11_everywhere(environment, pyproject):
    conda = [d for d in environment["dependencies"] if isinstance(d, str) and d.split("=")[0] == "python"]
    assert conda == ["python=3.11"]
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    assert requires.contains("3.11.0") and requires.contains("3.11.9")
    assert not requires.contains("3.10.14")  # newer Pythons stay allowed for Colab; the lock is for 3.11
    assert "Python 3.11" in (ROOT / "requirements.lock").read_text().splitlines()[0]
