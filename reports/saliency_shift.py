"""Did B's saliency leave the text? A statement the per-image numbers of both audits can carry.

From audit/a.csv and audit/b.csv (one row per audited image: `text_share`, the fraction of the iGOS++ map on
the detected text; `text_area`, the fraction of the image that text covers, the share a map that ignores
the text would have by chance; `map_empty`, the map is zero everywhere):

- A relies on the text in its maps only if its shares exceed their chance level: one-sided Wilcoxon
  signed-rank test of `text_share − text_area` over A's images.
- B's saliency moved off the text only if, in addition, B's share is lower than A's on the same images:
  one-sided paired Wilcoxon signed-rank test over the images both audits hold.
- Fewer than MIN_IMAGES images: no test and no claim. Every statement carries its n and p.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from scipy.stats import wilcoxon

ALPHA = 0.05
MIN_IMAGES = 10  # the signed-rank test has little meaning below this many images


@dataclass(frozen=True)
class ShareShift:
    """Mean text share of A and B and the chance level on the `n` paired images, and the two one-sided p-values
    (None when n < MIN_IMAGES or no image differs)."""

    n: int
    share_a: float
    share_b: float
    chance: float
    p_above_chance: float | None
    p_drop: float | None

    def statement(self) -> str:
        """One sentence a reviewer can trust: the claim only where the test carries it."""
        numbers = (f"mean share of saliency on text {self.share_a:.3f} (A) and {self.share_b:.3f} (B), "
                   f"chance level (mean text area) {self.chance:.3f}, n = {self.n} images")
        if self.n < MIN_IMAGES:
            return f"Too few images to test whether the saliency left the text: {numbers}."
        if self.p_above_chance is None or not (self.p_above_chance < ALPHA and self.share_a > self.chance):
            p = "n/a: every share equals its chance level" if self.p_above_chance is None else (
                f"{self.p_above_chance:.2g}")
            return (f"A's saliency is not on the text more than chance (Wilcoxon p = {p}): there was no reliance "
                    f"on text in A's maps for B to lose; {numbers}.")
        if self.p_drop is not None and self.p_drop < ALPHA and self.share_b < self.share_a:
            return (f"B's saliency moved off the text: {numbers}; A above chance (Wilcoxon p = "
                    f"{self.p_above_chance:.2g}), B below A on the same images (paired Wilcoxon p = "
                    f"{self.p_drop:.2g}).")
        drop = "not computed" if self.p_drop is None else f"{self.p_drop:.2g}"
        return (f"A's saliency is on the text above chance (Wilcoxon p = {self.p_above_chance:.2g}), but B's share "
                f"is not significantly lower (paired Wilcoxon p = {drop}): the saliency did not move off the text; "
                f"{numbers}.")


def share_shift(audit_a: pd.DataFrame, audit_b: pd.DataFrame) -> ShareShift:
    """The `ShareShift` of two audit tables (columns filename, text_share, text_area), paired by filename."""
    paired = audit_a.merge(audit_b, on="filename", suffixes=("_a", "_b"))
    n = len(paired)
    above, drop = None, None
    if n >= MIN_IMAGES:
        above = _one_sided(paired["text_share_a"] - paired["text_area_a"])
        drop = _one_sided(paired["text_share_a"] - paired["text_share_b"])
    return ShareShift(n, float(paired["text_share_a"].mean()), float(paired["text_share_b"].mean()),
                      float(paired["text_area_a"].mean()), above, drop)


def _one_sided(differences: pd.Series) -> float | None:
    """p-value of the Wilcoxon signed-rank test that `differences` are positive; None when all are zero."""
    if not differences.ne(0).any():
        return None
    return float(wilcoxon(differences, alternative="greater").pvalue)


def empty_maps(audits: dict[str, pd.DataFrame]) -> str | None:
    """"All-zero iGOS++ maps: A k of n, B k of n" from the tables' `map_empty` (None for runs without it)."""
    counts = [f"{name} {int(table['map_empty'].astype(bool).sum())} of {len(table)}"
              for name, table in audits.items() if "map_empty" in table]
    if not counts:
        return None
    return ("All-zero iGOS++ maps (no evidence; their shares count as the chance level): " + ", ".join(counts) + ".")
