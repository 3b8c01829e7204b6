"""The default recipe learns more than counting: held-out accuracy at [MASK] beats the neighbour-counting guess."""

from __future__ import annotations

import pytest

from helpers.config import get_profile
from helpers.train import train

# A fixed, smaller setting of the default recipe: 15 of its 24 epochs, as one short run (the learning-rate schedule
# then spans these steps), MLM alone (this test is about MLM). About two minutes on 2 cores.
EPOCHS = 15


@pytest.mark.slow
def test_the_default_recipe_beats_neighbour_counting_at_mask(tmp_path):
    cfg = get_profile("default", epochs=EPOCHS, mlm_only_ratio=1.0, wandb="disabled")
    result = train(cfg, tmp_path / "learns", progress=False, verbose=False, track=False)
    accuracy, base = result.final["mlm_accuracy_at_mask"], result.baselines
    # The bar: on the same held-out masks, guess the token seen most often between the same left and right
    # neighbours in the training paragraphs. Measured on the 2-core machine (Intel Xeon, 2026-12-01): 0.228 against
    # 0.216, in 79 s of training; with every attention weight random the full 24-epoch default ends at 0.192, under it.
    assert accuracy > base["baseline_neighbours"], (
        f"held-out accuracy at [MASK] {accuracy:.3f} is not above neighbour counting ({base['baseline_neighbours']:.3f}; "
        f"unigram {base['baseline_unigram']:.3f}): the recipe learns no more than a lookup table of neighbours")
    # And it went on learning after its first epochs (measured: 0.178 by epoch 3, 0.228 at the end).
    curve = [row["mlm_accuracy_at_mask"] for row in result.epochs]
    assert curve[-1] > max(curve[:3]) + 0.03, curve
