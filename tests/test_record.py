"""The committed recorded run (docs/record.json) is a run of today's default profile, and whole."""

from __future__ import annotations

import json

import pytest

from helpers.config import get_profile
from helpers.record import FILL_PROMPTS, NSP_PROMPTS, RECORD, load_record, record_profile


@pytest.fixture(scope="module")
def record():
    return load_record()


def test_record_matches_the_default_profile(record):
    now = record_profile(get_profile("default"))
    stale = {k: (record["profile"].get(k), v) for k, v in now.items() if record["profile"].get(k) != v}
    assert not stale, (
        f"docs/record.json was made with another default profile ({stale}, as recorded vs now): "
        f"run `make record` and commit it"
    )


def test_record_is_whole(record):
    final_step = record["epochs"][-1]["step"]
    assert [row["step"] for row in record["history"]] == list(range(1, final_step + 1))
    assert len(record["epochs"]) == record["profile"]["epochs"]
    for key in ("baseline_unigram", "baseline_neighbours", "baseline_word_overlap"):
        assert 0 < record["baselines"][key] < 1 and record["final"][key] == record["baselines"][key]
    assert [p["answer"] for p in record["prompts"]["fill_mask"]] == [answer for _, answer in FILL_PROMPTS]
    assert [p["label"] for p in record["prompts"]["nsp"]] == [label for _, _, label in NSP_PROMPTS]
    for prompt in record["prompts"]["fill_mask"]:
        assert len(prompt["before"]) == len(prompt["after"]) == 5


def test_the_fill_mask_prompts_are_held_out_sentences_with_one_token_answers():
    """Each prompt is a sentence of a validation paragraph of the default profile (the model never trained on it), and
    its answer is one token of that profile's vocabulary: three among the 100 most frequent training tokens, three
    not."""
    import re

    from helpers.dataset import prepare_data

    cfg = get_profile("default", wandb="disabled")
    data = prepare_data(cfg)
    tokenizer, frequent = data.tokenizer, set(data.training_text(cfg).frequent.tolist())
    spaced = lambda text: re.sub(r"\s+", " ", text)  # noqa: E731 - a paragraph's line breaks read as spaces
    held_out = [spaced(data.paragraphs[i]) for i in data.val_sentences]
    trained_on = [spaced(data.paragraphs[i]) for i in data.train_sentences]
    kinds = []
    for template, answer in FILL_PROMPTS:
        sentence = template.format(mask=answer)
        assert any(sentence in paragraph for paragraph in held_out), f"{sentence!r} is not in a validation paragraph"
        assert not any(sentence in paragraph for paragraph in trained_on), f"{sentence!r} is in a training paragraph"
        assert tokenizer.tokenize(answer) == [answer], f"{answer!r} is not one token: {tokenizer.tokenize(answer)}"
        assert template.count("{mask}") == 1
        kinds.append(tokenizer.convert_tokens_to_ids(answer) in frequent)
    assert kinds == [True] * 3 + [False] * 3


def test_a_changed_default_is_caught(record, tmp_path, monkeypatch):
    changed = {**record, "profile": {**record["profile"], "lr": record["profile"]["lr"] * 2}}
    path = tmp_path / "record.json"
    path.write_text(json.dumps(changed))
    stale = load_record(path)
    assert record_profile(get_profile("default")) != stale["profile"]


def test_a_missing_record_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="make record"):
        load_record(tmp_path / "absent.json")
    assert RECORD.name == "record.json"


def test_the_experiment_tables_are_the_committed_learning_json():
    from benchmarks.learning import BASE, DRAWS, LEVERS, OUT, VARIANTS, lever_table, table
    from helpers.config import ROOT

    report = json.loads(OUT.read_text())
    page = (ROOT / "docs" / "experiments.md").read_text(encoding="utf-8")
    for exploratory in (False, True):  # remade by `python -m benchmarks.learning --plot-only`
        assert table(report, exploratory) in page, (
            "docs/experiments.md's experiment table differs from benchmarks/learning.json"
        )
    assert lever_table(report) in page, "docs/experiments.md's round-5 table differs from benchmarks/learning.json"
    # Round 5's levers were each judged on every seed over DRAWS fresh draws of held-out masks.
    for name in LEVERS:
        runs = [run for run in report["runs"] if run["variant"] == name]
        assert len(runs) == 3 and all(len(run["draws"]) == DRAWS for run in runs), name
    assert report["base_profile"] == BASE, "benchmarks/learning.json was made from another base profile"
    for name, (_, overrides, seeds) in VARIANTS.items():  # every variant measured, with its seeds and its overrides
        runs = [run for run in report["runs"] if run["variant"] == name]
        assert sorted(run["seed"] for run in runs) == sorted(seeds), name
        assert all(run["overrides"] == overrides and run["code_version"] and run["date"] for run in runs), name


