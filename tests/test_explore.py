"""The notebooks' explorers: each static function on fixed input, and each widget re-running it when a control moves."""

from __future__ import annotations

import pytest
import torch
from matplotlib import pyplot as plt

from helpers.config import PROFILES, ROOT, get_profile
from helpers.explore import (
    KEPT,
    MASKED,
    RANDOM,
    REFERENCE_RULE,
    SPECIAL,
    UNCHANGED,
    attention_explorer,
    attention_figure,
    describe_rule,
    fill_mask_explorer,
    fill_mask_frame,
    mask_sentence,
    masking_explorer,
    masking_rules,
    pair_tokens,
    pair_tokens_explorer,
)
from helpers.inference import fill_mask_top_k, pair_attentions
from helpers.masking import IGNORE_INDEX, MaskingRule, mask_tokens, masking_rule
from helpers.serving import Predictor
from tests.app_fixtures import tiny_checkpoint  # noqa: F401 - a fixture
from tests.conftest import notebook_client

widgets = pytest.importorskip("ipywidgets", reason="the notebooks extra (ipywidgets) is not installed")

A = "Look within; within is the fountain of good."
B = "And it will ever bubble up, if thou wilt ever dig."
LONG = (
    "Begin the morning by saying to thyself, I shall meet with the busy-body, the ungrateful, arrogant, deceitful, "
    "envious, unsocial; all these things happen to them by reason of their ignorance of what is good and evil."
)


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):  # noqa: F811
    return Predictor.from_checkpoint(tiny_checkpoint)


def controls(widget) -> dict:
    """The explorer's controls by their labels."""
    assert isinstance(widget, widgets.interactive)
    return {child.description: child for child in widget.children if isinstance(child, widgets.ValueWidget)}


# Notebook 02: a pair's tokens.


def test_pair_tokens_rebuild_the_tokenizers_own_encoding(scratch_tokenizer):
    table = pair_tokens(scratch_tokenizer, A, B)
    encoded = scratch_tokenizer(A, B, return_token_type_ids=True, return_special_tokens_mask=True)
    for field in ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask"):
        assert table[field].tolist() == encoded[field], field
    assert table["token"].tolist() == scratch_tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    first_sep = table["token"].tolist().index(scratch_tokenizer.sep_token)
    assert set(table["token_type_ids"][: first_sep + 1]) == {0} and set(table["token_type_ids"][first_sep + 1 :]) == {1}


def test_pair_tokens_pad_and_truncate_as_training_does(scratch_tokenizer):
    length = len(pair_tokens(scratch_tokenizer, A, B))
    padded = pair_tokens(scratch_tokenizer, A, B, max_length=length + 5, pad=True)
    assert len(padded) == length + 5
    assert padded["token"].tolist()[-5:] == [scratch_tokenizer.pad_token] * 5
    assert padded["attention_mask"].tolist() == [1] * length + [0] * 5
    cut = pair_tokens(scratch_tokenizer, A, B, max_length=12)
    assert len(cut) == 12 and cut["token"].tolist().count(scratch_tokenizer.sep_token) == 2
    with pytest.raises(ValueError, match="Sentence B is empty"):
        pair_tokens(scratch_tokenizer, A, "  ")
    with pytest.raises(ValueError, match="--max-length=4 is outside"):
        pair_tokens(scratch_tokenizer, A, B, max_length=4)


def test_pair_tokens_explorer_reruns_when_a_control_moves(scratch_tokenizer, capsys):
    explorer = pair_tokens_explorer(scratch_tokenizer, A, B, max_length=40, pad=True)
    found = controls(explorer)
    assert {"Sentence A", "Sentence B", "max_length", "pad to max_length"} <= set(found)
    assert len(explorer.result) == 40
    found["max_length"].value = 48
    assert len(explorer.result) == 48 and explorer.result["attention_mask"].tolist()[-1] == 0
    found["pad to max_length"].value = False
    assert explorer.result.equals(pair_tokens(scratch_tokenizer, A, B))
    found["Sentence B"].value = "Dig."
    assert explorer.result.equals(pair_tokens(scratch_tokenizer, A, "Dig."))
    found["Sentence A"].value = ""
    assert explorer.result == "Sentence A is empty: type some text in it."
    assert capsys.readouterr().out.strip().splitlines()[-1] == explorer.result  # printed in the output area


# Notebook 03: one sentence masked.


