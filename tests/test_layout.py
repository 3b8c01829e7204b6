"""The house rules that keep the teaching core readable: short functions, and a core that needs no plumbing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import helpers
from helpers.config import ROOT

HELPERS = ROOT / "helpers"
MAX_FUNCTION_LINES = 60


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
    files = [*HELPERS.glob("*.py"), *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "scripts").glob("*.py")]
    assert len(files) > len(list(HELPERS.glob("*.py"))) + 2  # the benchmarks and scripts really are read
    long = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.name} ({lines} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


# Every Python module of the repository, by dotted name: the helpers, the benchmarks, the scripts and the tests.
PACKAGES = ("helpers", "benchmarks", "scripts", "tests")


def modules() -> dict[str, Path]:
    """'helpers.train' -> helpers/train.py, and so on for every package of PACKAGES."""
    return {
        f"{package}.{path.stem}": path
        for package in PACKAGES
        for path in sorted((ROOT / package).glob("*.py"))
        if path.stem != "__init__"
    }


def imports_in(path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module in PACKAGES:  # from helpers import plots
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:  # from helpers.train import train
            found.add(node.module)
        elif isinstance(node, ast.Import):  # import helpers.serving
            found |= {alias.name for alias in node.names}
    return (found & known) - {f"{path.parent.name}.{path.stem}"}


def repository_graph() -> dict[str, set[str]]:
    """Each module of the repository and the modules of the repository it imports."""
    paths = modules()
    return {name: imports_in(path, set(paths)) for name, path in paths.items()}


def imports_of(name: str) -> set[str]:
    """The helpers modules (short names) that helpers/<name>.py imports."""
    known = {f"helpers.{p.stem}" for p in HELPERS.glob("*.py")}
    return {module.split(".")[1] for module in imports_in(HELPERS / f"{name}.py", known)}


def import_graph() -> dict[str, set[str]]:
    return {path.stem: imports_of(path.stem) for path in HELPERS.glob("*.py") if path.stem != "__init__"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as a path that ends where it starts, or None (depth-first search)."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return None
        for target in sorted(graph.get(node, ())):
            cycle = visit(target, path + [node])
            if cycle:
                return cycle
        done.add(node)
        return None

    return next((cycle for node in sorted(graph) if (cycle := visit(node, []))), None)


def test_the_import_graph_of_helpers_has_no_circle():
    graph = import_graph()
    assert graph["train"] >= {"checkpoint", "dataset", "model"}  # the drawing really reads the imports
    assert graph["serving"] >= {"inference"}
    assert find_cycle(graph) is None, f"import circle: {' -> '.join(find_cycle(graph))}"


def test_the_import_graph_of_the_whole_repository_has_no_circle():
    graph = repository_graph()
    # The drawing reads every package: the benchmarks, the scripts and the tests as well as the helpers.
    assert graph["benchmarks.run"] >= {"benchmarks.child", "benchmarks.time_to_quality", "helpers.provenance"}
    assert graph["benchmarks.time_to_quality"] >= {"benchmarks.child", "benchmarks.learning", "helpers.parts"}
    assert "scripts.run_notebooks" in graph and graph["tests.test_changes"] >= {"helpers.train"}
    assert find_cycle(graph) is None, f"import circle: {' -> '.join(find_cycle(graph))}"


def test_a_circle_through_the_benchmarks_is_found(tmp_path):
    """The circle the benchmarks once had (run imports time_to_quality, which imported run back) fails this test."""
    (tmp_path / "benchmarks").mkdir()
    run, ttq = tmp_path / "benchmarks" / "run.py", tmp_path / "benchmarks" / "time_to_quality.py"
    run.write_text("from benchmarks.time_to_quality import side_by_side\n")
    ttq.write_text("def main():\n    from benchmarks.run import in_child\n")
    known = {"benchmarks.run", "benchmarks.time_to_quality"}
    graph = {"benchmarks.run": imports_in(run, known), "benchmarks.time_to_quality": imports_in(ttq, known)}
    assert find_cycle(graph) == ["benchmarks.run", "benchmarks.time_to_quality", "benchmarks.run"]


def test_the_cycle_finder_finds_a_circle_and_only_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"inference": {"serving"}, "serving": {"inference"}}) == ["inference", "serving", "inference"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None  # a diamond is no circle


def test_the_core_imports_no_plumbing():
    groups = _groups()
    for name in groups["core"]:
        plumbing = imports_of(name) & set(groups["plumbing"])
        assert not plumbing, f"{name} (core) imports plumbing: {sorted(plumbing)}"


# Every function of helpers/ that takes the whole Config, and why it needs more than a value or two (the rest get
# values, passed down once). docs/engineering.md follows cfg from train() through these; a new one fails here until
# it says why it needs the whole profile.
TAKES_THE_CONFIG = {
    "train.train": "the loop: epochs, clipping, the NSP weight",
    "train.start_run": "builds the run from the profile: seed, schedule, steps, model, data",
    "train.measurement_batches": "the validation and seen batches, by the profile's masking and seed",
    "train.optimisation": "AdamW's knobs and the schedule's (warm-up, decay, its kind)",
    "train.mixed_precision": "the one knob, resolved against the hardware",
    "train.make_optimizer": "four optimizer knobs; notebook 04 calls it with the profile",
    "train.ensure_trained": "trains the profile when the folder holds no checkpoint, resumes an interrupted one",
    "dataset.prepare_data": "the data stage's entry: eight knobs of corpus, pairs, split and tokenizer",
    "dataset.PreparedData.train_pairs": "an epoch's pairs: four pairing knobs and the seed",
    "dataset.PreparedData.training_text": "epoch 1's pairs beside the training paragraphs, by the pairing knobs",
    "dataset.make_loader": "a profile's batches: batch size, bucketing and its masking rule",
    "dataset.validation_batches": "the fixed validation batches: length, seed and the validation rule",
    "masking.masking_rule": "the one place the config chooses the masking rule",
    "model.load_model": "the model stage's entry: source and the scratch model's starting heads",
    "model.scratch_config": "seven knobs of the scratch model's shape",
    "checkpoint.save_checkpoint": "the marker names the profile; hands it on to _write_files",
    "checkpoint._write_files": "writes the whole profile as profile.json, and the card",
    "report.model_card": "the card names the profile and its model source, and the validation masking share",
    "scale.run_scale": "this run's steps and batch, beside BERT-base's",
    "scale.scale_table": "this run's profile beside the bert-base profile",
    "tracking.Tracker.__init__": "W&B's mode, from the profile",
    "tracking.Tracker._start": "W&B records the whole profile as the run's config",
    "record.make_record": "trains the default profile for the recorded run",
    "record.record_profile": "the record keeps the profile it was made with",
    "app.held_out_examples": "the demo's examples come from the checkpoint profile's validation split",
    "app.checkpoint_summary": "the panel names the checkpoint's profile",
    "explore.departures_frame": "notebook 04's table: every value where the profile departs from BERT-base's",
}


def takes_the_config() -> set[str]:
    """module.function (module.Class.method) of every function in helpers/ with a Config parameter."""
    found = set()
    for path in HELPERS.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        scopes = [("", tree.body)] + [(f"{n.name}.", n.body) for n in tree.body if isinstance(n, ast.ClassDef)]
        for prefix, body in scopes:
            for node in body:
                if isinstance(node, ast.FunctionDef) and any(
                    arg.arg == "cfg"
                    or (arg.annotation is not None and ast.unparse(arg.annotation).replace(" | None", "") == "Config")
                    for arg in node.args.args + node.args.kwonlyargs
                ):
                    found.add(f"{path.stem}.{prefix}{node.name}")
    return found


def test_the_config_reaches_only_the_functions_that_say_why():
    found = takes_the_config()
    assert {"train.train", "masking.masking_rule", "dataset.PreparedData.train_pairs"} <= found  # the scan works
    assert found == set(TAKES_THE_CONFIG), (
        f"taking the whole Config without a reason: {sorted(found - set(TAKES_THE_CONFIG))}; "
        f"listed but no longer taking it: {sorted(set(TAKES_THE_CONFIG) - found)}"
    )
