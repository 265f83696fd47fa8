"""Circled and boxed laterality markers: a saturated disc or square with a letter cut out of it.

Radiography markers ("L", "R", the Spanish "D"/"I") are burned in as a letter inside a filled disc or
square, often with a ring of the opposite polarity around it. CRAFT, trained on scene text, scores the
letter weakly and never the disc and ring, so a cleaned film would keep the marker's shape. This
finder looks for the disc itself:

1. threshold the film at a saturation level (`TextConfig.marker_level`), once for dark discs and once
   for light ones (the negative film);
2. keep the connected regions whose outer contour is a circle (4πA/P² ≥ `CIRCULARITY`) or a filled
   square (area ≥ `SQUARE_FILL` of its bounding box), about as wide as high, whose diameter is a
   fraction `marker_min_diameter` to `marker_max_diameter` of the film's long side;
3. that have a letter inside, either cut out of a filled disc (holes of the other polarity covering
   `HOLE_FRACTION` of the disc, in at most `MAX_HOLES` pieces) or drawn inside a ring (one hole of at
   least `RING_HOLE` of the region, holding another region at least `LETTER_SIZE` of its size);
4. and, for a filled disc, that stand out from the film: in most directions the band just outside the
   disc holds a pixel of the opposite polarity (a drawn ring, or a dark disc on a film that is not dark
   there; `RING_CONTRAST`).

A marker that the film's edge cuts through has no closed outline; it is found as a circle (Hough
transform) that the edge cuts, mostly drawn where it lies on the film, with a letter inside.

The box covers the disc and its ring, so inpainting removes the marker whole.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.text.boxes import TextBox

# Shape tests of step 2: a disc's 4πA/P² is 1 in theory, ~0.85–0.9 once pixelated; a square plate's is
# π/4, so squares are recognised by filling their bounding box instead.
CIRCULARITY = 0.78
SQUARE_FILL = 0.9
ASPECT = (0.75, 1.33)
# Step 3: a letter cut out of the disc covers a few percent to about half of it, in a few pieces.
HOLE_FRACTION = (0.03, 0.6)
MAX_HOLES = 3
# Step 4: fraction of the ring pixels that must be of the opposite polarity (brighter than the disc by
# at least half the film's range).
RING_CONTRAST = 0.6
# A drawn ring (a letter inside a ring, the film showing through): its hole is most of its area, and a
# letter inside is at least this fraction of the hole's size (an ECG electrode's snap is smaller).
RING_HOLE = 0.45
LETTER_SIZE = 0.3
# A marker cut by the film's edge: at least this much of its circle on the film, most of that drawn, and
# a letter inside (the dark fraction of the inner 75 % of the circle between these bounds).
EDGE_VISIBLE = 0.6
EDGE_RING = 0.85
EDGE_LETTER = (0.05, 0.97)


def find_markers(image: np.ndarray, *, level: float = 0.15, min_diameter: float = 0.01,
                 max_diameter: float = 0.08) -> list[TextBox]:
    """Boxes of circled or boxed markers in `image` (H, W) float32 in [0, 1], in its pixels.

    level: a disc is made of pixels at most `level` (dark discs) or at least 1 − `level` (light discs);
    min_diameter, max_diameter: the disc's diameter range as fractions of the image's long side.
    Each box's score is the fraction of its ring that contrasts with the disc (in [0, 1]).
    """
    image = np.asarray(image, np.float32)
    long_side = max(image.shape)
    sizes = (min_diameter * long_side, max_diameter * long_side)
    found: list[TextBox] = []
    for film in (image, 1 - image):
        found.extend(_discs(film, level, sizes))
        found.extend(_cut_by_the_edge(film, level, sizes))
    return sorted(outermost(found), key=lambda b: (b.y0, b.x0))


def outermost(boxes: list[TextBox], inside: float = 0.7) -> list[TextBox]:
    """`boxes` without those that lie mostly (a fraction `inside` of their area) within a larger one kept:
    a letter found inside its disc, or one marker found in both polarities, leaves one box."""
    kept: list[TextBox] = []
    for box in sorted(boxes, key=lambda b: b.area, reverse=True):
        if not any(within(box, other, inside) for other in kept):
            kept.append(box)
    return kept


def within(box: TextBox, outer: TextBox, fraction: float) -> bool:
    """Whether at least `fraction` of `box`'s area lies inside `outer`."""
    width = min(box.x1, outer.x1) - max(box.x0, outer.x0)
    height = min(box.y1, outer.y1) - max(box.y0, outer.y0)
    return width > 0 and height > 0 and width * height >= fraction * max(box.area, 1)