def test_the_rules_are_read_from_the_profiles(monkeypatch):
    rules = masking_rules()
    assert rules["default profile"][1:] == ("bert", masking_rule(get_profile("default")))
    assert rules["validation"][1:] == ("bert", masking_rule(get_profile("default"), validation=True))
    assert rules["bert-base profile"][1:] == ("bert", masking_rule(get_profile("bert-base")))
    assert rules["reference"][1:] == ("reference", REFERENCE_RULE)
    # A changed profile reaches the explorer's rule, its label and what masks the sentence: nothing is copied.
    monkeypatch.setitem(
        PROFILES,
        "default",
        {**PROFILES["default"], "mlm_probability": 0.3, "mask_replace_prob": 0.5, "random_replace_prob": 0.25},
    )
    label, _, rule = masking_rules()["default profile"]
    assert rule == MaskingRule(0.3, 0.5, 0.25)
    assert label == "the default profile, training: 30% selected; 50% [MASK], 25% a random token, 25% unchanged"


def test_a_rule_in_words_says_its_own_numbers():
    assert describe_rule(MaskingRule(0.4, 1.0, 0.0)) == "40% selected; each one a [MASK]"
    assert describe_rule(MaskingRule(0.15, 0.8, 0.1)) == "15% selected; 80% [MASK], 10% a random token, 10% unchanged"


def test_masking_at_rate_zero_changes_nothing(scratch_tokenizer):
    ids = scratch_tokenizer(LONG)["input_ids"]
    for rule in masking_rules():
        table = mask_sentence(scratch_tokenizer, LONG, rule, mlm_probability=0.0, seed=3)
        assert table["input_ids after masking"].tolist() == ids, rule
        assert set(table["what happened"]) == {KEPT, SPECIAL}, rule
        # The reference scores every position (its labels are the ids); BERT's rules score none here.
        assert table["labels"].tolist() == (ids if rule == "reference" else [IGNORE_INDEX] * len(ids)), rule


def test_masking_at_rate_one_under_all_mask_masks_every_non_special_token(scratch_tokenizer):
    ids = scratch_tokenizer(LONG)["input_ids"]
    special = [i in scratch_tokenizer.all_special_ids for i in ids]
    table = mask_sentence(
        scratch_tokenizer, LONG, MaskingRule(1.0, mask_replace_prob=1.0, random_replace_prob=0.0), seed=3
    )
    for row, original, is_special in zip(table.itertuples(index=False), ids, special):
        if is_special:
            assert (row[1], row.labels, row[3]) == (original, IGNORE_INDEX, SPECIAL)
        else:
            assert (row[1], row.labels, row[3]) == (scratch_tokenizer.mask_token_id, original, MASKED)


def test_a_named_rule_masks_at_its_own_rate_unless_a_rate_is_given(scratch_tokenizer):
    ids = torch.tensor([scratch_tokenizer(LONG)["input_ids"]])
    for name, (_, mode, rule) in masking_rules().items():
        for rate, applied in ((None, rule), (0.7, MaskingRule(0.7, rule.mask_replace_prob, rule.random_replace_prob))):
            table = mask_sentence(scratch_tokenizer, LONG, name, mlm_probability=rate, seed=11)
            masked, labels = mask_tokens(
                ids, scratch_tokenizer, applied, mode=mode, generator=torch.Generator().manual_seed(11)
            )
            assert table["input_ids after masking"].tolist() == masked[0].tolist(), (name, rate)
            assert table["labels"].tolist() == labels[0].tolist(), (name, rate)
    # A MaskingRule itself (masking_rule(cfg) in the notebook) is applied as the training batches apply it.
    by_rule = mask_sentence(scratch_tokenizer, LONG, masking_rule(get_profile("default")), seed=11)
    assert by_rule.equals(mask_sentence(scratch_tokenizer, LONG, "default profile", seed=11))


def test_masking_rows_are_mask_tokens_own_result_read_out(scratch_tokenizer):
    ids = torch.tensor([scratch_tokenizer(LONG)["input_ids"]])
    table = mask_sentence(scratch_tokenizer, LONG, "bert-base profile", mlm_probability=1.0, seed=5)
    masked, labels = mask_tokens(
        ids,
        scratch_tokenizer,
        MaskingRule(1.0, mask_replace_prob=0.8, random_replace_prob=0.1),
        mode="bert",
        generator=torch.Generator().manual_seed(5),
    )
    assert (
        table["input_ids after masking"].tolist() == masked[0].tolist()
        and table["labels"].tolist() == labels[0].tolist()
    )
    assert table["model reads"].tolist() == scratch_tokenizer.convert_ids_to_tokens(masked[0])
    outcomes = table["what happened"]
    assert {MASKED, RANDOM, UNCHANGED} <= set(outcomes)  # all three fates of a selected token, in this draw
    rows = table.assign(original=ids[0].tolist())
    assert (rows[outcomes == MASKED]["input_ids after masking"] == scratch_tokenizer.mask_token_id).all()
    assert (rows[outcomes == RANDOM]["input_ids after masking"] != rows[outcomes == RANDOM]["original"]).all()
    assert (rows[outcomes == UNCHANGED]["input_ids after masking"] == rows[outcomes == UNCHANGED]["labels"]).all()


