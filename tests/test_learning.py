"""The default recipe learns: held-out accuracy at [MASK] beats the most-frequent-token guess by a stated margin."""

from __future__ import annotations

import pytest

from helpers.config import get_profile
from helpers.train import train

# A fixed, smaller setting of the default recipe: 15 of its 24 epochs, as one short run (the learning-rate schedule
# then spans these steps), MLM alone (this test is about MLM). About three minutes on 2 cores.
EPOCHS = 15
# Held-out accuracy at [MASK] must reach 2x the unigram baseline on the same masks (about 3,000 of them).
# Measured on the 2-core CI machine: 0.197 against 0.059 (3.36x); with BERT's starting spread of 0.02 instead of the
# profile's 0.05, 0.087 (1.49x; 1.33x when the default still had dropout 0.1). A model that learned nothing beyond
# word frequencies scores about 1x (the issue that set this test measured the old recipe's checkpoint at 0.8x).
# So 2x catches a recipe that stops learning and one that loses its starting spread, and leaves room for another
# CPU's arithmetic to take a somewhat different path.
MARGIN = 2.0


@pytest.mark.slow
def test_the_default_recipe_beats_the_unigram_guess_at_mask(tmp_path):
    cfg = get_profile("default", epochs=EPOCHS, mlm_only_ratio=1.0, wandb="disabled")
    result = train(cfg, tmp_path / "learns", progress=False, verbose=False, track=False)
    accuracy, unigram = result.final["mlm_accuracy_at_mask"], result.baselines["baseline_unigram"]
    # A model stuck at the unigram solution scores the unigram baseline (or below, as the old default did).
    assert accuracy >= MARGIN * unigram, (
        f"held-out accuracy at [MASK] {accuracy:.3f} is under {MARGIN}x the unigram guess ({unigram:.3f}): "
        f"the recipe no longer learns beyond word frequencies")
    # And it has not only learned *which* token is frequent (the first epochs' level): it went on learning.
    curve = [row["mlm_accuracy_at_mask"] for row in result.epochs]
    assert curve[-1] > max(curve[:3]) + 0.01, curve
