"""The Config dataclass, its profiles, its validation and its command line."""

import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from helpers.config import PROFILES, ROOT, Config, ConfigError, build_parser, get_profile, parse_args

FIELDS = [f.name for f in fields(Config)]


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _one_sentence(message: str) -> bool:
    return message.endswith(".") and message.count(". ") == 0 and "\n" not in message


def test_root_is_the_repository():
    assert (ROOT / "pyproject.toml").is_file() and (ROOT / "helpers" / "config.py").is_file()


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_profile_builds(name):
    cfg = get_profile(name)
    assert cfg.profile == name
    for key, value in PROFILES[name].items():
        assert getattr(cfg, key) == value
    cfg.validate()
    assert Config(**cfg.to_dict()) == cfg  # round-trips through a plain dict (and so through JSON)
    assert all(field in cfg.describe() for field in FIELDS)


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_profile_has_what_notebook_config_needs(name, monkeypatch):
    from helpers.config import notebook_config

    monkeypatch.setenv("BERT_MEDITATIONS_PROFILE", name)
    monkeypatch.delenv("BERT_MEDITATIONS_ARGS", raising=False)
    cfg, about = notebook_config()
    assert cfg.profile == name and f"profile {name!r}" in about and "What to expect: " in about


def test_a_profile_without_an_expectation_is_one_sentence(monkeypatch):
    from helpers.config import notebook_config

    monkeypatch.setitem(PROFILES, "small", dict(PROFILES["tiny"]))
    monkeypatch.setenv("BERT_MEDITATIONS_PROFILE", "small")
    monkeypatch.delenv("BERT_MEDITATIONS_ARGS", raising=False)
    with pytest.raises(ConfigError, match="Profile 'small' has no entry in helpers.config.EXPECT") as info:
        notebook_config()
    assert _one_sentence(str(info.value))


def test_the_three_profiles():
    assert {"tiny", "default", "bert-base"} <= set(PROFILES)
    base = get_profile("bert-base")
    assert (base.model, base.max_length, base.batch_size, base.epochs, base.lr) == (
        "bert-base-uncased",
        256,
        16,
        2,
        5e-5,
    )
    tiny = get_profile("tiny")
    assert tiny.model == "scratch" and tiny.hidden_size == 32 and tiny.num_hidden_layers == 1
    assert get_profile("default").model == "scratch"


def test_overrides_and_unknown_names():
    assert get_profile("tiny", epochs=5, seed=1).epochs == 5
    assert get_profile("tiny", corpus=Path("/tmp/x.txt")).corpus == "/tmp/x.txt"  # a Path is kept as text
    with pytest.raises(ConfigError, match="Unknown profile 'huge'") as info:
        get_profile("huge")
    assert "tiny" in str(info.value) and _one_sentence(str(info.value))
    with pytest.raises(ConfigError, match="Unknown option.*epoch") as info:
        get_profile("tiny", epoch=3)
    assert _one_sentence(str(info.value))


BAD_VALUES = [
    ("splitter", "comma"),
    ("mixed_precision", "fp8"),
    ("wandb", "maybe"),
    ("lr_schedule", "exponential"),
    ("max_length", 7),
    ("max_length", 0),
    ("max_length", "long"),
    ("pairs_per_paragraph", 0),
    ("epochs", 0),
    ("epochs", -1),
    ("epochs", "3"),
    ("epochs", 2.5),
    ("epochs", True),
    ("batch_size", 0),
    ("vocab_size", 0),
    ("hidden_size", 0),
    ("num_hidden_layers", 0),
    ("num_attention_heads", 0),
    ("intermediate_size", 0),
    ("log_every", 0),
    ("max_steps", 0),
    ("max_steps", 1.5),
    ("max_paragraphs", 1),
    ("hidden_size", 33),
    ("val_fraction", 0.0),
    ("val_fraction", 1.0),
    ("val_fraction", "0.2"),
    ("mlm_probability", 0.0),
    ("mlm_probability", 1.0),
    ("mask_replace_prob", -0.1),
    ("mask_replace_prob", 1.5),
    ("random_replace_prob", 0.5),
    ("warmup_ratio", 2.0),
    ("lr", 0.0),
    ("lr", -1e-4),
    ("lr", "1e-3"),
    ("weight_decay", -0.1),
    ("max_grad_norm", 0.0),
    ("initializer_range", 0.0),
    ("initializer_range", -0.02),
    ("resample_pairs", "yes"),
    ("bucket_by_length", 1),
    ("model", None),
    ("seed", None),
    ("corpus", 5),
    ("position_dims", 3),
    ("position_dims", -2),
    ("position_dims", 32),
    ("neighbour_offsets", "left,right"),
    ("neighbour_offsets", "-1,1,2,3"),
    ("neighbour_layer", 1),
    ("neighbour_layer", -1),
    ("neighbour_scale", 0.0),
    ("nsp_dropout", 1.0),
    ("nsp_lr", 0.0),
    ("nsp_weight_decay", -1.0),
    ("decay_ratio", 0.0),
    ("decay_ratio", 1.5),
    ("embedding_lr", 0.0),
    ("embedding_lr", -1e-3),
    ("output_bias_init", "frequency"),
]