def test_masking_bad_input_is_one_sentence(scratch_tokenizer):
    with pytest.raises(
        ValueError,
        match=r"rule='bert' is not one of the rules: use one of 'default profile', "
        r"'validation', 'bert-base profile', 'reference'\.$",
    ):
        mask_sentence(scratch_tokenizer, A, "bert")
    with pytest.raises(ValueError, match="mlm_probability=1.5 is not a rate"):
        mask_sentence(scratch_tokenizer, A, mlm_probability=1.5)
    with pytest.raises(ValueError, match="The sentence is empty"):
        mask_sentence(scratch_tokenizer, "")
    with pytest.raises(ValueError, match=r"rule='15%' is not one of the rules"):
        masking_explorer(scratch_tokenizer, A, rule="15%")


def test_masking_explorer_reruns_when_a_control_moves(scratch_tokenizer):
    explorer = masking_explorer(scratch_tokenizer, LONG)
    found = controls(explorer)
    default_rate = masking_rules()["default profile"][2].mlm_probability
    assert found["masking rate"].value == default_rate  # the default's own rate, read from the profile
    assert explorer.result.equals(mask_sentence(scratch_tokenizer, LONG))  # the defaults: the default profile, seed 0
    found["rule"].value = "bert-base profile"  # the slider follows the rule to its own rate
    assert found["masking rate"].value == masking_rules()["bert-base profile"][2].mlm_probability
    assert explorer.result.equals(mask_sentence(scratch_tokenizer, LONG, "bert-base profile"))
    found["rule"].value = "validation"
    found["masking rate"].value = 1.0  # then any rate by hand
    assert set(explorer.result["what happened"]) == {MASKED, SPECIAL}
    found["rule"].value = "reference"
    found["masking rate"].value = 0.5
    found["seed"].value = 7
    assert explorer.kwargs == {"sentence": LONG, "rule": "reference", "mlm_probability": 0.5, "seed": 7}
    assert explorer.result.equals(mask_sentence(scratch_tokenizer, LONG, "reference", 0.5, 7))
    found["Sentence"].value = " "
    assert explorer.result == "The sentence is empty: type some text in it."


# Notebook 05: a trained model's fill-mask and attention.


def test_fill_mask_rows_agree_with_fill_mask_top_k(predictor):
    model, tokenizer = predictor.model, predictor.tokenizer
    text = "The [MASK] of a man is the work of his [MASK]."
    table = fill_mask_frame(model, tokenizer, text, k=3)
    expected = fill_mask_top_k(model, tokenizer, [text], k=3)[0]  # per mask: [(token, probability)] * 3
    assert table[["mask", "rank"]].values.tolist() == [[m, r] for m in (1, 2) for r in (1, 2, 3)]
    assert list(zip(table["token"], table["probability"])) == [guess for options in expected for guess in options]


@pytest.mark.parametrize(
    "text, k, max_length, message",
    [
        ("A sentence without a mask.", 5, None, r"The text has no \[MASK\]: put \[MASK\] where a word is missing"),
        ("   ", 5, None, "The text is empty"),
        (
            "one two three four five six seven eight nine ten [MASK]",
            5,
            8,
            r"The text's \[MASK\] comes after its first 8 tokens",
        ),
        ("The [MASK] is short.", 0, None, "k=0 asks for no guesses"),
    ],
)
def test_fill_mask_bad_input_is_one_sentence(predictor, text, k, max_length, message):
    with pytest.raises(ValueError, match=message):
        fill_mask_frame(predictor.model, predictor.tokenizer, text, k=k, max_length=max_length)


def test_fill_mask_explorer_reruns_when_a_control_moves(predictor, capsys):
    model, tokenizer = predictor.model, predictor.tokenizer
    explorer = fill_mask_explorer(model, tokenizer, "The [MASK] is short.", k=5)
    found = controls(explorer)
    assert len(explorer.result) == 5
    found["top-k"].value = 2
    found["Text"].value = "Nothing happens to any man which he is not formed by [MASK] to [MASK]."
    assert explorer.result.equals(fill_mask_frame(model, tokenizer, found["Text"].value, k=2))
    found["Text"].value = "No mask here."
    assert explorer.result.startswith("The text has no [MASK]")
    assert "Traceback" not in capsys.readouterr().out


