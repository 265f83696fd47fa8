"""Inpainting methods against known clean films, texture kept, no smear at the film's edge, masks grown over
whole markers, and the text-likeness guard on drawn text, gradients and real films. Helpers shared with
test_clean.py."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from datasets.images import read_image
from pipeline.clean import psnr
from pipeline.inpaint import METHODS, inpaint, is_text_like, overlay_mask, text_likeness, texture_ratio
from pipeline.text import TextBox, box_mask
from tests.pipeline import REAL_FILMS, burn

# Tuning films (index in the sorted folder, even sha256 parity of the name) and regions drawn on them by hand.
FILM_D_ON_BONE, FILM_SPINE, FILM_TUBES = 6, 3, 6
MARKER_D = (96, 97, 157, 158)  # the circled "D" of film 6 (the ring's outer edge, as a marker box)
VERTEBRA = (585, 150, 660, 200)  # thoracic spinous processes on film 3
TUBE = (570, 120, 650, 150)  # two tubes over the trachea on film 6
TUBE_CONNECTOR = (575, 20, 645, 110)  # the tube's connector above it


def textured_film(height: int = 256, width: int = 320, seed: int = 0) -> np.ndarray:
    """(H, W) float32 in [0.15, 0.85]: smooth shading, oblique rib-like bands and fine noise (sigma 0.03 before
    a 3×3 blur); no near-black or near-white pixel."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    film = (0.5 + 0.15 * np.sin(6 * x) * np.cos(4 * y) + 0.06 * np.sin(60 * (x + 0.6 * y))
            + rng.normal(0, 0.03, (height, width)))
    return np.clip(cv2.GaussianBlur(film.astype(np.float32), (3, 3), 0), 0.15, 0.85).astype(np.float32)


