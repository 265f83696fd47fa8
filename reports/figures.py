"""Figures: a radiograph beside its saliency overlay, with text boxes outlined.

Functions return PNG bytes; the caller decides where (and how atomically) to write them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle


def saliency_figure_png(image: np.ndarray, saliency: np.ndarray, boxes: Sequence[tuple[int, int, int, int]] = (),
                        title: str = "") -> bytes:
    """PNG of the image (H, W) in [0, 1] | the image with the saliency (H, W) in [0, 1] overlaid.

    Boxes are (x0, y0, x1, y1) pixels, outlined on both panels.
    """
    figure = Figure(figsize=(6, 3.2), dpi=100)  # no pyplot: no global state, no GUI backend
    axes = figure.subplots(1, 2)
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=1)
    axes[1].imshow(image, cmap="gray", vmin=0, vmax=1)
    axes[1].imshow(saliency, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    for axis in axes:
        for x0, y0, x1, y1 in boxes:
            axis.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="lime", lw=1))
        axis.set_axis_off()
    axes[0].set_title("image", fontsize=8)
    axes[1].set_title("iGOS++ saliency (boxes: burned-in text)", fontsize=8)
    figure.suptitle(title, fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