def test_attention_figure_draws_the_chosen_heads_weights(predictor):
    model, tokenizer = predictor.model, predictor.tokenizer
    figure = attention_figure(model, tokenizer, A, B, layer=0, head=1)
    _, attentions = pair_attentions(model, tokenizer, A, B)  # (layers, heads, seq_len, seq_len)
    (panel,) = figure.axes
    assert panel.get_title().startswith("head 1")
    assert torch.allclose(torch.as_tensor(panel.images[0].get_array()), attentions[0, 1])
    plt.close(figure)
    with pytest.raises(ValueError, match="layer=1, head=0 does not exist: this model has layers 0 to 0 and heads 0 "):
        attention_figure(model, tokenizer, A, B, layer=1)
    with pytest.raises(ValueError, match="head=2 does not exist"):
        attention_figure(model, tokenizer, A, B, head=2)
    with pytest.raises(ValueError, match="Sentence B is empty"):
        attention_figure(model, tokenizer, A, "")


def test_attention_explorer_reruns_when_a_control_moves(predictor):
    model, tokenizer = predictor.model, predictor.tokenizer
    explorer = attention_explorer(model, tokenizer, A, B)
    found = controls(explorer)
    assert (found["layer"].max, found["head"].max) == (
        model.config.num_hidden_layers - 1,
        model.config.num_attention_heads - 1,
    )
    assert explorer.result.axes[0].get_title().startswith("head 0")
    found["head"].value = 1
    assert explorer.result.axes[0].get_title().startswith("head 1")
    assert explorer.result.number not in plt.get_fignums()  # shown, then closed: moving a slider keeps no figure open
    found["Sentence A"].value = ""
    assert explorer.result == "Sentence A is empty: type some text in it."


# In a real kernel: what each explorer's output area holds (ipywidgets' Output captures only there).
KERNEL_CELLS = [
    "%matplotlib inline\nfrom helpers.explore import attention_explorer, fill_mask_explorer, masking_explorer\n"
    "from helpers.serving import Predictor\npredictor = Predictor.from_checkpoint({checkpoint!r})",
    "attention_explorer(predictor.model, predictor.tokenizer)",
    "fill_mask_explorer(predictor.model, predictor.tokenizer, 'A text without a mask.')",
    "masking_explorer(predictor.tokenizer)",
    "import matplotlib.pyplot as plt\nprint('open figures:', plt.get_fignums())",
]


@pytest.mark.slow
def test_explorers_show_their_output_inside_a_jupyter_kernel(tiny_checkpoint):  # noqa: F811
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(cell.format(checkpoint=str(tiny_checkpoint))) for cell in KERNEL_CELLS]
    )
    notebook_client(
        notebook,
        timeout=300,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(ROOT)}},
    ).execute()
    for cell in notebook.cells[1:4]:  # each explorer is a widget view
        assert any("application/vnd.jupyter.widget-view+json" in out.get("data", {}) for out in cell.outputs)
    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    shown = [
        [(out["output_type"], sorted(out.get("data", {})) or out.get("text")) for out in model["state"]["outputs"]]
        for model in state.values()
        if model["model_name"] == "OutputModel"
    ]
    message = "The text has no [MASK]: put [MASK] where a word is missing, as in 'The [MASK] is short.'\n"
    # The figure once (not again by pyplot), the bad input's sentence alone, the table as HTML.
    assert shown == [
        [("display_data", ["image/png", "text/plain"])],
        [("stream", message)],
        [("display_data", ["text/html", "text/plain"])],
    ]
    assert notebook.cells[4].outputs[0]["text"] == "open figures: []\n"


def test_the_first_view_is_what_the_explorer_showed_first(scratch_tokenizer):
    from helpers.explore import first_view

    explorer = pair_tokens_explorer(scratch_tokenizer, A, B, max_length=40, pad=True)
    view = first_view(explorer)._repr_mimebundle_()
    # The stored table is the explorer's first result rendered, and that result is the static function's.
    assert view["text/html"] == pair_tokens(scratch_tokenizer, A, B, max_length=40, pad=True).to_html()
    controls(explorer)["max_length"].value = 48  # moving a control changes the explorer, not a view taken before
    assert "<table" in view["text/html"] and len(explorer.result) == 48


def test_the_first_view_of_a_figure_is_a_png_and_of_bad_input_its_sentence(scratch_tokenizer):
    from matplotlib.figure import Figure

    from helpers.explore import FirstView, first_view

    figure = Figure()
    figure.add_subplot().plot([0, 1])
    assert FirstView(figure)._repr_mimebundle_()["image/png"].startswith(b"\x89PNG")
    explorer = pair_tokens_explorer(scratch_tokenizer, "", B)
    assert first_view(explorer)._repr_mimebundle_() == {"text/plain": "Sentence A is empty: type some text in it."}
    with pytest.raises(ValueError, match="a table, a figure or a sentence"):
        FirstView(42)


