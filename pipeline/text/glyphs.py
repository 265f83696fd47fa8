"""Lone burned-in letters: a saturated glyph ("L", "R") standing alone on the film.

CRAFT, trained on words in scene photographs, often gives a single letter a region score below the
threshold (a dark "L" on a bright film, a light "L" on a dark plate). Burned-in letters are drawn at the
film's extreme grey levels with crisp edges, which anatomy is not, so they can be found by their shape:

1. threshold the film at a saturation level (`level`; in detection `TextConfig.marker_level`, the
   markers' level), once for dark ink and once for light ink (the negative film);
2. keep the connected regions as tall as a burned-in letter (`min_height` to `max_height` of the film's
   long side), letter-shaped (width `ASPECT` of the height, filling `FILL` of their
   bounding box: strokes, not blobs) and drawn with strokes (mean stroke width at most `STROKE` of the
   height);
3. that stand out: the band just outside the region is at least `CONTRAST` away from the ink level
   (a crisp letter on film or on a plate), where saturated anatomy fades out gradually.

Each found box is the glyph's bounding box plus its anti-aliased edge (1 px, 2 px on letters 12 px or
taller).
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.text.boxes import TextBox

ASPECT = (0.3, 1.3)
FILL = (0.15, 0.85)
STROKE = 0.35
CONTRAST = 0.25
# Pixels of the band outside a region that decides its contrast (a letter's edge, past anti-aliasing).
BAND = 2


def find_glyphs(image: np.ndarray, *, level: float = 0.15, min_height: float = 0.012,
                max_height: float = 0.08) -> list[TextBox]:
    """Boxes of lone saturated letters in `image` (H, W) float32 in [0, 1], in its pixels.

    level: ink is at most `level` (dark) or at least 1 − `level` (light); min_height, max_height: a
    letter's height range as fractions of the image's long side (and at least 6 px: smaller shapes
    cannot be told from noise). Each box's score is the contrast of its band (in [0, 1]).
    """
    image = np.asarray(image, np.float32)
    long_side = max(image.shape)
    heights = (max(6.0, min_height * long_side), max_height * long_side)
    found = []
    for film in (image, 1 - image):
        found.extend(_dark_glyphs(film, level, heights))
    return sorted(found, key=lambda b: (b.y0, b.x0))


def _dark_glyphs(film: np.ndarray, level: float, heights: tuple[float, float]) -> list[TextBox]:
    """Letters drawn dark in `film` (H, W) in [0, 1]; `heights`: (min, max) letter height in pixels."""
    ink = (film <= level).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    height, width = film.shape
    kernel = np.ones((2 * BAND + 1, 2 * BAND + 1), np.uint8)
    out = []
    for index in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[index])
        if not heights[0] <= h <= heights[1] or not ASPECT[0] <= w / h <= ASPECT[1]:
            continue
        if not FILL[0] <= area / (w * h) <= FILL[1]:
            continue
        x0, y0, x1, y1 = max(0, x - BAND - 1), max(0, y - BAND - 1), min(width, x + w + BAND + 1), \
            min(height, y + h + BAND + 1)
        region = (labels[y0:y1, x0:x1] == index).astype(np.uint8)
        contours, _ = cv2.findContours(region, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        perimeter = sum(cv2.arcLength(c, True) for c in contours)
        if perimeter <= 0 or 2 * area / perimeter > STROKE * h:  # mean stroke width ≈ 2 A / P
            continue
        band = (cv2.dilate(region, kernel) > 0) & (ink[y0:y1, x0:x1] == 0)
        if not band.any():
            continue
        contrast = float(np.median(film[y0:y1, x0:x1][band])) - level
        if contrast >= CONTRAST:
            edge = 1 if h < 12 else 2  # the anti-aliased edge around the thresholded strokes
            out.append(TextBox(max(0, x - edge), max(0, y - edge), min(width, x + w + edge), min(height, y + h + edge),
                               round(min(contrast, 1.0), 4)))
    return out