def test_a_wsd_decay_that_overlaps_the_warm_up_is_one_sentence():
    with pytest.raises(ConfigError) as info:
        get_profile("tiny", lr_schedule="wsd", warmup_ratio=0.3, decay_ratio=0.8)
    assert str(info.value).startswith("--decay-ratio=0.8 is invalid: ") and "warm-up" in str(info.value)
    assert _one_sentence(str(info.value))
    get_profile("tiny", lr_schedule="linear", warmup_ratio=0.3, decay_ratio=0.8)  # only wsd decays by the ratio


@pytest.mark.parametrize("name, value", BAD_VALUES)
def test_every_bad_value_is_one_sentence_naming_the_option(name, value):
    with pytest.raises(ConfigError) as info:
        get_profile("tiny", **{name: value})
    message = str(info.value)
    assert message.startswith(f"{_option(name)}={value!r} is invalid: "), message
    assert _one_sentence(message), message


def test_good_edge_values_pass():
    get_profile(
        "tiny",
        max_length=8,
        mask_replace_prob=1.0,
        random_replace_prob=0.0,
        warmup_ratio=0.0,
        weight_decay=0.0,
        lr=1,
        max_steps=1,
        max_paragraphs=2,
        val_fraction=0.5,
        corpus=None,
    )


def _alternative(cfg: Config, name: str):
    """A valid value for ``name`` that differs from the profile's, as (command-line text, parsed value)."""
    special = {
        "profile": None,
        "corpus": ("my/corpus.txt", "my/corpus.txt"),
        "splitter": ("period", "period"),
        "mixed_precision": ("bf16", "bf16"),
        "wandb": ("offline", "offline"),
        "model": ("some/dir", "some/dir"),
        "wandb_project": ("other-project", "other-project"),
        "max_paragraphs": ("50", 50),
        "max_steps": ("7", 7),
        "hidden_size": ("256", 256),
        "num_attention_heads": ("4", 4),
        "position_init": ("sinusoidal", "sinusoidal"),
        "lr_schedule": ("cosine", "cosine"),
        "position_dims": ("32", 32),
        "neighbour_offsets": ("-2,-1", "-2,-1"),
        "nsp_lr": ("1e-4", 1e-4),
        "nsp_weight_decay": ("0.5", 0.5),
        "output_bias_init": ("zero", "zero") if cfg.output_bias_init == "unigram" else ("unigram", "unigram"),
        "embedding_lr": ("3e-3", 3e-3),
    }
    if name in special:
        return special[name]
    value = getattr(cfg, name)
    if isinstance(value, bool):
        return ("false", False) if value else ("true", True)
    if isinstance(value, int):
        return str(value + 1), value + 1
    if isinstance(value, float):
        other = value / 2 if value else 0.25  # a share or a rate, valid either way
        return str(other), other
    raise AssertionError(f"no alternative value for {name}")