def test_a_new_default_profile_leaves_the_experiments_as_they_were(monkeypatch):
    """The experiments are history: changing helpers/config.py's default changes no variant's profile, so the tables
    and the committed learning.json stay true without `make learning` (docs/engineering.md, the artefacts)."""
    from benchmarks import learning
    from helpers import config

    before = {name: learning.variant_config(name, 42) for name in learning.VARIANTS}
    monkeypatch.setitem(config.PROFILES, "default", dict(config.PROFILES["default"], lr=3e-3, epochs=5))
    assert config.get_profile("default").lr == 3e-3  # the change took
    assert {name: learning.variant_config(name, 42) for name in learning.VARIANTS} == before


def test_the_record_is_honest_and_beats_neighbour_counting_in_time(record):
    # Made on a clean commit (make record refuses uncommitted changes), so its code version is the code that made it.
    assert record["code_version"] and not record["code_version"].endswith("+changes"), record["code_version"]
    # Time to quality: held-out MLM at [MASK] passes neighbour counting within 2 minutes of training, and the figure
    # kept in the record is the one its own curve gives.
    final, epochs = record["final"], record["epochs"]
    passed = next(row["seconds"] for row in epochs if row["mlm_accuracy_at_mask"] > final["baseline_neighbours"])
    assert final["seconds_to_neighbours"] == passed and passed <= 120, passed
    assert final["mlm_accuracy_at_mask"] > final["baseline_neighbours"]


def test_make_record_refuses_uncommitted_changes(monkeypatch, capsys):
    import helpers.record as rec

    monkeypatch.setattr(rec, "code_version", lambda: "abc1234+changes")
    monkeypatch.setattr(rec, "make_record", lambda *a, **k: pytest.fail("trained despite uncommitted changes"))
    assert rec.main() == 2
    assert "uncommitted changes" in capsys.readouterr().err


def test_code_version_ignores_only_the_files_a_run_writes(monkeypatch):
    import subprocess
    import types

    import helpers.provenance as rec

    answers = {"rev-parse": "abc1234", "status": " M benchmarks/learning.json\n M docs/time_to_quality.png"}
    monkeypatch.setattr(subprocess, "run", lambda args, **_: types.SimpleNamespace(stdout=answers[args[1]]))
    outputs = ("benchmarks/learning.json", "docs/time_to_quality.png")
    assert rec.code_version(outputs) == "abc1234"  # the runs' own results: still the commit's code
    assert rec.code_version() == "abc1234+changes"  # the record allows no change at all
    answers["status"] += "\n M helpers/train.py"
    assert rec.code_version(outputs) == "abc1234+changes"  # a change to the code itself always shows


def test_every_figure_of_the_readmes_headline_is_the_records(record):
    """The README's list under "from docs/record.json" quotes the record: each figure is one of its values."""
    import re

    from helpers.config import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- from docs/record.json -->", 1)[1].split("\n\n", 1)[0]
    values = {f"{v:.3f}" for v in record["final"].values() if isinstance(v, float)} | {"0.500", "0.15"}
    quoted = re.findall(r"\b0\.\d{3}\b", block)
    assert len(quoted) >= 20, quoted  # the reading really finds the figures
    assert [figure for figure in quoted if figure not in values] == []
    final = record["final"]
    assert f"{final['mlm_accuracy_at_mask']:.3f} for the model alone, {final['with_memory_mlm_accuracy_at_mask']:.3f}" \
        in block and f"scores **{final['baseline_context_counting']:.3f}**" in block  # fmt: skip
    assert f"after {final['seconds_to_neighbours']:.0f} s" in block
