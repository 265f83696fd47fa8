"""Text boxes (`TextBox`), rasterising them (`box_mask`) and scoring them against ground truth."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TextBox:
    """A detected text region in pixels of the image it was found in: columns [x0, x1), rows [y0, y1).

    score: the detector's confidence in [0, 1] (CRAFT: peak character-region score inside the box;
    Tesseract: word confidence / 100); polygon: the rotated 4-point box ((x, y), ...) clockwise from
    the top left, when the detector gives one and the box was not merged from several; text: the
    recognised string where the backend reads text (Tesseract), else "".
    """

    x0: int
    y0: int
    x1: int
    y1: int
    score: float
    polygon: tuple[tuple[float, float], ...] | None = None
    text: str = ""

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        return max(0, self.width) * max(0, self.height)

    def to_dict(self) -> dict:
        """A JSON-ready dict (the polygon as a list of [x, y] pairs)."""
        out = {"x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1, "score": round(float(self.score), 4)}
        if self.polygon is not None:
            out["polygon"] = [[round(float(x), 1), round(float(y), 1)] for x, y in self.polygon]
        if self.text:
            out["text"] = self.text
        return out

    @classmethod
    def from_dict(cls, data: dict) -> TextBox:
        polygon = tuple((float(x), float(y)) for x, y in data["polygon"]) if data.get("polygon") else None
        return cls(int(data["x0"]), int(data["y0"]), int(data["x1"]), int(data["y1"]), float(data["score"]),
                   polygon, str(data.get("text", "")))



def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1), half-open pixel bounds."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def coverage(truth: tuple[float, float, float, float], boxes: Iterable[tuple[float, float, float, float]]) -> float:
    """Fraction of the `truth` box's pixels covered by the union of `boxes`."""
    x0, y0, x1, y1 = (int(v) for v in truth)
    if x1 <= x0 or y1 <= y0:
        return 0.0
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    for b in boxes:
        bx0, by0 = max(int(b[0]), x0) - x0, max(int(b[1]), y0) - y0
        bx1, by1 = min(math.ceil(b[2]), x1) - x0, min(math.ceil(b[3]), y1) - y0
        if bx1 > bx0 and by1 > by0:
            mask[by0:by1, bx0:bx1] = True
    return float(mask.mean())


def match_boxes(truth: Sequence[tuple[float, float, float, float]],
                found: Sequence[tuple[float, float, float, float]], threshold: float = 0.5) -> list[int | None]:
    """Greedy one-to-one matching by IoU (highest first): for each truth box, the index of its found box or None."""
    pairs = sorted(((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), reverse=True)
    matched: list[int | None] = [None] * len(truth)
    used: set[int] = set()
    for value, i, j in pairs:
        if value < threshold:
            break
        if matched[i] is None and j not in used:
            matched[i] = j
            used.add(j)
    return matched


def box_mask(shape: tuple[int, int], boxes: Iterable[TextBox], dilate: int = 0) -> np.ndarray:
    """Boolean (H, W) mask of the boxes, grown by `dilate` pixels on every side, clipped to the image."""
    height, width = shape
    mask = np.zeros((height, width), bool)
    for box in boxes:
        x0, y0 = max(0, box.x0 - dilate), max(0, box.y0 - dilate)
        x1, y1 = min(width, box.x1 + dilate), min(height, box.y1 + dilate)
        if x1 > x0 and y1 > y0:
            mask[y0:y1, x0:x1] = True
    return mask
