"""Post-processing of detected boxes: line merging, margins, size limits and growth to label plates."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from pipeline.text.boxes import TextBox
from pipeline.text.config import TextConfig, TextDetectionError
from pipeline.text.glyphs import find_glyphs
from pipeline.text.markers import find_markers, outermost, within

# A CRAFT box holding one lone letter, which covers at least this fraction of it, is that letter (see
# `with_glyphs`).
GLYPH_SHARE = 0.3


def check_image(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 2 or min(array.shape) < 1:
        raise TextDetectionError(f"image has shape {array.shape}: expected a grayscale (H, W) array")
    if not np.issubdtype(array.dtype, np.floating):
        raise TextDetectionError(f"image has dtype {array.dtype}: expected float32 in [0, 1]")
    if not np.isfinite(array).all():
        raise TextDetectionError("image has NaN or infinite values: expected float32 in [0, 1]")
    return array


def finish_boxes(boxes: list[TextBox], image: np.ndarray, config: TextConfig) -> list[TextBox]:
    """Add the lone letters (`config.glyphs`), merge lines, add the margin, clip to the image, drop small and
    too tall boxes, grow to plates, drop boxes lying within another, add the circled markers
    (`config.markers`); sorted top to bottom, then left to right."""
    if config.glyphs:
        boxes = with_glyphs(boxes, find_glyphs(image, level=config.marker_level))
    if config.merge_lines:
        boxes = merge_lines(boxes, config.merge_gap)
    height, width = image.shape
    out = []
    for box in boxes:
        pad = config.margin * box.height
        x0, y0 = max(0, math.floor(box.x0 - pad)), max(0, math.floor(box.y0 - pad))
        x1, y1 = min(width, math.ceil(box.x1 + pad)), min(height, math.ceil(box.y1 + pad))
        if x1 <= x0 or y1 <= y0 or max(x1 - x0, y1 - y0) < config.min_size or y1 - y0 > config.max_height * height:
            continue
        polygon = None if box.polygon is None else tuple(
            (min(max(x, 0.0), float(width)), min(max(y, 0.0), float(height))) for x, y in box.polygon)
        box = replace(box, x0=x0, y0=y0, x1=x1, y1=y1, polygon=polygon)  # clipped to the film
        if config.grow_to_plates:
            box = grow_to_plate(image, box, config.plate_tolerance, config.plate_max_grow)
        out.append(box)
    out = outermost(out)  # a letter's box and its plate's box, once both are grown to the plate
    if config.markers:
        out = with_markers(out, find_markers(image, level=config.marker_level, min_diameter=config.marker_min_diameter,
                                             max_diameter=config.marker_max_diameter))
    return sorted(out, key=lambda b: (b.y0, b.x0))


def with_markers(boxes: list[TextBox], markers: list[TextBox], inside: float = 0.7) -> list[TextBox]:
    """`boxes` and `markers` together, one box per item: a box that lies mostly (a fraction `inside` of its
    area) within a marker is that marker's letter and gives way to it; a marker that lies mostly within a
    larger box is a round letter ("O", "D") of that word and gives way to the word."""
    markers = outermost(markers, inside)
    words = [box for box in boxes if not any(within(box, m, inside) for m in markers)]
    letters = [m for m in markers if any(within(m, w, inside) and w.area > m.area for w in words)]
    return words + [m for m in markers if m not in letters]


def with_glyphs(boxes: list[TextBox], glyphs: list[TextBox]) -> list[TextBox]:
    """CRAFT's `boxes` and the lone letters `glyphs` together, one box per item. A glyph that lies mostly
    (half its area) within a box is part of it; a box that holds exactly one glyph covering `GLYPH_SHARE`
    of it is that letter, drawn loosely (CRAFT's box of a single letter is often a letter too wide), and
    takes the glyph's tight box; glyphs outside every box are added."""
    out, placed = [], set()
    for box in boxes:
        inside = [index for index, glyph in enumerate(glyphs) if within(glyph, box, 0.5)]
        placed.update(inside)
        letter = glyphs[inside[0]] if len(inside) == 1 else None
        out.append(letter if letter is not None and letter.area >= GLYPH_SHARE * box.area else box)
    return out + [glyph for index, glyph in enumerate(glyphs) if index not in placed]


def grow_to_plate(image: np.ndarray, box: TextBox, tolerance: float = 0.04, max_grow: float = 1.0,
                  step_size: float = 0.1) -> TextBox:
    """`box` grown to the edges of the flat label plate it sits on, or `box` unchanged if there is none.

    The plate value is the median of the ring of pixels just outside the box; there is a plate when at
    least 80% of that ring lies within `tolerance` of it. Each side then moves outwards while at least 90% of
    the next row/column is within `tolerance` of the plate value. A plate must end (a side stops, or
    meets the image border) within `max_grow` × the box height on every side, and on at least half of
    the sides where it ends the film beyond must differ from the plate by `step_size` on average: flat
    regions that go on or fade out (a clipped black background, the air beside the body) are not plates. The polygon is
    dropped when the box grows.
    """
    height, width = image.shape
    x0, y0, x1, y1 = box.x0, box.y0, box.x1, box.y1
    if x1 - x0 < 3 or y1 - y0 < 3:
        return box
    # The ring just outside the box: on a plate it is plate, whatever strokes touch the box's own edges.
    ox0, oy0, ox1, oy1 = max(0, x0 - 1), max(0, y0 - 1), min(width, x1 + 1), min(height, y1 + 1)
    ring = np.concatenate([image[oy0, ox0:ox1], image[oy1 - 1, ox0:ox1], image[oy0:oy1, ox0], image[oy0:oy1, ox1 - 1]])
    value = float(np.median(ring))
    if np.mean(np.abs(ring - value) <= tolerance) < 0.8:
        return box
    limit = max(2, math.ceil(max_grow * (y1 - y0)))

    def flat(strip: np.ndarray) -> bool:
        return strip.size > 0 and float(np.mean(np.abs(strip - value) <= tolerance)) >= 0.9

    bounds = [x0, y0, x1, y1]
    steps = []  # how much the film beyond each inner edge differs from the plate
    for side in range(4):  # left, top, right, bottom
        for step in range(limit + 2):
            if step > limit:
                return box  # still flat after the limit: not a plate
            if (bounds[0] == 0, bounds[1] == 0, bounds[2] == width, bounds[3] == height)[side]:
                break
            strip = _outside(image, bounds, side)
            if not flat(strip):
                steps.append(float(np.mean(np.abs(strip - value))))
                break
            bounds[side] += -1 if side < 2 else 1
    # A plate ends in a step on most sides; a flat field that fades out (air beside the body) does not.
    if steps and sum(step >= step_size for step in steps) * 2 < len(steps):
        return box
    if bounds == [x0, y0, x1, y1]:
        return box
    return replace(box, x0=bounds[0], y0=bounds[1], x1=bounds[2], y1=bounds[3], polygon=None)


def _outside(image: np.ndarray, bounds: list[int], side: int) -> np.ndarray:
    """The row or column just outside `bounds` (x0, y0, x1, y1) on `side` (0 left, 1 top, 2 right, 3 bottom)."""
    x0, y0, x1, y1 = bounds
    if side == 0:
        return image[y0:y1, x0 - 1]
    if side == 1:
        return image[y0 - 1, x0:x1]
    if side == 2:
        return image[y0:y1, x1]
    return image[y1, x0:x1]


def merge_lines(boxes: Iterable[TextBox], gap: float = 0.6) -> list[TextBox]:
    """Merge boxes that sit on one text line: their rows overlap by at least half the smaller height,
    their heights differ by less than 2×, and the horizontal gap is at most `gap` × the larger height.

    The merged box is the union, with the highest score and no polygon; repeated until stable.
    """
    items = list(boxes)
    changed = True
    while changed:
        changed = False
        items.sort(key=lambda b: (b.x0, b.y0))
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                a, b = items[i], items[j]
                if _same_line(a, b, gap):
                    items[i] = TextBox(min(a.x0, b.x0), min(a.y0, b.y0), max(a.x1, b.x1), max(a.y1, b.y1),
                                       max(a.score, b.score), None, " ".join(t for t in (a.text, b.text) if t))
                    del items[j]
                    changed = True
                    break
            if changed:
                break
    return items


def _same_line(a: TextBox, b: TextBox, gap: float) -> bool:
    small, large = sorted((max(a.height, 1), max(b.height, 1)))
    overlap = min(a.y1, b.y1) - max(a.y0, b.y0)
    if large > 2 * small or overlap < 0.5 * small:
        return False
    horizontal = max(a.x0, b.x0) - min(a.x1, b.x1)
    return horizontal <= gap * large


