"""The report's "did the saliency leave the text" sentence, on hand-made audit tables with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from reports.saliency_shift import empty_maps, share_shift


def audit(shares: np.ndarray, area: float = 0.03, empty: int = 0) -> pd.DataFrame:
    """An audit table of len(shares) images, all with text area `area`; the first `empty` maps are all zero."""
    n = len(shares)
    return pd.DataFrame({"filename": [f"f{i}.png" for i in range(n)], "text_share": shares,
                         "text_area": np.full(n, area), "map_empty": np.arange(n) < empty})


def noisy(mean: float, n: int = 30, seed: int = 0) -> np.ndarray:
    return np.clip(mean + np.random.default_rng(seed).normal(0, 0.01, n), 0, 1)


def test_the_saliency_left_the_text_only_when_a_is_above_chance_and_b_is_significantly_lower():
    shift = share_shift(audit(noisy(0.30)), audit(noisy(0.05, seed=1)))
    assert shift.n == 30 and shift.p_above_chance < 1e-5 and shift.p_drop < 1e-5
    expected = wilcoxon(noisy(0.30) - noisy(0.05, seed=1), alternative="greater").pvalue
    assert shift.p_drop == expected
    assert shift.statement().startswith("B's saliency moved off the text")
    assert "n = 30 images" in shift.statement()


def test_no_claim_when_a_is_at_chance_level():
    """The real-film case: 0.0018 → 0.0012 with a chance level of 0.004 is no reliance, not a move."""
    a = np.linspace(0.0008, 0.0028, 30)
    shift = share_shift(audit(a, area=0.004), audit(a * 2 / 3, area=0.004))
    assert round(shift.share_a, 4) == 0.0018 and round(shift.share_b, 4) == 0.0012
    assert shift.p_drop < 1e-5  # B is lower on every image, yet A never relied on the text
    statement = shift.statement()
    assert statement.startswith("A's saliency is not on the text more than chance")
    assert "moved off" not in statement


def test_no_claim_when_b_is_not_significantly_lower():
    shift = share_shift(audit(noisy(0.30)), audit(noisy(0.30, seed=5)))
    assert shift.p_above_chance < 0.05 and shift.p_drop > 0.05
    assert "did not move off the text" in shift.statement()


def test_too_few_images_get_no_test():
    shift = share_shift(audit(noisy(0.30, n=6)), audit(noisy(0.01, n=6, seed=1)))
    assert shift.p_above_chance is None and shift.p_drop is None
    assert shift.statement().startswith("Too few images") and "n = 6 images" in shift.statement()


def test_images_are_paired_by_filename():
    a, b = audit(noisy(0.30)), audit(noisy(0.05, seed=1))
    assert share_shift(a, b.iloc[::-1].head(20)).n == 20


def test_all_zero_maps_are_counted_per_classifier():
    line = empty_maps({"A": audit(noisy(0.3), empty=3), "B": audit(noisy(0.1), empty=8)})
    assert line.endswith("A 3 of 30, B 8 of 30.")
    assert empty_maps({"A": audit(noisy(0.3)).drop(columns="map_empty")}) is None