# Notebook 05: the memory beside the model.


def test_memory_frame_gives_the_predictors_three_lists(predictor):
    from helpers.explore import memory_frame

    assert predictor.memory is not None  # every checkpoint carries its memory
    text = "The [MASK] of a man is the work of his [MASK]."
    table = memory_frame(predictor.model, predictor.tokenizer, predictor.memory, text, predictor.memory_strength, k=3)
    result = predictor.fill_mask_result(text, top_k=3)
    assert table[["mask", "rank"]].values.tolist() == [[m, r] for m in (1, 2) for r in (1, 2, 3)]
    for column, lists in (
        ("model", result.predictions),
        ("memory", result.memory_predictions),
        ("mix", result.mixed_predictions),
    ):
        expected = [guess for options in lists for guess in options]
        assert table[column].tolist() == [token for token, _ in expected], column
        assert table[f"P({column})"].tolist() == pytest.approx([p for _, p in expected], abs=1e-6), column
    assert ((table["model's share"] > 0) & (table["model's share"] < 1)).all()


def test_memory_frame_strength_moves_the_mix_between_the_table_and_the_model(predictor):
    from helpers.explore import memory_frame

    model, tokenizer, memory = predictor.model, predictor.tokenizer, predictor.memory
    text = "Look [MASK]; within is the fountain of good."
    table_alone = memory_frame(model, tokenizer, memory, text, strength=0.0)
    assert table_alone["mix"].tolist() == table_alone["memory"].tolist()
    assert (table_alone["model's share"] == 0).all()
    model_mostly = memory_frame(model, tokenizer, memory, text, strength=1e6)
    assert model_mostly["mix"].tolist() == model_mostly["model"].tolist()
    assert (model_mostly["model's share"] > 0.999).all()


@pytest.mark.parametrize(
    "text, strength, k, message",
    [
        ("A sentence without a mask.", 0.5, 5, r"The text has no \[MASK\]"),
        ("  ", 0.5, 5, "The text is empty"),
        ("The [MASK] is short.", -1.0, 5, "strength=-1.0 is not a weight"),
        ("The [MASK] is short.", float("nan"), 5, "strength=nan is not a weight"),
        ("The [MASK] is short.", 0.5, 0, "k=0 asks for no guesses"),
    ],
)
def test_memory_frame_bad_input_is_one_sentence(predictor, text, strength, k, message):
    from helpers.explore import memory_frame

    with pytest.raises(ValueError, match=message):
        memory_frame(predictor.model, predictor.tokenizer, predictor.memory, text, strength, k)


def test_memory_frame_without_a_memory_says_so(predictor):
    from helpers.explore import memory_frame

    with pytest.raises(ValueError, match="This checkpoint has no memory"):
        memory_frame(predictor.model, predictor.tokenizer, None, "The [MASK] is short.")
    long = " ".join(["word"] * 20) + " [MASK]"
    with pytest.raises(ValueError, match=r"comes after its first 8 tokens"):
        memory_frame(predictor.model, predictor.tokenizer, predictor.memory, long, max_length=8)


def test_memory_explorer_reruns_when_a_control_moves(predictor, capsys):
    from helpers.explore import first_view, memory_explorer, memory_frame

    model, tokenizer, memory = predictor.model, predictor.tokenizer, predictor.memory
    explorer = memory_explorer(model, tokenizer, memory, "The [MASK] is short.", strength=0.5, k=5)
    found = controls(explorer)
    # The slider keeps the value it was given, so the first view is the static function's at that strength.
    assert found["model's strength"].value == 0.5
    assert explorer.result.equals(memory_frame(model, tokenizer, memory, "The [MASK] is short.", 0.5, 5))
    assert first_view(explorer)._repr_mimebundle_()["text/html"] == explorer.result.to_html()
    found["model's strength"].value = 100.0
    found["top-k"].value = 2
    assert explorer.result.equals(memory_frame(model, tokenizer, memory, "The [MASK] is short.", 100.0, 2))
    found["Text"].value = "No mask here."
    assert explorer.result.startswith("The text has no [MASK]")
    assert "Traceback" not in capsys.readouterr().out


# Notebook 04: the fill-mask answers of every epoch.

