"""The four pictures of a film a source probe is trained on, and the lung-field estimate one of them needs.

    whole         the film as stored
    text_only     the detected text boxes kept, everything else replaced by the iGOS++ blur baseline (the
                  heavy Gaussian blur `igos` composes its masks over, docs/igos.md §5.2): only the text, its
                  surroundings' low frequencies and the film's overall grey are left
    lungs_masked  the lung fields replaced by the mean grey of the rest of the film: borders, corners,
                  markers, shoulders and the mediastinum are left (the lung fields: the generator's mask
                  where known, else `lung_field_mask`)
    cleaned       the film's COVIDx++ copy, as stored

Every view is composed at a working size (the film resized to work_size × work_size, boxes and lung
masks scaled with it) and then resized to the probe's input size, so a 3000-px film costs no more than a
256-px one. Resampling is that of pipeline.inputs.load_resized (antialiased bilinear).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from datasets.errors import DatasetError
from datasets.images import read_image
from igos import blur_baseline
from pipeline.probes.films import ProbeFilm

VIEWS = ("whole", "text_only", "lungs_masked", "cleaned")
# Position prior of the lung fields (fractions of the side): the search window of `lung_field_mask` and the
# two ellipses it falls back to when the film shows no dark, enclosed region there.
LUNG_WINDOW = (0.06, 0.94, 0.06, 0.92)  # x0, x1, y0, y1
PRIOR_LUNGS = (((0.3, 0.45), (0.15, 0.27)), ((0.7, 0.45), (0.15, 0.27)))  # ((cx, cy), (rx, ry)) per lung
MIN_LUNG_AREA = 0.02  # a dark component smaller than this share of the film is not a lung field


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W) float32 → (size, size), antialiased bilinear (pipeline.inputs.load_resized's resampling)."""
    if image.shape == (size, size):
        return image.astype(np.float32, copy=False)
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    out = nn.functional.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out[0, 0].clamp(0, 1).numpy()


def blur(image: np.ndarray) -> np.ndarray:
    """The iGOS++ blur baseline of one (H, W) image (igos' heavy Gaussian blur for that size), float32."""
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return blur_baseline(tensor)[0, 0].numpy()


def boxes_mask(shape: tuple[int, int], boxes: Sequence[tuple[int, int, int, int]],
               scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """(H, W) bool, True inside the boxes (x0, y0, x1, y1), scaled by (sx, sy) and rounded outwards."""
    height, width = shape
    mask = np.zeros(shape, bool)
    sx, sy = scale
    for x0, y0, x1, y1 in boxes:
        left, top = max(0, int(np.floor(x0 * sx))), max(0, int(np.floor(y0 * sy)))
        right, bottom = min(width, int(np.ceil(x1 * sx))), min(height, int(np.ceil(y1 * sy)))
        if right > left and bottom > top:
            mask[top:bottom, left:right] = True
    return mask


def text_only(image: np.ndarray, text: np.ndarray) -> np.ndarray:
    """`image` (H, W) where `text` (H, W) bool, its blur baseline elsewhere."""
    return np.where(text, image, blur(image)).astype(np.float32)


def lungs_masked(image: np.ndarray, lungs: np.ndarray) -> np.ndarray:
    """`image` (H, W) with the `lungs` (H, W) bool pixels set to the mean of the others."""
    fill = float(image[~lungs].mean()) if (~lungs).any() else 0.5
    return np.where(lungs, np.float32(fill), image).astype(np.float32)


def prior_lungs(shape: tuple[int, int]) -> np.ndarray:
    """The position prior: two ellipses (PRIOR_LUNGS) in an (H, W) bool mask."""
    height, width = shape
    mask = np.zeros(shape, np.uint8)
    for (cx, cy), (rx, ry) in PRIOR_LUNGS:
        cv2.ellipse(mask, (round(cx * width), round(cy * height)), (round(rx * width), round(ry * height)), 0, 0, 360,
                    1, -1)
    return mask.astype(bool)


def lung_field_mask(image: np.ndarray) -> np.ndarray:
    """A rough lung-field mask (H, W) bool of a frontal film (H, W) in [0, 1], from intensity and position.

    The lungs are the dark (air-filled) regions enclosed by the brighter body: the film is smoothed, split
    into dark and bright by Otsu's threshold over the central window (LUNG_WINDOW), dark components that
    touch the film's edge (air outside the body) or lie mostly outside the window are dropped, and the two
    largest left (each at least MIN_LUNG_AREA of the film), holes closed. A film where none is found
    (inverted, cropped, very dense) gets the position prior (`prior_lungs`). Enough to tell lung content from
    borders, corners and markers; not a segmentation.
    """
    height, width = image.shape
    side = max(height, width)
    smooth = cv2.GaussianBlur(np.asarray(image, np.float32), (0, 0), max(1.0, 0.012 * side))
    x0, x1, y0, y1 = (round(f * n) for f, n in zip(LUNG_WINDOW, (width, width, height, height), strict=True))
    window = np.zeros((height, width), bool)
    window[y0:y1, x0:x1] = True
    pixels = np.clip(smooth[window] * 255, 0, 255).astype(np.uint8)
    threshold, _ = cv2.threshold(pixels, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark = (smooth * 255 <= threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=4)
    candidates = []
    for index in range(1, count):
        left, top, w, h, area = stats[index]
        touches_edge = left == 0 or top == 0 or left + w == width or top + h == height
        component = labels == index
        inside = (component & window).sum() / area
        if not touches_edge and inside >= 0.8 and area >= MIN_LUNG_AREA * height * width:
            candidates.append((int(area), index))
    if not candidates:
        return prior_lungs((height, width))
    chosen = [index for _, index in sorted(candidates, reverse=True)[:2]]
    mask = np.isin(labels, chosen).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(3, side // 32) | 1,) * 2)
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel).astype(bool)


def render_view(film: ProbeFilm, view: str, size: int, work_size: int = 256) -> np.ndarray:
    """The film's `view` (VIEWS) as (size, size) float32 in [0, 1].

    Raises datasets.errors.ImageReadError (naming the file) for an unreadable film, DatasetError naming the
    film for a lung mask of another shape than the film, or for the cleaned view of a film without a copy.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    if view == "cleaned":
        if film.cleaned is None:
            raise DatasetError(film.path, "has no COVIDx++ copy: the cleaned view needs ProbeFilm.cleaned")
        return resize(read_image(film.cleaned), size)
    image = read_image(film.path)
    if view == "whole":
        return resize(image, size)
    height, width = image.shape
    work = resize(image, work_size)
    if view == "text_only":
        composed = text_only(work, boxes_mask(work.shape, film.boxes, (work_size / width, work_size / height)))
    else:
        if film.lungs is not None and film.lungs.shape != image.shape:
            raise DatasetError(film.path, f"lung mask has shape {film.lungs.shape}: expected the film's "
                                          f"{image.shape}")
        lungs = (lung_field_mask(work) if film.lungs is None
                 else resize(film.lungs.astype(np.float32), work_size) >= 0.5)
        composed = lungs_masked(work, lungs)
    return resize(composed, size)


def render_views(films: Sequence[ProbeFilm], view: str, size: int, work_size: int = 256) -> torch.Tensor:
    """`render_view` of each film stacked: (n, size, size) float32."""
    if not films:
        return torch.empty((0, size, size))
    return torch.from_numpy(np.stack([render_view(film, view, size, work_size) for film in films]))
