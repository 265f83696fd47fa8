"""Filling the pixels of removed text: inpainting methods, masks grown over whole markers, a text-likeness guard.

Images are (H, W) float32 in [0, 1] (0 = black); masks are (H, W) bool, True where pixels are replaced;
boxes are `pipeline.text.TextBox`es in the image's own pixels; every length is in pixels of that image.

`inpaint(image, mask, method)` fills the mask:

- "texture" (the default of `pipeline.clean.CleanConfig`): the image is split into a low-pass part (a
  Gaussian of `TEXTURE_SIGMA` px, normalised over the unmasked pixels) and the high-pass rest. The low
  part is filled by a biharmonic surface (`skimage.restoration.inpaint_biharmonic`; on a coarser grid
  for large holes); the high part is copied from the unmasked region nearby whose high-pass best matches
  the hole's surrounding ring (sum of squared differences over a `TEXTURE_RING`-px ring, among regions
  whose high-pass standard deviation is within 25 % of the ring's). Bone and noise texture continue into
  the hole, where the other methods leave a smooth patch; a hole at the film's edge takes its texture from
  along the edge, so nothing is smeared from one side.
- "patch": the unmasked window nearby whose pixels best match the hole's surrounding ring (the same search
  as "texture", on the image itself) is copied whole, and the difference between the image and the copy on
  the ring, low-passed (`TEXTURE_SIGMA`), is carried into the hole by a biharmonic surface, so the copy meets
  its surroundings without a seam. Structure of every scale continues into the hole (rib edges and
  gradients as well as grain), where "texture" keeps only the finest (scales under `TEXTURE_SIGMA`) on a
  smooth surface: a small CNN told "texture"-filled patches from untouched ones, and told "patch"-filled
  ones hardly better than the text-free originals themselves (docs/probes.md).
- "telea": OpenCV's Telea (fast marching), radius `radius` (the paper's setting: 10).
- "ns": OpenCV's Navier–Stokes.
- "biharmonic": `skimage.restoration.inpaint_biharmonic` of the image itself (smooth).
- "black": 0 (for comparison: a black box is the next shortcut).

`overlay_mask(image, boxes, dilate)` rasterises boxes and grows each over the near-black and near-white
connected components it touches (the ring, disc and letter of a circled marker, the shadow of a letter)
when they lie wholly near the box, so no part of a marker is left on the mask's border for the fill to
pull in. `is_text_like(image, box)` tells burned-in text (thin strokes of high contrast) from anatomy,
tubes and smooth gradients, so a box grown over the film is not inpainted blindly. `texture_ratio`
measures how much texture a fill kept (1.0: as much as around it; a smooth fill: near 0).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.restoration import inpaint_biharmonic

from pipeline.text import TextBox, box_mask

LOG = logging.getLogger(__name__)

METHODS = ("texture", "patch", "telea", "ns", "biharmonic", "black")
# "texture": Gaussian sigma (px) of the low/high split ("patch": of the seam's low-pass); both: the width (px) of
# the ring matched around a hole.
TEXTURE_SIGMA = 2.0
TEXTURE_RING = 4
# Candidate texture sources lie within this many hole sizes of the hole (at least _MIN_SEARCH px).
_SEARCH = 3.0
_MIN_SEARCH = 32
# A source's high-pass standard deviation must be within this factor of the ring's (else the closest is used).
_STD_FACTOR = 1.25
# Largest hole (pixels) whose low-pass is solved at full resolution; larger ones on a coarser grid.
_MAX_UNKNOWNS = 20_000

# Overlay components: connected pixels at most DARK_EXTENT (at least BRIGHT_EXTENT) that include a pixel at most
# DARK (at least BRIGHT), searched up to _REACH times the box's short side from it, each added with a _HALO-px
# margin (its anti-aliased edge); the grown region may be at most _MAX_GROWTH times the box's area (else the box).
DARK, DARK_EXTENT, BRIGHT, BRIGHT_EXTENT = 0.06, 0.2, 0.94, 0.7
_REACH = 2.0
_MAX_GROWTH = 8.0
_TOUCH = 2  # px: a component within this distance of the mask touches it
_HALO = 2
# An overlay's outline is sharp: the mean gradient (intensity per px) along a component's outer boundary.
_OUTLINE = 0.1

# Text-likeness: the 99th percentile of the white/black top-hat (stroke contrast, intensity units) and the
# share of pixels whose gradient exceeds _SHARP per pixel (sharp-edge density). Boxes thinner than
# MIN_JUDGED px cannot be judged (text on small films is a few pixels high) and count as text.
STROKE_CONTRAST = 0.12
EDGE_DENSITY = 0.05
_SHARP = 0.05
MIN_JUDGED = 8


# ---- filling ----------------------------------------------------------------------------------------


def inpaint(image: np.ndarray, mask: np.ndarray, method: str = "patch", *, radius: float = 10.0,
            avoid: np.ndarray | None = None) -> np.ndarray:
    """`image` (H, W) float32 in [0, 1] with the pixels of `mask` (H, W) bool filled by `method` (see module doc).

    radius: neighbourhood of "telea" and "ns" in pixels. avoid: (H, W) bool pixels that "texture" and "patch"
    must not copy from (text left in the image). Returns a new (H, W) float32 array in [0, 1]; pixels outside the mask
    are returned unchanged.
    """
    image = np.asarray(image, np.float32)
    mask = np.asarray(mask, bool)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if mask.shape != image.shape:
        raise ValueError(f"mask has shape {mask.shape}: expected the image's {image.shape}")
    if not mask.any():
        return image.copy()
    if mask.all():
        raise ValueError("the mask covers the whole image: nothing to inpaint from")
    if method == "black":
        filled = np.zeros_like(image)
    elif method in ("telea", "ns"):
        filled = _opencv(image, mask, radius, cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS)
    elif method == "biharmonic":
        filled = _per_hole(image, mask, _biharmonic)
    else:
        forbidden = mask if avoid is None else mask | np.asarray(avoid, bool)
        filled = _texture(image, mask, forbidden) if method == "texture" else _patch(image, mask, forbidden)
    return np.where(mask, np.clip(filled, 0, 1), image).astype(np.float32)


def _opencv(image: np.ndarray, mask: np.ndarray, radius: float, flag: int) -> np.ndarray:
    # On the 0–255 scale (float32 keeps 16-bit precision): OpenCV's Telea on float32 images in [0, 1] returns
    # values far outside the data (errors > 1 on a smooth ramp); on 0–255 it is right.
    return cv2.inpaint(image * np.float32(255), mask.astype(np.uint8), radius, flag) / np.float32(255)


def _holes(mask: np.ndarray) -> list[np.ndarray]:
    """The 8-connected components of `mask`, each as an (H, W) bool array."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return [labels == label for label in range(1, count)]