ASKED = [
    {"epoch": e, "prompt": p, "word": w, "rank": r, "probability": q, "top": g[0][0], "guesses": g}
    for e, p, w, r, q, g in [
        (1, "Men exist for the sake [MASK] one another.", "of", 3, 0.05, [("the", 0.2), (",", 0.1), ("of", 0.05)]),
        (1, "It is thy [MASK] then.", "duty", 40, 0.001, [(",", 0.3), ("the", 0.2), ("and", 0.1)]),
        (2, "Men exist for the sake [MASK] one another.", "of", 1, 0.7, [("of", 0.7), ("to", 0.1), ("for", 0.05)]),
        (2, "It is thy [MASK] then.", "duty", 2, 0.2, [("life", 0.3), ("duty", 0.2), ("mind", 0.1)]),
    ]
]


def test_epoch_answers_read_the_chosen_epochs_rows():
    import pandas as pd

    from helpers.explore import EPOCH_ANSWER_COLUMNS, epoch_answers

    table = epoch_answers(ASKED, epoch=2, k=2)
    assert list(table.columns) == EPOCH_ANSWER_COLUMNS and table.index.name == "after epoch 2"
    assert table["the book's word"].tolist() == ["of", "duty"] and table["its rank"].tolist() == [1, 2]
    assert table["its probability"].tolist() == [0.7, 0.2]
    assert table["the model's top guesses"].tolist() == ["of 0.70 · to 0.10", "life 0.30 · duty 0.20"]
    assert epoch_answers(pd.DataFrame(ASKED), epoch=1).equals(epoch_answers(ASKED, epoch=1))


@pytest.mark.parametrize(
    "asked, epoch, k, message",
    [
        (ASKED, 3, 5, "No answers were recorded after epoch 3: choose one from 1 to 2."),
        (ASKED, 1, 0, "k=0 asks for no guesses"),
        ([], 1, 5, "No answers are recorded yet"),
        ([{"epoch": 1, "prompt": "x"}], 1, 5, "The recorded answers lack guesses, probability, rank, word"),
    ],
)
def test_epoch_answers_bad_input_is_one_sentence(asked, epoch, k, message):
    import re

    from helpers.explore import epoch_answers

    with pytest.raises(ValueError, match=re.escape(message)):
        epoch_answers(asked, epoch, k)


def test_epoch_answers_explorer_starts_at_the_last_epoch_and_follows_the_slider():
    from helpers.explore import epoch_answers, epoch_answers_explorer, first_view

    explorer = epoch_answers_explorer(ASKED, k=3)
    assert explorer.result.equals(epoch_answers(ASKED, 2, k=3))  # the first view: the last epoch
    view = first_view(explorer)._repr_mimebundle_()
    assert view["text/html"] == epoch_answers(ASKED, 2, k=3).to_html()
    slider = controls(explorer)["epoch"]
    assert (slider.min, slider.max, slider.value) == (1, 2, 2)
    slider.value = 1
    assert explorer.result.equals(epoch_answers(ASKED, 1, k=3))
    assert epoch_answers_explorer(ASKED, epoch=1).result.equals(epoch_answers(ASKED, 1))
    with pytest.raises(ValueError, match="choose one from 1 to 2"):
        epoch_answers_explorer(ASKED, epoch=5)


def test_held_first_call_holds_only_the_first_call_and_records_each_calls_inputs():
    import inspect
    import threading

    from helpers.explore import held_first_call, wait_until

    def double(texts: list[str], ks: list[int]) -> list[list]:
        return [[t * 2 for t in texts]]

    held = held_first_call(double)
    assert list(inspect.signature(held).parameters) == ["texts", "ks"]  # what Gradio reads
    answers = []
    worker = threading.Thread(target=lambda: answers.append(held(["a"], [1])))
    worker.start()
    worker.join(0.2)
    assert worker.is_alive() and held.calls == []  # held at the gate
    held.release()
    wait_until(lambda: not worker.is_alive(), seconds=5)
    assert answers == [[["aa"]]] and held(["b", "c"], [1, 1]) == [["bb", "cc"]]  # later calls pass at once
    assert held.calls == [["a"], ["b", "c"]]


def test_wait_until_returns_when_ready_and_times_out_with_a_sentence():
    from helpers.explore import wait_until

    polls = iter([False, False, True])
    wait_until(lambda: next(polls))
    with pytest.raises(TimeoutError, match="not ready after 0.05 s"):
        wait_until(lambda: False, seconds=0.05)


def test_same_rows_compares_probabilities_to_a_tolerance_and_everything_else_exactly():
    from helpers.explore import same_rows

    rows = [[1, 1, "duty", 0.2973], [1, 2, "mind", 0.0806]]
    assert same_rows(rows, [[1, 1, "duty", 0.29735], [1, 2, "mind", 0.0806]])
    assert not same_rows(rows, [[1, 1, "duty", 0.2983], [1, 2, "mind", 0.0806]])
    assert not same_rows(rows, [[1, 1, "life", 0.2973], [1, 2, "mind", 0.0806]])
    assert not same_rows(rows, rows[:1]) and not same_rows(rows, [rows[0], rows[1][:3]])