def _discs(film: np.ndarray, level: float, sizes: tuple[float, float]) -> list[TextBox]:
    """Markers drawn dark in `film` (H, W) in [0, 1] (a filled disc with a letter cut out, or a ring with a
    letter inside); `sizes`: (min, max) diameter in pixels."""
    dark = (film <= level).astype(np.uint8)
    contours, hierarchy = cv2.findContours(dark, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if hierarchy is None:
        return []
    hierarchy = hierarchy[0]  # (n, 4): next, previous, first child, parent
    regions = [i for i in range(len(contours)) if hierarchy[i][3] == -1]
    rects = {i: cv2.boundingRect(contours[i]) for i in regions}
    height, width = film.shape
    out = []
    for index in regions:
        x, y, w, h = rects[index]
        if not _round_shape(contours[index], (x, y, w, h), sizes):
            continue
        area = cv2.contourArea(contours[index])
        holes = _children(hierarchy, index)
        fractions = sorted((cv2.contourArea(contours[child]) / area for child in holes), reverse=True)
        if holes and len(holes) <= MAX_HOLES and HOLE_FRACTION[0] <= sum(fractions) <= HOLE_FRACTION[1]:
            ring_width = max(2, round(0.15 * max(w, h)))  # a filled disc: its ring lies outside it
            score = _ring_contrast(film, contours[index], ring_width)
        elif fractions and fractions[0] >= RING_HOLE and _letter_inside(rects, index, contours[holes[0]]):
            ring_width, score = 2, 1.0  # a drawn ring: the region is the ring itself (and its soft edge)
        else:
            continue
        if score >= RING_CONTRAST:
            out.append(TextBox(max(0, x - ring_width), max(0, y - ring_width), min(width, x + w + ring_width),
                               min(height, y + h + ring_width), round(score, 4)))
    return out


def _cut_by_the_edge(film: np.ndarray, level: float, sizes: tuple[float, float]) -> list[TextBox]:
    """Markers drawn dark in `film` (H, W) in [0, 1] that the film's edge cuts through: their region is open,
    so step 2 cannot see a disc; circles are found by OpenCV's Hough transform instead and kept when at
    least `EDGE_VISIBLE` of the circle lies on the film, `EDGE_RING` of that visible circle is dark, and the
    inside holds a letter (between `EDGE_LETTER` of it dark: a ring with a letter, or a disc with one cut out).
    """
    dark = film <= level
    height, width = film.shape
    circles = cv2.HoughCircles((dark * 255).astype(np.uint8), cv2.HOUGH_GRADIENT_ALT, dp=1.5, minDist=sizes[0],
                               param1=300, param2=0.7, minRadius=max(1, int(sizes[0] / 2)),
                               maxRadius=math.ceil(sizes[1] / 2))
    if circles is None:
        return []
    ring = cv2.dilate(dark.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # a pixel's slack, once per film
    lines, columns = np.ogrid[:height, :width]
    out = []
    for x, y, r in circles[0]:
        if min(x, y, width - x, height - y) >= r:
            continue  # whole: step 2's business
        angles = np.linspace(0, 2 * math.pi, 72, endpoint=False)
        cols, rows = np.rint(x + r * np.cos(angles)).astype(int), np.rint(y + r * np.sin(angles)).astype(int)
        on_film = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
        if on_film.mean() < EDGE_VISIBLE:
            continue
        if ring[rows[on_film], cols[on_film]].mean() < EDGE_RING:
            continue
        inside = (columns - x) ** 2 + (lines - y) ** 2 <= (0.75 * r) ** 2
        if not EDGE_LETTER[0] <= dark[inside].mean() <= EDGE_LETTER[1]:
            continue
        # A disc's ring lies outside it; a ring's circle is its centre line, plus its soft edge.
        grow = max(2, round(0.3 * r)) if dark[inside].mean() > 0.5 else 3
        out.append(TextBox(max(0, math.floor(x - r - grow)), max(0, math.floor(y - r - grow)),
                           min(width, math.ceil(x + r + grow)), min(height, math.ceil(y + r + grow)), 1.0))
    return out


def _round_shape(contour: np.ndarray, rect: tuple[int, int, int, int], sizes: tuple[float, float]) -> bool:
    """A disc or square plate of a marker's size: diameter within `sizes` (pixels), as wide as high."""
    _, _, w, h = rect
    if not sizes[0] <= max(w, h) <= sizes[1] or not ASPECT[0] <= w / h <= ASPECT[1]:
        return False
    area, perimeter = cv2.contourArea(contour), cv2.arcLength(contour, True)
    if area <= 0 or perimeter <= 0:
        return False
    return 4 * math.pi * area / perimeter**2 >= CIRCULARITY or area >= SQUARE_FILL * w * h


def _letter_inside(rects: dict[int, tuple[int, int, int, int]], ring: int, hole: np.ndarray) -> bool:
    """Whether another region (a letter) lies inside the hole of the ring region `ring`, its longer side at
    least `LETTER_SIZE` of the hole's."""
    hx, hy, hw, hh = cv2.boundingRect(hole)
    for index, (x, y, w, h) in rects.items():
        inside = hx <= x and hy <= y and x + w <= hx + hw and y + h <= hy + hh
        if index != ring and inside and max(w, h) >= LETTER_SIZE * max(hw, hh):
            return True
    return False


def _children(hierarchy: np.ndarray, parent: int) -> list[int]:
    """Indices of the holes of region `parent` in a RETR_CCOMP hierarchy."""
    children = []
    child = hierarchy[parent][2]
    while child != -1:
        children.append(child)
        child = hierarchy[child][0]
    return children


def _ring_contrast(film: np.ndarray, contour: np.ndarray, ring_width: int, bins: int = 36) -> float:
    """Fraction of directions from the disc's centre in which the band `ring_width` pixels outside the
    contour holds a pixel brighter than the disc by half the range (0.5 on [0, 1]): a drawn ring, or a
    dark disc on a film that is not dark there, gives ~1; a dark blob in a dark field gives ~0."""
    x, y, w, h = cv2.boundingRect(contour)
    pad = ring_width + 1
    height, width = film.shape
    x0, y0, x1, y1 = max(0, x - pad), max(0, y - pad), min(width, x + w + pad), min(height, y + h + pad)
    disc = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.drawContours(disc, [contour - np.array([x0, y0])], -1, 1, thickness=cv2.FILLED)
    grown = cv2.dilate(disc, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring_width + 1,) * 2))
    band = (grown > 0) & (disc == 0)
    patch = film[y0:y1, x0:x1]
    disc_level = float(np.median(patch[disc > 0]))
    rows, cols = np.nonzero(band)
    if rows.size == 0:
        return 0.0
    centre_x, centre_y = x + w / 2 - x0, y + h / 2 - y0
    direction = ((np.arctan2(rows - centre_y, cols - centre_x) + math.pi) / (2 * math.pi) * bins).astype(int) % bins
    bright = patch[rows, cols] >= disc_level + 0.5
    ringed = np.zeros(bins, bool)
    np.logical_or.at(ringed, direction, bright)
    return float(ringed.mean())