def _window(hole: np.ndarray, margin: int) -> tuple[slice, slice]:
    """The bounding box of `hole` grown by `margin` px, clipped to the image, as (rows, cols) slices."""
    rows, cols = np.nonzero(hole)
    height, width = hole.shape
    return (slice(max(0, rows.min() - margin), min(height, rows.max() + 1 + margin)),
            slice(max(0, cols.min() - margin), min(width, cols.max() + 1 + margin)))


def _per_hole(values: np.ndarray, mask: np.ndarray, fill) -> np.ndarray:
    """`values` with each hole of `mask` filled by `fill(window values, window mask)` on a window around it."""
    out = values.astype(np.float32)
    for hole in _holes(mask):
        window = _window(hole, 4)
        filled = fill(values[window], mask[window])
        out[window][hole[window]] = filled[hole[window]]
    return out


def _biharmonic(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Biharmonic fill of `mask` in `values` (h, w); holes above _MAX_UNKNOWNS px are solved on a coarser grid."""
    factor = math.ceil(math.sqrt(mask.sum() / _MAX_UNKNOWNS))
    if factor <= 1:
        return inpaint_biharmonic(values.astype(np.float64), mask)
    height, width = mask.shape
    size = (max(1, width // factor), max(1, height // factor))
    coarse_mask = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
    coarse = inpaint_biharmonic(cv2.resize(values.astype(np.float64), size, interpolation=cv2.INTER_AREA),
                                coarse_mask)
    upsampled = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
    # Blend from the nearest known value at the hole's border to the coarse solution `factor` px inside.
    distance, labels = cv2.distanceTransformWithLabels(mask.astype(np.uint8), cv2.DIST_L2, 5,
                                                       labelType=cv2.DIST_LABEL_PIXEL)
    known = ~mask
    nearest_value = np.zeros(labels.max() + 1)
    nearest_value[labels[known]] = values[known]
    weight = np.clip(distance / (2 * factor), 0, 1)
    return np.where(mask, (1 - weight) * nearest_value[labels] + weight * upsampled, values)


def low_pass(image: np.ndarray, known: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass (sigma px) of `image` (H, W) normalised over the `known` pixels (H, W) bool.

    Pixels farther than about 3 sigma from any known pixel get 0.
    """
    weights = known.astype(np.float32)
    numerator = cv2.GaussianBlur(image * weights, (0, 0), sigma)
    denominator = cv2.GaussianBlur(weights, (0, 0), sigma)
    return np.where(denominator > 1e-3, numerator / np.maximum(denominator, 1e-3), 0).astype(np.float32)


def _texture(image: np.ndarray, mask: np.ndarray, forbidden: np.ndarray) -> np.ndarray:
    """The "texture" fill of every hole of `mask`; texture is never copied from `forbidden` pixels."""
    low = low_pass(image, ~mask, TEXTURE_SIGMA)
    high = np.where(forbidden, 0, image - low).astype(np.float32)
    smooth = _per_hole(low, mask, _biharmonic)
    texture = np.zeros_like(image)
    for hole in _holes(mask):
        source = _texture_source(high, forbidden, hole)
        if source is None:
            LOG.debug("no texture source for a hole of %d px: smooth fill", hole.sum())
            continue
        target, (dy, dx) = source
        rows, cols = target
        patch = high[rows.start + dy : rows.stop + dy, cols.start + dx : cols.stop + dx]
        texture[target] = np.where(hole[target], patch, texture[target])
    return smooth + texture


def _patch(image: np.ndarray, mask: np.ndarray, forbidden: np.ndarray) -> np.ndarray:
    """The "patch" fill of every hole of `mask`; nothing is copied from `forbidden` pixels. A hole with no
    source window gets the biharmonic fill."""
    known = np.where(forbidden, 0, image).astype(np.float32)
    out, unmatched = image.astype(np.float32), np.zeros_like(mask)
    for hole in _holes(mask):
        source = _texture_source(known, forbidden, hole)
        if source is None:
            LOG.debug("no source window for a hole of %d px: smooth fill", hole.sum())
            unmatched |= hole
            continue
        target, (dy, dx) = source
        rows, cols = target
        copy = image[rows.start + dy : rows.stop + dy, cols.start + dx : cols.stop + dx]
        inside, unknown = hole[target], forbidden[target]
        # Only the seam's low frequencies are carried in: a biharmonic surface through noisy values overshoots.
        seam = low_pass(np.where(unknown, 0, image[target] - copy).astype(np.float32), ~unknown, TEXTURE_SIGMA)
        out[target] = np.where(inside, copy + _biharmonic(seam, unknown), out[target])
    return _per_hole(out, unmatched, _biharmonic) if unmatched.any() else out


def _texture_source(high: np.ndarray, forbidden: np.ndarray, hole: np.ndarray
                    ) -> tuple[tuple[slice, slice], tuple[int, int]] | None:
    """The hole's window (its bounding box plus the ring) and the offset (dy, dx) of the best source window:
    the one whose `high` (the high-pass for "texture", the image for "patch") best matches the ring's.

    Sources lie wholly inside the image, overlap no forbidden pixel and have a high-pass standard deviation
    within _STD_FACTOR of the ring's (if any does; else the best match of all). None when no window fits.
    """
    target = _window(hole, TEXTURE_RING)
    rows, cols = target
    height, width = rows.stop - rows.start, cols.stop - cols.start
    reach = max(_MIN_SEARCH, round(_SEARCH * max(height, width)))
    area = (slice(max(0, rows.start - reach), min(high.shape[0], rows.stop + reach)),
            slice(max(0, cols.start - reach), min(high.shape[1], cols.stop + reach)))
    search = high[area]
    if search.shape[0] <= height or search.shape[1] <= width:
        return None
    ring = (~forbidden[target]).astype(np.float32)
    if not ring.any():
        return None
    score = cv2.matchTemplate(search, high[target], cv2.TM_SQDIFF, mask=ring)
    valid = _window_sums(forbidden[area].astype(np.float32), height, width, score.shape) < 0.5
    spread = np.sqrt(np.maximum(_window_sums(search.astype(np.float64) ** 2, height, width, score.shape)
                                / (height * width)
                                - (_window_sums(search.astype(np.float64), height, width, score.shape)
                                   / (height * width)) ** 2, 0))
    ring_std = float(high[target][ring > 0].std())
    similar = valid & (np.abs(np.log(np.maximum(spread, 1e-9) / max(ring_std, 1e-9))) <= math.log(_STD_FACTOR))
    allowed = similar if similar.any() else valid
    if not allowed.any():
        return None
    best = np.unravel_index(np.argmin(np.where(allowed, score, np.inf)), score.shape)
    return target, (int(area[0].start + best[0] - rows.start), int(area[1].start + best[1] - cols.start))


def _window_sums(values: np.ndarray, height: int, width: int, shape: tuple[int, int]) -> np.ndarray:
    """Sum of `values` over every height×width window, indexed by its top-left corner, cut to `shape`."""
    integral = cv2.integral(values)
    rows, cols = shape
    return (integral[height : height + rows, width : width + cols] - integral[:rows, width : width + cols]
            - integral[height : height + rows, :cols] + integral[:rows, :cols])


def texture_ratio(image: np.ndarray, mask: np.ndarray, *, sigma: float = TEXTURE_SIGMA, ring: int = 6) -> float:
    """High-pass standard deviation inside `mask` over that in a `ring`-px band around it (image (H, W)).

    The high pass is the image minus its Gaussian (sigma px); the inside excludes the mask's outermost pixel.
    1.0: as much texture as around the hole; a smooth fill gives near 0. NaN for an empty mask or flat ring.
    """
    image, mask = np.asarray(image, np.float32), np.asarray(mask, bool)
    high = image - cv2.GaussianBlur(image, (0, 0), sigma)
    inside = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    around = _dilate(mask, ring) & ~mask
    if not inside.any() or not around.any():
        return float("nan")
    outside = float(high[around].std())
    return float(high[inside].std()) / outside if outside > 0 else float("nan")


# ---- the mask ------------------------------------------------------------------------------------------


def overlay_mask(image: np.ndarray, boxes: Iterable[TextBox], dilate: int = 0, *, grow: bool = True) -> np.ndarray:
    """(H, W) bool mask of `boxes` on `image` (H, W) in [0, 1], grown by `dilate` px on every side.

    With `grow`, each box first takes in the near-black and near-white connected components that touch it
    (transitively: the letter, the disc around it, the ring around that, a dark outline; a component is
    the pixels <= DARK_EXTENT or >= BRIGHT_EXTENT connected to a pixel <= DARK or >= BRIGHT), each with a
    _HALO-px margin, as long as each lies wholly within _REACH short sides of the box and away from the
    film's edge (a component that runs on, such as a black background or a white limb, is not an overlay),
    its outline is sharp (mean gradient along it at least _OUTLINE per px) and the whole stays under
    _MAX_GROWTH times the box's area.
    """
    image = np.asarray(image, np.float32)
    boxes = list(boxes)
    mask = box_mask(image.shape, boxes)
    if grow:
        for box in boxes:
            _grow_over_overlay(image, box, mask)
    return _dilate(mask, dilate)


def _grow_over_overlay(image: np.ndarray, box: TextBox, mask: np.ndarray) -> None:
    """Add to `mask` (in place) the overlay components around `box`, as `overlay_mask` describes."""
    reach = max(8, round(_REACH * min(box.width, box.height)))
    height, width = image.shape
    y0, y1 = max(0, box.y0 - reach), min(height, box.y1 + reach)
    x0, x1 = max(0, box.x0 - reach), min(width, box.x1 + reach)
    crop = image[y0:y1, x0:x1]
    region = np.zeros(crop.shape, bool)
    region[max(0, box.y0 - y0) : box.y1 - y0, max(0, box.x0 - x0) : box.x1 - x0] = True
    seed_area = max(int(region.sum()), 1)
    gradient = _gradient(crop)
    overlays = [_overlay_labels(extent, core, gradient) for extent, core in ((crop <= DARK_EXTENT, crop <= DARK),
                                                                          (crop >= BRIGHT_EXTENT, crop >= BRIGHT))]
    for _ in range(4):  # each round takes in the components touching what the previous rounds took
        near = _dilate(region, _TOUCH)
        grown = region.copy()
        for labels, allowed in overlays:
            touching = np.unique(labels[near & np.isin(labels, allowed)])
            grown |= _dilate(np.isin(labels, touching), _HALO)
        if (grown == region).all():
            break
        region = grown
    if region.sum() > _MAX_GROWTH * seed_area:
        LOG.debug("overlay around box %s would grow to %d px: box only", box, region.sum())
        return
    mask[y0:y1, x0:x1] |= region


def _overlay_labels(extent: np.ndarray, core: np.ndarray, gradient: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 8-connected component labels of `extent` (h, w) bool, and the labels that qualify as overlays: they
    hold a `core` pixel, do not reach the window's edge (a component that does runs on beyond it, or is the
    film's own border) and their outline is sharp (mean `gradient` along it at least _OUTLINE)."""
    count, labels = cv2.connectedComponents(extent.astype(np.uint8), connectivity=8)
    # Outline pixels (just outside a component) take the label next to them: components never touch.
    beside = cv2.dilate(labels.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.int32)
    outline = ~extent & (beside > 0)
    length = np.bincount(beside[outline], minlength=count)
    sharpness = np.bincount(beside[outline], weights=gradient[outline], minlength=count) / np.maximum(length, 1)
    cored = np.zeros(count, bool)
    cored[labels[core]] = True
    cored[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = False
    cored[0] = False
    return labels, np.flatnonzero(cored & (sharpness >= _OUTLINE))


def _gradient(image: np.ndarray) -> np.ndarray:
    """Gradient magnitude of `image` (h, w) float32 in intensity units per pixel (3×3 Sobel / 8)."""
    return np.hypot(cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3)) / 8


def _dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """`mask` grown by `pixels` px in every direction (a square: a box stays a box)."""
    if pixels <= 0:
        return mask.copy()
    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


# ---- the guard ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextLikeness:
    """What `text_likeness` measured in a box: stroke contrast (intensity units, 99th percentile of the white
    and black top-hat at half the box's short side) and sharp-edge density (share of pixels whose gradient
    exceeds _SHARP per pixel); `judged` is False for boxes too thin to judge (they count as text)."""

    stroke_contrast: float
    edge_density: float
    judged: bool = True

    @property
    def text_like(self) -> bool:
        return not self.judged or (self.stroke_contrast >= STROKE_CONTRAST and self.edge_density >= EDGE_DENSITY)

    def reason(self) -> str:
        """Why a box was refused, in words with the measured values."""
        return (f"not text-like: stroke contrast {self.stroke_contrast:.3f} (text >= {STROKE_CONTRAST}), "
                f"sharp-edge density {self.edge_density:.3f} (text >= {EDGE_DENSITY})")


def text_likeness(image: np.ndarray, box: TextBox, pad: int = 2) -> TextLikeness:
    """Measure the content of `box` (grown by `pad` px) on `image` (H, W) in [0, 1]; see `is_text_like`."""
    image = np.asarray(image, np.float32)
    height, width = image.shape
    crop = image[max(0, box.y0 - pad) : min(height, box.y1 + pad), max(0, box.x0 - pad) : min(width, box.x1 + pad)]
    short = min(box.width, box.height)
    if short < MIN_JUDGED or crop.size == 0:
        return TextLikeness(0.0, 0.0, judged=False)
    size = max(3, round(0.5 * short) | 1)
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    padded = cv2.copyMakeBorder(crop, size, size, size, size, cv2.BORDER_REPLICATE)  # borders fake no strokes
    inner = (slice(size, -size), slice(size, -size))
    strokes = np.maximum(cv2.morphologyEx(padded, cv2.MORPH_TOPHAT, element)[inner],
                         cv2.morphologyEx(padded, cv2.MORPH_BLACKHAT, element)[inner])
    return TextLikeness(float(np.percentile(strokes, 99)), float((_gradient(crop) > _SHARP).mean()))


def is_text_like(image: np.ndarray, box: TextBox) -> bool:
    """True if `box` on `image` (H, W) float in [0, 1] holds burned-in text (or a marker), False for film.

    Burned-in text is thin strokes of high contrast, near-saturated or on a near-uniform plate: a stroke
    contrast (99th percentile of the white/black top-hat) of at least STROKE_CONTRAST and a sharp-edge
    density of at least EDGE_DENSITY. Anatomy, tubes and gradients are smooth at the pixel scale and fail
    both. Boxes thinner than MIN_JUDGED px count as text (too few pixels to tell).
    """
    return text_likeness(image, box).text_like
