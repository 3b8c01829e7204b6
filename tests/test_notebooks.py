"""The notebooks as committed: executed without errors, the course's skeleton, nothing private in the outputs,
and no logic copied out of helpers. (nbval, run by `make test`, re-executes them and compares the outputs.)"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import nbformat
import pytest

from helpers.config import ROOT

NOTEBOOKS = ROOT / "notebooks"
# scripts/run_notebooks.py holds the repository URL (REPO_URL, REPO_PUBLISHED) and cleans stored outputs.
_spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
run_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_notebooks)
EXPECTED = [
    "01_pairing.ipynb",
    "02_tokenizing.ipynb",
    "03_masking.ipynb",
    "04_training.ipynb",
    "05_inference.ipynb",
    "06_gradio_demo.ipynb",
]
IGNORE_MARKER = "# NBVAL_IGNORE_OUTPUT"
# The same marker as a cell tag (nbval reads both): invisible to a reader, so the notebooks prefer it.
IGNORE_TAG = "nbval-ignore-output"


def output_ignored(cell) -> bool:
    """Whether nbval leaves this cell's output uncompared: the tag, or the comment as the cell's own line."""
    return IGNORE_TAG in cell.get("metadata", {}).get("tags", []) or IGNORE_MARKER in cell.source.splitlines()


# Folders of this machine (or a user's) that must never show up in a committed output.
# A library warning names its file (/usr/lib/..., /opt/conda/...); macOS keeps homes in /Users and temp files in /var.
MACHINE_PATH = re.compile(r"/(?:root|home|tmp|work|usr|opt|var|Users)/")
WANDB_KEY = re.compile(r"WANDB_API_KEY\W{0,8}[0-9a-fA-F]{40}")
PROGRESS_TEXT = re.compile(r"\d+%\|.*\|\s*\d+/\d+")  # tqdm's "40%|####      | 2/5"
DEF = re.compile(r"^\s*(?:async\s+)?(?:def|class)\s+([A-Za-z_]\w*)", re.MULTILINE)


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def output_texts(cell) -> list[str]:
    """Every text an output of ``cell`` holds (streams, tracebacks, each non-image MIME type)."""
    texts = []
    for out in cell.get("outputs", []):
        if "text" in out:
            texts.append(out["text"])
        texts.extend(out.get("traceback", []))
        if "evalue" in out:
            texts.append(out["evalue"])
        for mime, value in out.get("data", {}).items():
            if not mime.startswith("image/"):  # base64 image data can spell anything
                texts.append(value if isinstance(value, str) else str(value))
    return texts


def helper_names() -> set[str]:
    """Public top-level functions and classes of helpers/*.py."""
    names = set()
    for path in (ROOT / "helpers").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {
            node.name
            for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_")
        }
    return names


def execution_problems(nb) -> list[str]:
    problems = []
    for number, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("execution_count") is None:
            problems.append(f"cell {number} was never executed (run `make notebooks`)")
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"cell {number} stored an error: {out.get('ename')}: {out.get('evalue')}")
    return problems


def skeleton_problems(nb, name: str) -> list[str]:
    """The course's shape: badge + title + what it teaches, a Colab-only install cell first, prose before every
    code cell, and a Summary followed by 2-3 Exercises."""
    problems = []
    cells = nb.cells
    if not cells or cells[0].cell_type != "markdown":
        return ["the first cell must be Markdown: the Colab badge, the title and what the notebook teaches"]
    opening = cells[0].source
    if "colab.research.google.com/github/" not in opening or f"/notebooks/{name})" not in opening:
        problems.append("the first cell lacks an 'Open in Colab' badge linking to this notebook")
    if not re.search(r"^# \S", opening, re.MULTILINE):
        problems.append("the first cell lacks a '# ' title")
    if "**Needs:**" not in opening:
        problems.append("the first cell does not say what the notebook needs from the one before (**Needs:**)")
    code = [c for c in cells if c.cell_type == "code"]
    if not code or '"google.colab" in sys.modules' not in code[0].source or "REPO = " not in code[0].source:
        problems.append('the first code cell must install on Colab only (`"google.colab" in sys.modules`, REPO = ...)')
    for number, cell in enumerate(cells):
        if cell.cell_type == "code" and (number == 0 or cells[number - 1].cell_type != "markdown"):
            problems.append(f"code cell {number} has no Markdown before it")
    headings = [(i, c.source) for i, c in enumerate(cells) if c.cell_type == "markdown"]
    summary = [i for i, src in headings if re.search(r"^## Summary\s*$", src, re.MULTILINE)]
    exercises = [(i, src) for i, src in headings if re.search(r"^## Exercises\s*$", src, re.MULTILINE)]
    if not summary:
        problems.append("no '## Summary' section")
    if not exercises:
        problems.append("no '## Exercises' section")
    else:
        index, src = exercises[-1]
        items = re.findall(r"^\d+\. ", src.split("## Exercises", 1)[1], re.MULTILINE)
        if not 2 <= len(items) <= 3:
            problems.append(f"'## Exercises' should list 2 or 3 numbered exercises, not {len(items)}")
        if summary and summary[-1] > index:
            problems.append("'## Summary' should come before '## Exercises'")
        problems += solution_problems(cells[index + 1 :], len(items))
    return problems


def solution_problems(after: list, exercises: int) -> list[str]:
    """After the Exercises: '### Solution 1', '### Solution 2', ... in order, one per exercise, each with code."""
    titles = [
        (i, m.group(1))
        for i, c in enumerate(after)
        if c.cell_type == "markdown"
        for m in [re.match(r"### Solution (\d+)\s*$", c.source.splitlines()[0] if c.source else "")]
        if m
    ]
    if [number for _, number in titles] != [str(n) for n in range(1, exercises + 1)]:
        return [
            f"after '## Exercises' the solutions should be '### Solution 1' to '### Solution {exercises}', in "
            f"order; found {[f'Solution {number}' for _, number in titles]}"
        ]
    return [
        f"'### Solution {number}' has no code cell after it"
        for (i, number), end in zip(titles, [j for j, _ in titles[1:]] + [len(after)])
        if not any(c.cell_type == "code" for c in after[i + 1 : end])
    ]


def prose_words(nb) -> int:
    """Words of Markdown prose (the badge line and code spans count as words too: a rough, stable measure)."""
    return sum(len(re.findall(r"\S+", c.source)) for c in nb.cells if c.cell_type == "markdown")


def privacy_problems(nb) -> list[str]:
    problems = []
    for number, cell in enumerate(nb.cells):
        for text in output_texts(cell) if cell.cell_type == "code" else []:
            if match := MACHINE_PATH.search(text):
                problems.append(
                    f"cell {number}: an output shows a machine path ({match.group()}...); print paths "
                    f"relative to helpers.config.ROOT"
                )
            if WANDB_KEY.search(text):
                problems.append(f"cell {number}: an output holds what looks like a W&B API key")
        if WANDB_KEY.search(cell.source):
            problems.append(f"cell {number}: the source holds what looks like a W&B API key")
    return problems


def redefinition_problems(nb, names: set[str]) -> list[str]:
    problems = []
    for number, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for name in DEF.findall(cell.source):
            if name in names:
                problems.append(
                    f"cell {number} redefines helpers' {name}; import it (or show it with inspect.getsource) instead"
                )
    return problems


def volatile_problems(nb) -> list[str]:
    """Progress bars (widgets or text) only in cells whose output nbval ignores."""
    problems = []
    for number, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or output_ignored(cell):
            continue
        widget = any(
            "application/vnd.jupyter.widget-view+json" in out.get("data", {}) for out in cell.get("outputs", [])
        )
        if widget or any(PROGRESS_TEXT.search(text) for text in output_texts(cell)):
            problems.append(f"cell {number} shows a progress bar but is not tagged {IGNORE_TAG}")
    return problems


def repo_problems(nb, name: str) -> list[str]:
    """The badge and the Colab setup cell must use run_notebooks.REPO_URL (one address, no drift)."""
    problems = []
    owner_repo = run_notebooks.REPO_URL.removeprefix("https://github.com/")
    badge = f"(https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{name})"
    if badge not in nb.cells[0].source:
        problems.append(
            f"the Colab badge does not link to {badge[1:-1]} (run `make notebooks` after changing REPO_URL)"
        )
    setup = next((c.source for c in nb.cells if c.cell_type == "code"), "")
    for line in (f'REPO = "{run_notebooks.REPO_URL}"', f"REPO_PUBLISHED = {run_notebooks.REPO_PUBLISHED}"):
        if line not in setup.splitlines():
            problems.append(f"the setup cell lacks the line {line} (run `make notebooks` after changing REPO_URL)")
    return problems


def readable_problems(nb) -> list[str]:
    """What GitHub cannot show: widgets (a stored bar reads "0/4"), and pages of a local server that has stopped."""
    problems = ["the metadata holds widget state (run `make notebooks`)"] if "widgets" in nb.metadata else []
    for number, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if run_notebooks.WIDGET in out.get("data", {}):
                problems.append(f"cell {number} stores a widget (a progress bar?); store text bars (`make notebooks`)")
            if run_notebooks.LOOPBACK_FRAME.search(str(out.get("data", {}).get("text/html", ""))):
                problems.append(f"cell {number} stores an iframe of a local server that is no longer running")
    return problems


def _code(nb) -> list[tuple[int, ast.Module]]:
    """Each code cell as Python (IPython's ! and % lines turned into calls)."""
    from IPython.core.inputtransformer2 import TransformerManager

    transform = TransformerManager().transform_cell
    return [(n, ast.parse(transform(c.source))) for n, c in enumerate(nb.cells) if c.cell_type == "code"]


def import_problems(nb) -> list[str]:
    """Every imported name is used, nothing private comes from helpers, and no function's source is sliced."""
    problems, imported, used = [], {}, set()
    for number, tree in _code(nb):
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    imported[(alias.asname or alias.name).split(".")[0]] = number
                    if (
                        isinstance(node, ast.ImportFrom)
                        and (node.module or "").startswith("helpers")
                        and alias.name.startswith("_")
                    ):
                        problems.append(
                            f"cell {number} imports the private helpers name {alias.name}; show what "
                            f"the public functions do instead"
                        )
            elif isinstance(node, ast.Name):
                used.add(node.id)
            elif (
                isinstance(node, ast.Subscript)
                and isinstance(node.value, ast.Call)
                and "getsource" in ast.unparse(node.value.func)
            ):
                problems.append(f"cell {number} slices a function's source; show whole functions, or write it out")
            elif (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call)
                and "getsource" in ast.unparse(node.value.func)
            ):
                problems.append(f"cell {number} keeps a function's source to cut it; print whole functions only")
    problems += [
        f"cell {number} imports {name}, which no cell uses" for name, number in imported.items() if name not in used
    ]
    return problems


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_the_six_notebooks_are_there():
    assert [p.name for p in notebook_paths()] == EXPECTED


@pytest.fixture(scope="module")
def helpers_public() -> set[str]:
    names = helper_names()
    assert {"make_pairs", "select_positions", "train", "MeditationsDataset"} <= names  # the scan itself works
    return names


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_as_stored(name, helpers_public):
    path = NOTEBOOKS / name
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    nb = read(path)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    problems = (
        execution_problems(nb)
        + skeleton_problems(nb, name)
        + privacy_problems(nb)
        + redefinition_problems(nb, helpers_public)
        + volatile_problems(nb)
        + repo_problems(nb, name)
        + readable_problems(nb)
        + import_problems(nb)
    )
    assert not problems, f"{name}:\n  " + "\n  ".join(problems)


def test_stored_outputs_come_from_the_default_profile():
    """nbval compares against outputs made under the default profile (what `make lab` runs on a CPU); a notebook
    run under another profile and committed would show a learner a run they will not get, and fail every test run."""
    seen = {}
    for path in notebook_paths():
        for cell in read(path).cells:
            if cell.cell_type == "code":
                for text in output_texts(cell):
                    for profile in re.findall(r"profile '([\w-]+)'", text):
                        seen.setdefault(profile, set()).add(path.name)
    assert set(seen) == {"default"}, (
        f"stored outputs name the profiles {sorted(seen)}; regenerate with `make notebooks`"
    )
    assert {"02_tokenizing.ipynb", "04_training.ipynb", "05_inference.ipynb", "06_gradio_demo.ipynb"} <= seen["default"]


# The notebooks teach BERT, not the project's history: how a setting was found belongs in docs/experiments.md, which
# the notebooks link to, and an experiment they show is named by what it changes, its commit and its date.
HISTORY = re.compile(
    r"\bround\s*\d|\b(?:first|second|third|fourth|fifth|sixth)\s+round\b|\brounds?\s+of\s+experiments\b"
    r"|\breproduc\w*|\bof then\b|\bprevious default\b|\bdefault (?:of|until|before) |\btoday's\b"
    r"|\breference recipe\b|\bround\d",
    re.IGNORECASE,
)
MAX_PROSE_WORDS = 2000


def history_problems(nb) -> list[str]:
    """History words in the prose or the printed text a learner reads (the Markdown, and every stream output)."""
    problems = []
    for number, cell in enumerate(nb.cells):
        texts = (
            [cell.source]
            if cell.cell_type == "markdown"
            else [out.get("text", "") for out in cell.get("outputs", []) if out.get("output_type") == "stream"]
        )
        for text in texts:
            problems += [f"cell {number}: {match.group()!r}" for match in HISTORY.finditer(text)]
    return problems


def explorer_problems(nb) -> list[str]:
    """Every cell that builds an explorer stores its first view as a plain output (a table, a picture or a sentence)."""
    problems = []
    for number, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not re.search(r"\w+_explorer\(", cell.source):
            continue
        kinds = {mime for out in cell.get("outputs", []) for mime in out.get("data", {})}
        if not kinds & {"text/html", "image/png"} or "first_view(" not in cell.source:
            problems.append(f"cell {number} builds an explorer but stores no first view of it (explore.first_view)")
    return problems


@pytest.mark.parametrize("name", EXPECTED)
def test_the_prose_teaches_bert_not_the_projects_history(name):
    nb = read(NOTEBOOKS / name)
    assert prose_words(nb) <= MAX_PROSE_WORDS, f"{name}: {prose_words(nb)} words of prose, over {MAX_PROSE_WORDS}"
    assert not history_problems(nb), f"{name}: history words a learner cannot place: {history_problems(nb)}"
    assert not explorer_problems(nb), explorer_problems(nb)


def test_the_history_check_catches_history_and_only_history():
    caught = ["Round 4 tried five levers", "as in the fifth round", "the default of then", "a reproduction of it",
              "the previous default trained 24 epochs", "today's default", "the reference recipe pads"]  # fmt: skip
    allowed = ["the rounded figure", "around the [MASK]", "the tutorial's recipe pads", "the default profile",
               "the 100 most frequent tokens", "default_80_10_10 (commit 297d744 of 2026-12-06)"]  # fmt: skip
    assert [text for text in caught if not HISTORY.search(text)] == []
    assert [text for text in allowed if HISTORY.search(text)] == []


def test_the_explorer_check_wants_a_stored_first_view():
    cell = nbformat.v4.new_code_cell("explorer = masking_explorer(tokenizer)\ndisplay(explorer)")
    cell.outputs = [nbformat.v4.new_output("display_data", {"text/plain": "interactive(...)"})]
    nb = nbformat.v4.new_notebook(cells=[cell])
    assert explorer_problems(nb)
    cell.source += "\nfirst_view(explorer)"
    cell.outputs.append(nbformat.v4.new_output("display_data", {"text/html": "<table></table>", "text/plain": "t"}))
    assert not explorer_problems(nb)


def test_the_stored_outputs_hold_at_least_twelve_figures():
    figures = {
        path.name: sum(
            "image/png" in out.get("data", {})
            for cell in read(path).cells
            if cell.cell_type == "code"
            for out in cell.get("outputs", [])
        )
        for path in notebook_paths()
    }
    assert sum(figures.values()) >= 12, figures


def test_sanitize_file_is_well_formed():
    text = (NOTEBOOKS / "sanitize.cfg").read_text(encoding="utf-8")
    pairs = re.findall(r"^regex: (.*)$\n^replace: (.*)$", text, re.MULTILINE)
    assert pairs and len(pairs) == text.count("regex: ")
    for regex, _ in pairs:
        re.compile(regex)
    port = next(regex for regex, _ in pairs if "127" in regex)
    assert re.sub(port, "X", "Running on http://127.0.0.1:7861/") == "Running on http://X/"


# --- the checks above can fail: each one on a notebook made to break it ---


def _notebook(*cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=list(cells))
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.execution_count = 1
    return nb


def _good_cells(name: str = "99_x.ipynb") -> list:
    return [
        nbformat.v4.new_markdown_cell(
            f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/o/r/blob/main/notebooks/{name})"
            "\n\n# Title\n\n**Needs:** nothing."
        ),
        nbformat.v4.new_code_cell(
            'import sys\nREPO = "https://example.org/r"\nif "google.colab" in sys.modules:\n    pass'
        ),
        nbformat.v4.new_markdown_cell("## Summary\n\n- done"),
        nbformat.v4.new_markdown_cell("## Exercises\n\n1. one\n2. two"),
        nbformat.v4.new_markdown_cell("### Solution 1\n\nOne way:"),
        nbformat.v4.new_code_cell("print(1)"),
        nbformat.v4.new_markdown_cell("### Solution 2"),
        nbformat.v4.new_code_cell("print(2)"),
    ]


def test_checks_pass_a_good_notebook():
    nb = _notebook(*_good_cells())
    assert execution_problems(nb) + skeleton_problems(nb, "99_x.ipynb") + privacy_problems(nb) == []


def test_checks_catch_errors_and_unexecuted_cells():
    nb = _notebook(*_good_cells())
    nb.cells[1].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=[])]
    assert any("ValueError" in p for p in execution_problems(nb))
    nb.cells[1].execution_count = None
    assert any("never executed" in p for p in execution_problems(nb))


def test_checks_catch_a_missing_skeleton():
    cells = _good_cells()
    nb = _notebook(cells[0], cells[1], nbformat.v4.new_code_cell("x = 1"), cells[3])
    problems = skeleton_problems(nb, "99_x.ipynb")
    assert any("Summary" in p for p in problems) and any("no Markdown before it" in p for p in problems)
    nb = _notebook(nbformat.v4.new_markdown_cell("# Title"), *cells[1:])
    assert any("badge" in p for p in skeleton_problems(nb, "99_x.ipynb"))


def test_checks_catch_missing_and_empty_solutions():
    cells = _good_cells()
    assert any("Solution 1' to '### Solution 2'" in p for p in skeleton_problems(_notebook(*cells[:-2]), "99_x.ipynb"))
    swapped = cells[:4] + cells[6:8] + cells[4:6]
    assert any("in order" in p for p in skeleton_problems(_notebook(*swapped), "99_x.ipynb"))
    no_code = cells[:5] + cells[6:7]
    assert skeleton_problems(_notebook(*no_code), "99_x.ipynb") == [
        "'### Solution 1' has no code cell after it",
        "'### Solution 2' has no code cell after it",
    ]


@pytest.mark.parametrize(
    "leak",
    [
        "/root/.cache/x",
        "Checkpoint: /work/main/runs/a",
        "/tmp/tmpab12/model",
        "/home/me/bert",
        "/usr/lib/python3.11/site-packages/torch/x.py:12: UserWarning",
        "/opt/conda/lib/python3.11/y.py",
        "/Users/me/bert",
        "/var/folders/ab/T/x",
    ],
)
def test_checks_catch_machine_paths(leak):
    nb = _notebook(*_good_cells())
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"saved to {leak}\n")]
    assert privacy_problems(nb)


def test_checks_catch_a_wandb_key():
    nb = _notebook(*_good_cells())
    nb.cells[1].outputs = [
        nbformat.v4.new_output("execute_result", data={"text/plain": "WANDB_API_KEY='" + "a1" * 20 + "'"})
    ]
    assert any("API key" in p for p in privacy_problems(nb))


def test_checks_catch_a_redefined_helper(helpers_public):
    nb = _notebook(
        nbformat.v4.new_code_cell("def make_pairs(sentences):\n    return []"),
        nbformat.v4.new_code_cell("def my_plot():\n    pass"),
    )
    problems = redefinition_problems(nb, helpers_public)
    assert len(problems) == 1 and "make_pairs" in problems[0]


def test_checks_catch_an_unmarked_progress_bar():
    cell = nbformat.v4.new_code_cell("train(cfg, out)")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="epoch 1/2:  40%|####      | 2/5 [00:01<00:02]")
    ]
    assert volatile_problems(_notebook(cell))
    cell.metadata["tags"] = [IGNORE_TAG]  # the tag nbval reads, invisible to a reader
    assert not volatile_problems(_notebook(cell))
    cell.metadata["tags"] = []
    cell.source = IGNORE_MARKER + "\n" + cell.source  # or the comment
    assert not volatile_problems(_notebook(cell))


def _setup_cell(published: bool) -> str:
    source = next(c.source for c in read(NOTEBOOKS / EXPECTED[0]).cells if c.cell_type == "code")
    return source.replace(f"REPO_PUBLISHED = {run_notebooks.REPO_PUBLISHED}", f"REPO_PUBLISHED = {published}")


class _FakeShell:
    """Records the ! and % lines of a cell; like IPython, expands {NAME} from the cell's namespace."""

    def __init__(self, namespace: dict | None = None):
        self.calls, self.namespace = [], namespace if namespace is not None else {}

    def system(self, command):
        self.calls.append(command.format_map(self.namespace))

    def run_line_magic(self, name, line, *_):
        self.calls.append(f"%{name} {line}")


@pytest.mark.parametrize("published", [False, True])
def test_setup_cell_on_colab(published, monkeypatch):
    """On Colab a placeholder URL stops the cell with one sentence; a published one is cloned and installed."""
    from IPython.core.inputtransformer2 import TransformerManager

    code = TransformerManager().transform_cell(_setup_cell(published))
    namespace = {}
    shell = _FakeShell(namespace)
    namespace["get_ipython"] = lambda: shell
    monkeypatch.setitem(sys.modules, "google.colab", object())
    if not published:
        with pytest.raises(SystemExit, match=r"^Set REPO in this cell .* is a placeholder, not a real repository\.$"):
            exec(code, namespace)  # the notebook's own cell
        assert shell.calls == []
    else:
        exec(code, namespace)  # the notebook's own cell
        assert any(run_notebooks.REPO_URL in call and "git clone" in call for call in shell.calls)
        assert any("pip install" in call for call in shell.calls)


def test_setup_cell_does_nothing_off_colab(monkeypatch):
    from IPython.core.inputtransformer2 import TransformerManager

    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    shell = _FakeShell()
    exec(TransformerManager().transform_cell(_setup_cell(False)), {"get_ipython": lambda: shell})
    assert shell.calls == []


def test_checks_catch_a_drifted_repository_url():
    cells = _good_cells("01_pairing.ipynb")  # badge o/r, REPO = "https://example.org/r"
    cells[1].source += f"\nREPO_PUBLISHED = {not run_notebooks.REPO_PUBLISHED}"
    nb = _notebook(*cells)
    problems = repo_problems(nb, "01_pairing.ipynb")
    assert len(problems) == 3 and "badge" in problems[0]
    run_notebooks.stamp_repo(nb, "01_pairing.ipynb")  # what `make notebooks` does first
    assert repo_problems(nb, "01_pairing.ipynb") == []


def test_stored_outputs_are_cleaned_of_widgets_and_dead_pages():
    cell = nbformat.v4.new_code_cell("url = serve(demo)")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={run_notebooks.WIDGET: {"model_id": "x"}, "text/plain": "0/4"}),
        nbformat.v4.new_output(
            "display_data",
            data={"text/html": '<div><iframe src="http://127.0.0.1:41831/" width="100%"></iframe></div>'},
        ),
        nbformat.v4.new_output("stream", name="stdout", text="serving at http://127.0.0.1:41831/\n"),
    ]
    nb = _notebook(cell)
    nb.metadata["widgets"] = {"state": {}}
    assert len(readable_problems(nb)) == 3
    run_notebooks.readable_outputs(nb)
    assert readable_problems(nb) == [] and [out.output_type for out in nb.cells[0].outputs] == ["stream"]


def test_checks_catch_unused_and_private_imports_and_sliced_source():
    nb = _notebook(
        nbformat.v4.new_code_cell(
            "import os\nimport inspect\nfrom helpers.pairs import _random_other, make_pairs\n"
            "print(inspect.getsource(make_pairs)[:40])\n!echo {make_pairs}"
        )
    )
    problems = import_problems(nb)
    assert any("imports os" in p for p in problems)
    assert any("_random_other" in p and "private" in p for p in problems)
    assert any("slices" in p for p in problems)
    assert not any("imports inspect" in p or "imports make_pairs" in p for p in problems)


def test_the_notebooks_and_the_tests_that_read_their_checkpoint_share_one_worker():
    """make test's scheduler: notebook 04 trains the checkpoint that 05, 06 and the readers use, so they run together,
    in order, on one worker; every other test file is a unit of its own."""
    from tests.conftest import NOTEBOOK_READERS, work_unit

    uses = re.compile(r"def \w+\([^)]*\bdefault_run\b")  # a test or fixture that takes the default_run fixture
    readers = {path.name for path in (ROOT / "tests").glob("test_*.py") if uses.search(path.read_text())}
    assert readers == set(NOTEBOOK_READERS), "list every test file that reads default_run in NOTEBOOK_READERS"
    together = {work_unit(f"notebooks/{path.name}") for path in notebook_paths()}
    assert together | {work_unit(f"tests/{name}") for name in readers} == {"notebooks"}
    assert work_unit("tests/test_pairs.py") == "tests/test_pairs.py" != work_unit("tests/test_tokens.py")


def test_make_tests_workers_share_the_cores():
    """Each pytest-xdist worker (and each kernel or process it starts) runs torch on its share of the cores: two
    workers with two threads each on two cores spin against each other (tests/conftest.py)."""
    import os

    import torch

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    assert torch.get_num_threads() * workers <= max(cores, workers)


def test_the_notebook_client_reads_a_reply_a_missed_wake_up_left_waiting():
    """A reply a long wait would not see until its timeout is read on the next short wait; no reply is still Empty."""
    import asyncio
    import time
    from queue import Empty

    from tests.conftest import run_notebooks

    in_steps = run_notebooks.in_steps
    calls = []

    async def misses_the_first_wake_up(timeout=None):  # as pyzmq's poll: the reply is there, the first wait misses it
        calls.append(timeout)
        if len(calls) == 1:
            await asyncio.sleep(min(timeout, 0.05))
            raise Empty
        return {"msg_type": "execute_reply"}

    start = time.monotonic()
    assert asyncio.run(in_steps(misses_the_first_wake_up, step=0.05)(timeout=600)) == {"msg_type": "execute_reply"}
    assert time.monotonic() - start < 5 and calls[0] <= 0.05 and len(calls) == 2  # not 600 s

    async def never(timeout=None):
        await asyncio.sleep(timeout)
        raise Empty

    start = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(in_steps(never, step=0.05)(timeout=0.2))
    assert 0.2 <= time.monotonic() - start < 2  # the same deadline as one wait