# random_replace_prob alone cannot change: the default masks every selected token (mask_replace_prob 1.0), so any
# random share needs room made beside it (tested below).
@pytest.mark.parametrize("name", [n for n in FIELDS if n not in ("profile", "random_replace_prob")])
def test_cli_overrides_every_field(name):
    # The default's positions own dimensions of their own, which a sinusoidal table over all of them would undo.
    profile = "tiny" if name == "position_init" else "default"
    defaults = get_profile(profile)
    text, expected = _alternative(defaults, name)
    cfg, _ = parse_args(["--profile", profile, f"{_option(name)}={text}"])  # '=': a value may start with '-'

    assert getattr(cfg, name) == expected
    assert expected != getattr(defaults, name)
    # Everything else keeps the profile's value.
    assert {f: getattr(cfg, f) for f in FIELDS if f != name} == {f: getattr(defaults, f) for f in FIELDS if f != name}


def test_random_replacement_needs_room_beside_the_mask_share(capsys):
    cfg, _ = parse_args(["--mask-replace-prob", "0.8", "--random-replace-prob", "0.1"])
    assert (cfg.mask_replace_prob, cfg.random_replace_prob) == (0.8, 0.1)
    with pytest.raises(SystemExit):
        parse_args(["--random-replace-prob", "0.1"])  # beside the default's 1.0
    assert "must not exceed 1" in capsys.readouterr().err


def test_cli_examples_from_the_readme():
    cfg, _ = parse_args(["--epochs", "3", "--bucket-by-length", "false", "--max-steps", "none"])
    assert (cfg.epochs, cfg.bucket_by_length, cfg.max_steps, cfg.profile) == (3, False, None, "default")
    cfg, _ = parse_args(["--profile", "tiny", "--max-steps", "5", "--bucket-by-length", "no"])
    assert (cfg.profile, cfg.max_steps, cfg.bucket_by_length, cfg.hidden_size) == ("tiny", 5, False, 32)
    cfg, _ = parse_args(["--max-length=64", "--profile=bert-base"])  # --profile may come anywhere
    assert (cfg.profile, cfg.max_length, cfg.model) == ("bert-base", 64, "bert-base-uncased")
    cfg, _ = parse_args([])
    assert cfg == get_profile("default")


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--epochs", "0"], "--epochs=0 is invalid"),
        (["--epochs", "two"], "invalid int value"),
        (["--bucket-by-length", "perhaps"], "expected true or false"),
        (["--profile", "huge"], "unknown profile 'huge'"),
        (["--no-such-option", "1"], "unrecognized arguments"),
    ],
)
def test_cli_bad_values_exit_with_a_message(argv, words, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    message = str(info.value.code) + capsys.readouterr().err
    assert words in message
    assert info.value.code != 0


def _help_text(text: str) -> str:
    return " ".join(text.split())  # argparse wraps lines; compare with single spaces


def test_help_lists_every_field_with_its_default():
    for profile in PROFILES:
        usage, text = _help_text(build_parser(profile).format_help()).split(" options: ", 1)
        assert "_PARSE" not in usage and "--bucket-by-length BOOL" in usage  # readable placeholders
        defaults = get_profile(profile)
        for name in FIELDS:
            assert f"{_option(name)} " in text, name
            if name != "profile":
                segment = text.split(f"{_option(name)} ", 1)[1].split(" --", 1)[0]
                assert f"(default: {getattr(defaults, name)})" in segment, (profile, name, segment)


def test_train_help_in_a_subprocess():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    done = subprocess.run(
        [sys.executable, "-m", "helpers.train", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    options = set(re.findall(r"--[a-z][a-z0-9-]*", done.stdout))
    missing = [name for name in FIELDS if _option(name) not in options]
    assert not missing, f"python -m helpers.train --help lacks {missing}"
    assert "(default:" in done.stdout


def test_changing_a_config_leaves_the_profiles_alone(tiny_cfg):
    tiny_cfg.epochs = 99
    tiny_cfg.max_length = 4  # plain attribute writes are not validated; validate() catches them
    with pytest.raises(ConfigError, match="--max-length=4"):
        tiny_cfg.validate()
    assert get_profile("tiny").epochs == PROFILES["tiny"]["epochs"] != 99