# Notebook 05: the readings behind its tables.


def test_attention_places_split_each_words_weight_into_six_places_that_sum_to_one():
    from helpers.explore import ATTENTION_PLACES, attention_places

    tokens = ["[CLS]", "a", "b", "[SEP]", "c", "d", "[SEP]"]
    n = len(tokens)
    spread = torch.randn(2, 3, n, n).softmax(-1)  # (layers, heads, seq, seq)
    table = attention_places(tokens, spread)
    assert list(table.columns) == list(ATTENTION_PLACES) and len(table) == 6
    assert table.sum(axis=1).to_numpy() == pytest.approx([1.0] * 6, abs=1e-6)
    diagonal = attention_places(tokens, torch.eye(n).expand(1, 1, n, n))
    assert diagonal.loc[(0, 0), "itself"] == 1
    # Each row on the token to its left: a and c read a special token, b and d their left word.
    left = attention_places(tokens, torch.eye(n).roll(-1, dims=1).expand(1, 1, n, n))
    assert left.loc[(0, 0), "left"] == 0.5 and left.loc[(0, 0), "[CLS]/[SEP]"] == 0.5
    across = torch.zeros(1, 1, n, n)
    across[..., [1, 2], 5] = 1  # A's words read d; B's words read a
    across[..., [4, 5], 1] = 1
    assert attention_places(tokens, across).loc[(0, 0), "other sentence"] == 1
    own = torch.zeros(1, 1, n, n)
    own[..., [1, 2, 4, 5], [2, 2, 5, 4]] = 1  # a reads b (right), b itself, c reads d (right), d reads c (left)
    assert attention_places(tokens, own).loc[(0, 0)].to_dict() == pytest.approx(
        {
            "left": 0.25,
            "itself": 0.25,
            "right": 0.5,
            "own sentence, other words": 0,
            "[CLS]/[SEP]": 0,
            "other sentence": 0,
        }  # fmt: skip
    )


def test_nsp_exposure_groups_count_the_epochs_after_nsp_joined():
    from collections import Counter

    from helpers.explore import judged_follows, nsp_exposure_groups
    from helpers.pairs import IS_NEXT, IS_RANDOM, make_pairs

    sentences = {p: [f"s{p}{i}." for i in range(4)] for p in range(6)}
    epochs = [make_pairs(sentences, 2, seed=e) for e in range(6)]
    val = make_pairs({9: ["v1.", "v2."], 10: ["w1.", "w2."]}, exhaustive=True, seed=0)
    groups = nsp_exposure_groups(epochs, 2, sentences, val, seed=7)
    shown = Counter(p[:2] for pairs in epochs[2:] for p in pairs if p.next_sentence_label == IS_NEXT)
    training = [g for label, g in groups.items() if label.startswith("training, true")]
    assert len(training) == 5 and sum(map(len, training)) == 6 * 3  # every position of every paragraph, once
    assert all(shown[p[:2]] == 0 for p in groups["training, true, shown 0 times"])
    assert all(shown[p[:2]] >= 11 for p in groups["training, true, shown 11+ times"])
    assert groups["held-out, true"] == [p for p in val if p.next_sentence_label == IS_NEXT]
    assert groups["held-out, random"] == [p for p in val if p.next_sentence_label == IS_RANDOM]
    built = {p[:2] for pairs in epochs for p in pairs}
    assert all(p[:2] not in built and p.next_sentence_label == IS_RANDOM for p in groups[
        "training sentences never paired, random"])  # fmt: skip
    calls = []

    def judge(pairs):  # says "follows" for held-out pairs only, and records what it was asked
        calls.append(pairs)
        return [a.startswith(("v", "w")) for a, _ in pairs]

    table = judged_follows(groups, judge, chunk=5)
    asked = [pair for call in calls for pair in call]
    assert max(map(len, calls)) == 5 and len(asked) == len(set(asked))  # in chunks, each distinct pair once
    assert set(asked) == {p[:2] for g in groups.values() for p in g}
    assert table.loc["held-out, true", "judged 'B follows A'"] == 1
    assert table.loc["training, true, shown 0 times", "judged 'B follows A'"] == 0
    assert table["pairs"].to_dict() == {label: len(g) for label, g in groups.items()}


