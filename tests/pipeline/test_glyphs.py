"""The lone-letter finder on drawn letters, on real films with a letter burned in, and on films without text."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from datasets.images import read_image
from pipeline.text import TextBox, TextConfig, coverage
from pipeline.text.glyphs import find_glyphs
from pipeline.text.postprocess import finish_boxes, with_glyphs
from tests.pipeline import ANNOTATIONS, REAL_FILMS, burn
from tests.pipeline.test_markers import textured_film


def tight(box) -> tuple[int, int, int, int]:
    return (box.x0, box.y0, box.x1, box.y1)


@pytest.mark.parametrize("letter", ["L", "R", "D"])
@pytest.mark.parametrize("value", [0.0, 1.0])
@pytest.mark.parametrize("font", [cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_TRIPLEX])
def test_a_drawn_letter_is_found_tightly(letter, value, font):
    film = textured_film()
    image, truth = burn(film, letter, 700, 500, 36, value=value, font=font)
    boxes = find_glyphs(image)
    assert len(boxes) == 1, boxes
    assert coverage(tight(truth), [tight(b) for b in boxes]) == 1.0
    assert boxes[0].area <= (truth.x1 - truth.x0 + 6) * (truth.y1 - truth.y0 + 6)  # the letter, not around it


def test_a_letter_on_a_label_plate_is_found_and_grown_to_the_plate():
    film = textured_film()
    film[480:560, 680:740] = 0.05  # a dark plate with a light "L" (the synthetic Cohen habit)
    image, _ = burn(film, "L", 695, 500, 36, value=0.97)
    boxes = finish_boxes([], image, TextConfig(markers=False))
    assert [tight(b) for b in boxes] == [(680, 480, 740, 560)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nothing_is_found_on_a_film_without_text(seed):
    assert find_glyphs(textured_film(seed=seed)) == []


def test_blobs_wires_and_large_shapes_are_not_letters():
    film = textured_film()
    cv2.circle(film, (200, 200), 18, 1.0, thickness=cv2.FILLED)  # a round metal blob (an ECG snap)
    cv2.line(film, (400, 100), (400, 400), 0.0, thickness=3)  # a wire
    cv2.rectangle(film, (600, 600), (640, 640), 1.0, thickness=cv2.FILLED)  # a filled square
    huge = np.zeros(film.shape, np.uint8)
    cv2.putText(huge, "L", (100, 900), cv2.FONT_HERSHEY_SIMPLEX, 8, 255, 30)  # a letter 22 % of the film high
    film[huge > 0] = 1.0
    assert find_glyphs(film) == []


def test_saturated_anatomy_that_fades_out_is_not_a_letter():
    film = textured_film()
    y, x = np.mgrid[0:1024, 0:1024]
    # An L-shaped saturated bone edge that fades gradually into the film around it.
    bone = ((np.abs(x - 300) < 6) & (np.abs(y - 320) < 20)) | ((np.abs(y - 338) < 5) & (x > 300) & (x < 320))
    soft = cv2.GaussianBlur(bone.astype(np.float32), (0, 0), 6)
    film = np.clip(film + 2.5 * soft, 0, 1).astype(np.float32)
    assert find_glyphs(film) == []


def test_a_loose_craft_box_holding_one_letter_takes_the_letters_box():
    letter = TextBox(234, 14, 246, 26, 0.6)
    loose = TextBox(232, 12, 254, 27, 0.9)  # CRAFT's box of that letter, too wide
    word = TextBox(100, 10, 200, 30, 0.95)
    first, second = TextBox(110, 12, 125, 28, 0.6), TextBox(130, 12, 145, 28, 0.6)  # two letters of the word
    alone = TextBox(500, 500, 515, 520, 0.5)  # a letter CRAFT missed
    assert with_glyphs([loose, word], [letter, first, second, alone]) == [letter, word, alone]


def test_the_lone_letter_finder_is_part_of_detection_unless_switched_off():
    image, _ = burn(textured_film(), "L", 700, 500, 36, value=0.0)
    assert len(finish_boxes([], image, TextConfig())) == 1
    assert finish_boxes([], image, TextConfig(glyphs=False)) == []
    assert finish_boxes([], image, TextConfig.paper()) == []


def real_items() -> dict[str, list[tuple[int, int, int, int]]]:
    items: dict[str, list[tuple[int, int, int, int]]] = {}
    with (ANNOTATIONS / "actualmed_boxes.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            items.setdefault(row["image"], []).append(tuple(int(row[k]) for k in ("x0", "y0", "x1", "y1")))
    return items


@pytest.mark.skipif(not REAL_FILMS.is_dir(), reason="the real Actualmed films are not beside the checkout")
def test_on_real_films_letters_are_found_only_on_burned_in_text():
    """Every glyph on 12 real films lies on an annotated item; a dark "L" burned into each, where the film is
    brightest (burned-in text is drawn to contrast with the film), is found."""
    items = real_items()
    for name in sorted(path.name for path in REAL_FILMS.glob("*.png"))[:12]:
        image = read_image(REAL_FILMS / name)
        for box in find_glyphs(image):
            assert coverage(tight(box), items.get(name, [])) >= 0.5, (name, box)
        height, width = image.shape
        letter = round(0.03 * max(height, width))
        smooth = cv2.blur(image, (2 * letter, 2 * letter))[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4]
        y, x = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
        burned, truth = burn(image, "L", x + width // 4 - letter // 3, y + height // 4 - letter // 2, letter,
                             value=0.0, font=cv2.FONT_HERSHEY_TRIPLEX)
        assert coverage(tight(truth), [tight(b) for b in find_glyphs(burned)]) == 1.0, name
