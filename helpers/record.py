"""The recorded run: the default profile trained once, kept small in docs/record.json for notebooks and README.

    python -m helpers.record            # or: make record (about five minutes on 2 cores)

It holds the per-step training losses, the per-epoch held-out metrics and their baselines, the answers of the
untrained and the trained model to a fixed set of prompts, the profile and the code version. A test fails when
the record no longer matches the default profile, so the figures never show a run of another recipe.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from helpers.config import ROOT, Config, get_profile
from helpers.pairs import IS_NEXT, LABEL_NAMES
from helpers.provenance import code_version, machine
from helpers.report import first_above

RECORD = ROOT / "docs" / "record.json"
FIGURE = ROOT / "docs" / "record.png"  # the README's picture of the record
# Fill-mask prompts: "{mask}" stands for the tokenizer's mask token; each is a sentence of a *held-out* paragraph of the
# default profile's split (George Long's translation), so the model never trained on it, and the answer is the word the
# book has there, one token of the default profile's vocabulary (tests/test_record.py checks both). The first three
# are among the training text's 100 most frequent tokens (grammar words), the last three are not.
FILL_PROMPTS = [
    ("Do not act as if thou wert going {mask} live ten thousand years.", "to"),
    ("Men exist for the sake {mask} one another.", "of"),
    ("While thou livest, while it is in {mask} power, be good.", "thy"),
    ("It is thy {mask} then to pardon him.", "duty"),
    ("Let this always be present to thy {mask}, and never stop doing such good.", "mind"),
    ("Loss is nothing else than {mask}.", "change"),
]
# NSP prompts: (A, B, label) with BertForPreTraining's labels, 0 = "B follows A", 1 = "B is random".
NSP_PROMPTS = [
    (
        "Begin the morning by saying to thyself, I shall meet with the busy-body, the ungrateful, arrogant, deceitful, "
        "envious, unsocial.",
        "All these things happen to them by reason of their ignorance of what is good and evil.",
        0,
    ),
    (
        "Begin the morning by saying to thyself, I shall meet with the busy-body, the ungrateful, arrogant, deceitful, "
        "envious, unsocial.",
        "The gods have given the power of using the lyre.",
        1,
    ),
]


def answers(predictor, tokenizer) -> dict[str, list[dict[str, Any]]]:
    """The model's answers to the fixed prompts: top-5 fill-mask tokens, NSP verdict and P(B follows A).

    A predictor with a memory also gives the table's top-5 and the mix's (as ``memory`` and ``with_memory``).
    """
    rounded = lambda top: [[token, round(p, 4)] for token, p in top[0]]  # noqa: E731 - the prompt's only [MASK]
    fill = []
    for template, answer in FILL_PROMPTS:
        text = template.format(mask=tokenizer.mask_token)
        result = predictor.fill_mask_result(text, top_k=5)
        fill.append({"text": text, "answer": answer, "top": rounded(result.predictions)})
        if result.mixed_predictions is not None:
            fill[-1] |= {"memory": rounded(result.memory_predictions), "with_memory": rounded(result.mixed_predictions)}
    nsp = []
    for a, b, label in NSP_PROMPTS:
        result = predictor.predict_nsp(a, b)
        nsp.append(
            {
                "sentence_a": a,
                "sentence_b": b,
                "label": label,
                "verdict": result.verdict,
                "p_follows": round(result.probabilities[LABEL_NAMES[IS_NEXT]], 4),
            }
        )
    return {"fill_mask": fill, "nsp": nsp}


def _merge(before: dict, after: dict) -> dict[str, list[dict[str, Any]]]:
    """One entry per prompt with its 'before' and 'after' answers."""
    fill = [
        {"text": b["text"], "answer": b["answer"], "before": b["top"], "after": a["top"]}
        | {key: a[key] for key in ("memory", "with_memory") if key in a}
        for b, a in zip(before["fill_mask"], after["fill_mask"])
    ]
    nsp = [
        {
            **{k: b[k] for k in ("sentence_a", "sentence_b", "label")},
            "before": {"verdict": b["verdict"], "p_follows": b["p_follows"]},
            "after": {"verdict": a["verdict"], "p_follows": a["p_follows"]},
        }
        for b, a in zip(before["nsp"], after["nsp"])
    ]
    return {"fill_mask": fill, "nsp": nsp}


def record_profile(cfg: Config) -> dict[str, Any]:
    """The profile as the record stores it (no machine paths, no tracking choice)."""
    values = cfg.to_dict()
    values.pop("corpus", None)
    values.pop("wandb", None)
    return values


def make_record(cfg: Config | None = None, out: Path = RECORD, progress: bool = True) -> dict[str, Any]:
    """Train ``cfg`` (the default profile), ask the prompts before and after, and write the record."""
    from transformers import set_seed

    from helpers.dataset import prepare_data
    from helpers.model import load_model
    from helpers.serving import Predictor
    from helpers.train import train

    cfg = cfg or get_profile("default", wandb="disabled")
    set_seed(cfg.seed)  # the order train() follows, so "before" is exactly the model training starts from
    data = prepare_data(cfg)
    untrained = Predictor(
        load_model(cfg, data.tokenizer, data.training_text(cfg).unigram), data.tokenizer, cfg.max_length
    )
    before = answers(untrained, data.tokenizer)
    with tempfile.TemporaryDirectory() as folder:
        result = train(cfg, Path(folder) / "record", progress_bar=progress, track=False)
        after = answers(Predictor.from_checkpoint(result.checkpoint), data.tokenizer)
    rounded = lambda row: {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in row.items()}  # noqa: E731
    # Time to quality: training seconds until held-out MLM at [MASK] first passes the neighbour-counting guess.
    passed = first_above(result.epochs, result.baselines)
    result.final["seconds_to_neighbours"] = None if passed is None else passed["seconds"]
    record = {
        "profile": record_profile(cfg),
        "code_version": code_version(),
        "machine": machine(),
        "baselines": rounded(result.baselines),
        "final": rounded(result.final),
        "epochs": [rounded(r) for r in result.epochs],
        "history": [rounded(r) for r in result.history],
        "prompts": _merge(before, after),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)  # whole or absent
    return record


def draw_record(record: dict[str, Any], figure: Path = FIGURE) -> None:
    """The README's picture of the record: held-out metrics beside their baselines, and the training losses."""
    import matplotlib

    matplotlib.use("Agg")
    from helpers.plots import plot_run, record_label

    fig = plot_run(record["epochs"], record["baselines"], record["history"], record_label(record))
    fig.savefig(figure, dpi=100, bbox_inches="tight")


def load_record(path: Path = RECORD) -> dict[str, Any]:
    """The committed record of the default profile's run."""
    if not path.is_file():
        raise FileNotFoundError(f"No recorded run at {path}; make one with `make record` (about five minutes).")
    return json.loads(path.read_text(encoding="utf-8"))


def main() -> int:
    if code_version().endswith("+changes"):  # the record names the commit it came from, so that commit must be it
        print(
            "error: tracked files have uncommitted changes; commit them (or stash them) first, so that the record's "
            "code version is the code that made it.",
            file=sys.stderr,
        )
        return 2
    record = make_record()
    draw_record(record)
    passed = record["final"]["seconds_to_neighbours"]
    print(
        f"Wrote {RECORD.relative_to(ROOT)}: {len(record['history'])} steps, {len(record['epochs'])} epochs, "
        f"{record['final']['train_seconds']:.0f} s; held-out MLM at [MASK] passed neighbour counting "
        + (f"after {passed:.0f} s." if passed is not None else "never.")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