def test_times_hidden_is_the_masking_rate_times_every_appearance(scratch_tokenizer):
    from helpers.explore import times_hidden
    from helpers.pairs import Pair

    pair = Pair("Look within.", "Look within.", 0, 0, 0)
    hidden = times_hidden([[pair], [pair, pair]], scratch_tokenizer, 0.4)
    look = scratch_tokenizer.convert_tokens_to_ids("look")
    assert hidden[look] == pytest.approx(0.4 * 6)  # twice a pair, three pairs


def test_scored_masks_score_the_model_the_table_and_the_mix_at_each_mask(predictor):
    from collections import Counter

    from helpers.explore import scored_masks
    from helpers.inference import mask_logits

    tokenizer = predictor.tokenizer
    batch = dict(tokenizer([A, B], padding=True, return_tensors="pt"))
    labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
    for row, at in ((0, 2), (1, 3), (1, 5)):
        labels[row, at] = batch["input_ids"][row, at]
        batch["input_ids"][row, at] = tokenizer.mask_token_id
    batch["labels"] = labels
    counts = Counter({int(t): 7 for t in labels[labels != IGNORE_INDEX]})
    table = scored_masks(predictor.model, tokenizer, predictor.memory, 0.5, [batch], counts, Counter())
    assert len(table) == 3 and set(table["in the training text"]) == {7}
    with torch.no_grad():
        scores, at = mask_logits(
            predictor.model, {k: batch[k] for k in ("input_ids", "attention_mask")}, tokenizer.mask_token_id
        )
    truth = labels[at]
    assert table["model"].tolist() == (scores.argmax(-1) == truth).float().tolist()
    memory = predictor.memory.probabilities(batch["input_ids"], at)
    assert table["context counting"].tolist() == (memory.probs.argmax(-1) == truth).float().tolist()
    assert table["widest context seen"].tolist() == memory.widest.tolist()
    batch["labels"] = torch.full_like(labels, IGNORE_INDEX)
    with pytest.raises(ValueError, match="labelled"):
        scored_masks(predictor.model, tokenizer, predictor.memory, 0.5, [batch], counts, Counter())


def _learning():
    import json

    from helpers.config import ROOT

    return json.loads((ROOT / "benchmarks" / "learning.json").read_text())


def test_departures_frame_gives_every_departure_with_its_runs():
    from helpers.config import get_profile
    from helpers.explore import DEPARTURES, departures_frame

    cfg = get_profile("default")
    frame = departures_frame(_learning(), cfg, measured={"vocabulary": "measured here"})
    assert list(frame.columns) == ["BERT-base", "ours", "evidence", "reason"] and len(frame) == len(DEPARTURES)
    assert frame.loc["vocabulary", "evidence"] == "measured here" and frame.loc["tokens per pair", "evidence"] == "–"
    assert frame.loc["tokens selected for MLM", "ours"] == f"{cfg.mlm_probability:.0%}"
    row = frame.loc["what a selected token becomes", "evidence"]
    assert row.startswith("80/10/10: 0.224 → 0.222; rare 0.044 → 0.049, 3 seeds, commit ")
    assert "of 2026-12-06" in row and "+changes" not in row and "round" not in row
    assert all(ours > other for other, ours in frame.attrs["decided"].values())  # ours wins each deciding figure


def test_departures_frame_refuses_runs_that_differ_in_more_than_the_row():
    from helpers.config import get_profile
    from helpers.explore import departures_frame

    learning = _learning()
    for run in learning["runs"]:
        if run["variant"] == "nsp_from_start":
            run["overrides"] = {**run["overrides"], "lr": 0.5}
    with pytest.raises(ValueError, match="The runs behind 'when NSP joins the loss' differ in"):
        departures_frame(learning, get_profile("default"))


def test_accuracy_by_kind_reads_the_models_and_each_baselines_three_accuracies():
    from helpers.baselines import ACCURACIES, BASELINES, WITH_MEMORY, baseline_key
    from helpers.explore import accuracy_by_kind

    mlm = [a for a in ACCURACIES if a.task == "mlm"]  # all, frequent, rest
    final = {a.key: v for a, v in zip(mlm, (0.2, 0.21, 0.22))} | {WITH_MEMORY + a.key: 0.3 for a in mlm}
    final |= {baseline_key(b, a): 0.1 for b in BASELINES if b.task == "mlm" for a in mlm}
    table = accuracy_by_kind(final)
    assert list(table.columns) == ["all", "frequent", "rest"]
    assert list(table.index) == ["unigram", "neighbour counting", "context counting", "model", "model + memory"]
    assert table.loc["model"].tolist() == [0.2, 0.21, 0.22] and (table.loc["model + memory"] == 0.3).all()
    assert (table.loc["context counting"] == 0.1).all()
