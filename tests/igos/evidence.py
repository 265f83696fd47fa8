"""A hand-set CNN whose target score depends only on the brightness of one known window, and the settings of the
igos tests that use it. The CNN, its images and the scoring helpers live in benchmarks.common, which
benchmarks/igos_modes_agreement.py shares."""

from __future__ import annotations

from benchmarks.common import WindowEvidenceNet, evidence_images, top_fraction_inside, window_mask

__all__ = ["FAST", "METHOD_OPTIONS", "SIZE", "WINDOW", "WindowEvidenceNet", "evidence_images", "top_fraction_inside",
           "window_mask"]

# The shared test setting: 32×32 images whose evidence is one 8×8 window, and cheap options per method.
SIZE = (32, 32)
WINDOW = (8, 16, 8, 8)
FAST = {"iterations": 5, "ig_steps": 4}
METHOD_OPTIONS = {
    "igos++": FAST, "igos+": FAST, "igos": FAST, "igos-insertion": FAST,
    "mask": {"iterations": 20}, "rise": {"n_masks": 64, "cell_grid": 4},
    "gradcam": {}, "integrated-gradients": {"ig_steps": 5}, "gradient": {},
}