def circled_marker(film: np.ndarray, centre: tuple[int, int], radius: int, letter: str = "D") -> np.ndarray:
    """`film` with an Actualmed-style marker: a black disc (its edge a dark outline 5 px outside the ring), a
    white ring of 3 px at `radius`, a white italic letter inside. Returns a new (H, W) float32 array."""
    black, white = np.zeros(film.shape, np.uint8), np.zeros(film.shape, np.uint8)
    cv2.circle(black, centre, radius + 5, 255, thickness=cv2.FILLED, lineType=cv2.LINE_AA)
    cv2.circle(white, centre, radius, 255, thickness=3, lineType=cv2.LINE_AA)
    font = cv2.FONT_HERSHEY_SIMPLEX | cv2.FONT_ITALIC
    scale = radius / 22
    (w, h), _ = cv2.getTextSize(letter, font, scale, 3)
    cv2.putText(white, letter, (centre[0] - w // 2, centre[1] + h // 2), font, scale, 255, 3, cv2.LINE_AA)
    out = film * (1 - black / np.float32(255))
    return (out + (1 - out) * (white / np.float32(255))).astype(np.float32)


def marker_box(centre: tuple[int, int], radius: int) -> TextBox:
    """The box a marker finder gives: the white ring's outer edge (it cuts through the dark outline)."""
    reach = radius + 2
    return TextBox(centre[0] - reach, centre[1] - reach, centre[0] + reach + 1, centre[1] + reach + 1, 1.0)


def real_film(index: int) -> np.ndarray:
    if not REAL_FILMS.is_dir():
        pytest.skip(f"{REAL_FILMS}: real films not here")
    return read_image(REAL_FILMS / sorted(os.listdir(REAL_FILMS))[index])


def text_on_film(seed: int = 0) -> tuple[np.ndarray, np.ndarray, TextBox]:
    """(image, clean, box): "PORTABLE" burned into a textured film, and its tight box."""
    clean = textured_film(seed=seed)
    image, truth = burn(clean, "PORTABLE", 60, 100, 22)
    return image, clean, TextBox(truth.x0, truth.y0, truth.x1, truth.y1, 1.0)


def vertical_activity(image: np.ndarray, mask: np.ndarray, ring: int = 6) -> float:
    """Mean |vertical difference| inside `mask` over that in a band around it (a smear along columns: near 0)."""
    step = np.abs(np.diff(image, axis=0))
    inside = mask[1:] & mask[:-1]
    around = cv2.dilate(mask.astype(np.uint8), np.ones((2 * ring + 1, 2 * ring + 1), np.uint8)).astype(bool) & ~mask
    return float(step[inside].mean() / step[around[1:] & around[:-1]].mean())


@pytest.mark.parametrize("method", METHODS)
def test_every_method_fills_only_the_mask(method):
    image, _, box = text_on_film()
    mask = box_mask(image.shape, [box], 2)
    out = inpaint(image, mask, method)
    assert out.dtype == np.float32 and out.shape == image.shape and 0 <= out.min() and out.max() <= 1
    np.testing.assert_array_equal(out[~mask], image[~mask])
    assert np.abs(out[mask] - image[mask]).max() > 0.3  # the white text is gone


COPYING = ("texture", "patch")  # the fills that copy the film's own texture into the hole


@pytest.mark.parametrize("method", COPYING)
def test_copying_fills_keep_the_films_texture_where_smooth_fills_leave_a_flat_patch(method):
    for seed in range(3):
        image, clean, box = text_on_film(seed)
        mask = box_mask(image.shape, [box], 2)
        texture, telea, smooth = (inpaint(image, mask, name) for name in (method, "telea", "biharmonic"))
        assert 0.7 <= texture_ratio(texture, mask) <= 1.3, texture_ratio(texture, mask)
        assert texture_ratio(telea, mask) < 0.5 and texture_ratio(smooth, mask) < 0.5
        assert 0.9 <= texture_ratio(clean, mask) <= 1.1  # the measure itself: the clean film has its own texture
        # Copied texture is not the lost texture, so a smooth fill wins PSNR by up to 3 dB (noise counted
        # twice); the texture fill still beats the paper's Telea.
        assert psnr(texture, clean, mask) > psnr(telea, clean, mask) + 1
        assert psnr(texture, clean, mask) > psnr(smooth, clean, mask) - 3


@pytest.mark.parametrize("method", COPYING)
def test_text_at_the_film_edge_is_filled_without_a_smear(method):
    clean = textured_film(seed=4)
    height = clean.shape[0]
    image, truth = burn(clean, "12/03/2020", 100, height - 15, 13)
    box = TextBox(truth.x0, truth.y0, truth.x1, height, 1.0)  # the box runs to the bottom edge
    mask = box_mask(image.shape, [box], 2)
    texture, telea = inpaint(image, mask, method), inpaint(image, mask, "telea")
    assert vertical_activity(telea, mask) < 0.5  # Telea pulls the top row down the columns
    assert 0.7 <= vertical_activity(texture, mask) <= 1.3
    assert 0.7 <= texture_ratio(texture, mask) <= 1.3
    assert psnr(texture, clean, mask) > psnr(telea, clean, mask)


@pytest.mark.parametrize("method", COPYING)
def test_texture_is_never_copied_from_avoided_pixels(method):
    image, _, box = text_on_film(seed=1)
    other, kept = burn(image, "L", 200, 180, 24)  # a letter left in the image (laterality policy)
    mask = box_mask(image.shape, [box], 2)
    avoid = box_mask(image.shape, [TextBox(kept.x0, kept.y0, kept.x1, kept.y1, 1.0)], 2)
    out = inpaint(other, mask, method, avoid=avoid)
    assert out[mask].max() < 0.9  # no white stroke of the "L" copied in


def test_patch_fill_continues_structure_coarser_than_the_texture_fills_high_pass():
    """Bands of a 16-px period (far coarser than TEXTURE_SIGMA) crossing a 24-px hole: "patch" copies them
    from a window a whole number of periods away; "texture" smooths them over (its low part is biharmonic)."""
    rng = np.random.default_rng(0)
    x = np.arange(256, dtype=np.float32)
    clean = np.clip(0.5 + 0.15 * np.sin(2 * np.pi * x / 16)[None, :] + rng.normal(0, 0.01, (192, 256)), 0, 1)
    clean = clean.astype(np.float32)
    mask = np.zeros(clean.shape, bool)
    mask[84:108, 116:140] = True
    patch, texture = inpaint(clean, mask, "patch"), inpaint(clean, mask, "texture")
    assert psnr(patch, clean, mask) > 30  # the bands go on through the hole (noise 0.01: about 37 dB)
    assert psnr(patch, clean, mask) > psnr(texture, clean, mask) + 6


def test_inpaint_refuses_bad_arguments():
    image, _, box = text_on_film()
    with pytest.raises(ValueError, match="method must be one of"):
        inpaint(image, box_mask(image.shape, [box]), "smudge")
    with pytest.raises(ValueError, match="expected the image's"):
        inpaint(image, np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="whole image"):
        inpaint(image, np.ones(image.shape, bool))
    np.testing.assert_array_equal(inpaint(image, np.zeros(image.shape, bool)), image)


@pytest.mark.parametrize("box_kind", ["whole marker", "letter only"])
def test_mask_grows_over_the_whole_circled_marker(box_kind):
    film = textured_film(seed=2)
    centre, radius = (120, 100), 26
    marked = circled_marker(film, centre, radius)
    drawn = np.abs(marked - film) > 0.02  # every pixel the marker changed, its anti-aliased edge included
    box = marker_box(centre, radius) if box_kind == "whole marker" else TextBox(105, 82, 135, 118, 1.0)
    assert not box_mask(film.shape, [box], 2)[drawn].all()  # the box alone leaves part of the marker
    mask = overlay_mask(marked, [box], 2)
    assert mask[drawn].all()
    assert mask.sum() < 1.6 * drawn.sum()  # the marker and a margin, not the film around it


def test_mask_does_not_grow_into_dark_film_or_the_films_black_border():
    film = textured_film(seed=3)
    film[:, :40] = 0.01  # a black border (collimation) down the left side
    film[150:230, 200:300] *= 0.25  # a dark, soft-edged region of film
    for x0, y0 in ((44, 60), (180, 140)):  # a box beside the border; a box on the dark region's edge
        box = TextBox(x0, y0, x0 + 60, y0 + 20, 1.0)
        np.testing.assert_array_equal(overlay_mask(film, [box], 2), box_mask(film.shape, [box], 2))
    assert not overlay_mask(film, [TextBox(44, 60, 104, 80, 1.0)], 2, grow=False)[:, :40].any()


def test_drawn_text_and_markers_are_text_like_gradients_and_texture_are_not():
    image, _, box = text_on_film()
    assert is_text_like(image, box)
    marked = circled_marker(textured_film(seed=1), (120, 100), 26)
    assert is_text_like(marked, marker_box((120, 100), 26))
    y, x = np.mgrid[0:96, 0:256] / 256
    assert not is_text_like((0.2 + 0.5 * x + 0.2 * y).astype(np.float32), TextBox(20, 20, 220, 60, 1.0))
    assert not is_text_like(textured_film(seed=5), TextBox(60, 100, 180, 124, 1.0))  # bands and noise
    thin = text_likeness(image, TextBox(60, 100, 180, 106, 1.0))  # 6 px: too thin to judge, counts as text
    assert not thin.judged and thin.text_like


def test_on_real_films_the_marker_is_text_like_and_a_vertebra_and_tubes_are_not():
    marked, spine = real_film(FILM_D_ON_BONE), real_film(FILM_SPINE)
    assert is_text_like(marked, TextBox(*MARKER_D, 1.0))
    refused = text_likeness(spine, TextBox(*VERTEBRA, 1.0))
    assert not refused.text_like and "not text-like" in refused.reason()
    tubes = real_film(FILM_TUBES)
    assert not is_text_like(tubes, TextBox(*TUBE, 1.0))
    assert not is_text_like(tubes, TextBox(*TUBE_CONNECTOR, 1.0))


@pytest.mark.parametrize("method", COPYING)
def test_a_real_circled_marker_leaves_no_ring(method):
    film = real_film(FILM_D_ON_BONE)
    box = TextBox(*MARKER_D, 1.0)
    mask = overlay_mask(film, [box], 2)
    out = inpaint(film, mask, method)
    x0, y0, x1, y1 = MARKER_D
    region = out[y0 - 8 : y1 + 8, x0 - 8 : x1 + 8]
    around = film[y0 - 30 : y1 + 30, x0 - 30 : x1 + 30]
    # No black disc, white ring or dark outline is left: the region stays within the film's range around it.
    assert np.percentile(around, 1) - 0.05 <= region.min() and region.max() <= np.percentile(around, 99) + 0.05


def test_patch_fill_falls_back_to_the_smooth_fill_where_no_window_fits():
    film = textured_film(40, 40, seed=6)
    mask = np.zeros(film.shape, bool)
    mask[5:35, 5:35] = True  # no 38×38 source window fits beside this hole in a 40×40 film
    np.testing.assert_allclose(inpaint(film, mask, "patch"), inpaint(film, mask, "biharmonic"), atol=1e-6)
