"""Figures for the report: radiograph panels, share distributions and confusion matrices.

Functions return PNG bytes; the caller decides where (and how atomically) to write or embed them. They use
matplotlib's object API (`Figure`), never pyplot: no global state, no GUI backend.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Panel:
    """One image panel: image (H, W) in [0, 1], an optional overlay (H, W) in [0, 1], boxes (x0, y0, x1, y1)."""

    title: str
    image: np.ndarray
    overlay: np.ndarray | None = None
    boxes: Sequence[Box] = ()


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def panels_png(panels: Sequence[Panel], title: str = "", panel_inches: float = 2.6) -> bytes:
    """PNG of the panels side by side; an overlay is drawn with the jet colormap, boxes outlined in lime."""
    figure = Figure(figsize=(panel_inches * len(panels), panel_inches + 0.5), dpi=100)
    axes = np.atleast_1d(figure.subplots(1, len(panels)))
    for axis, panel in zip(axes, panels, strict=True):
        axis.imshow(panel.image, cmap="gray", vmin=0, vmax=1)
        if panel.overlay is not None:
            axis.imshow(panel.overlay, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        for x0, y0, x1, y1 in panel.boxes:
            axis.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="lime", lw=1))
        axis.set_axis_off()
        axis.set_title(panel.title, fontsize=8)
    figure.suptitle(title, fontsize=8)
    figure.tight_layout()
    return _png(figure)


def saliency_figure_png(image: np.ndarray, saliency: np.ndarray, boxes: Sequence[Box] = (), title: str = "") -> bytes:
    """PNG of the image (H, W) in [0, 1] | the image with the saliency (H, W) in [0, 1] overlaid.

    Boxes are (x0, y0, x1, y1) pixels, outlined on both panels.
    """
    return panels_png([Panel("image", image, boxes=boxes),
                       Panel("iGOS++ saliency (boxes: burned-in text)", image, saliency, boxes)], title, 3.0)


def distribution_png(groups: Mapping[str, np.ndarray], xlabel: str, title: str = "",
                     chance: Mapping[str, float] | None = None) -> bytes:
    """Horizontal box plots with every value as a jittered dot, one row per group (top to bottom in order).

    chance: an optional reference value per group (e.g. the text area, the chance level of a share), drawn
    as a red tick.
    """
    names = list(groups)
    figure = Figure(figsize=(7, 0.9 + 0.45 * max(len(names), 1)), dpi=100)
    axis = figure.subplots()
    positions = np.arange(len(names), 0, -1)
    values = [np.asarray(groups[name], dtype=float) for name in names]
    axis.boxplot([v[np.isfinite(v)] for v in values], positions=positions, orientation="horizontal",
                 widths=0.6, showfliers=False)
    rng = np.random.default_rng(0)  # fixed jitter: the same run renders the same figure
    for position, value in zip(positions, values, strict=True):
        axis.plot(value, position + rng.uniform(-0.18, 0.18, len(value)), ".", ms=3, alpha=0.5, color="tab:blue")
    for position, name in zip(positions, names, strict=True):
        if chance and name in chance:
            axis.plot([chance[name]] * 2, [position - 0.3, position + 0.3], color="red", lw=2)
    axis.set_yticks(positions, names, fontsize=8)
    axis.set_xlabel(xlabel, fontsize=8)
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    return _png(figure)


def confusion_png(counts: np.ndarray, labels: Sequence[str], title: str = "") -> bytes:
    """A confusion matrix (rows: true class, columns: predicted) with the count in each cell."""
    counts = np.asarray(counts)
    figure = Figure(figsize=(1.2 + 0.8 * len(labels), 1.0 + 0.7 * len(labels)), dpi=100)
    axis = figure.subplots()
    axis.imshow(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max()), 1))
    for (row, column), count in np.ndenumerate(counts):
        dark = count > counts.max() / 2
        axis.text(column, row, str(int(count)), ha="center", va="center", color="white" if dark else "black")
    axis.set_xticks(range(len(labels)), labels, fontsize=7)
    axis.set_yticks(range(len(labels)), labels, fontsize=7)
    axis.set_xlabel("predicted", fontsize=8)
    axis.set_ylabel("true", fontsize=8)
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    return _png(figure)
