"""The circled-marker finder on drawn markers, on a real film, and on films without markers."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from datasets.images import read_image
from pipeline.text import TextBox, TextConfig, coverage
from pipeline.text.markers import find_markers
from pipeline.text.postprocess import with_markers
from tests.pipeline import ANNOTATIONS, REAL_FILMS


def textured_film(size: int = 1024, seed: int = 0) -> np.ndarray:
    """(size, size) float32 in [0.2, 0.8]: smooth anatomy-like shading plus fine noise, no saturated pixel."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    film = 0.5 + 0.2 * np.sin(6 * x) * np.cos(4 * y) + rng.normal(0, 0.03, (size, size))
    return np.clip(cv2.GaussianBlur(film.astype(np.float32), (3, 3), 0), 0.2, 0.8).astype(np.float32)


def draw_marker(film: np.ndarray, centre: tuple[int, int], radius: int, letter: str, style: str) -> None:
    """A laterality marker in place: "disc" (black disc, white ring and letter) or "ring" (white ring and letter)."""
    black, white = np.zeros(film.shape, np.uint8), np.zeros(film.shape, np.uint8)
    if style == "disc":
        cv2.circle(black, centre, radius, 255, thickness=cv2.FILLED, lineType=cv2.LINE_AA)
    stroke = max(2, radius // 8)
    cv2.circle(white, centre, radius, 255, thickness=stroke, lineType=cv2.LINE_AA)
    scale = radius / 22
    (w, h), _ = cv2.getTextSize(letter, cv2.FONT_HERSHEY_SIMPLEX, scale, stroke)
    cv2.putText(white, letter, (centre[0] - w // 2, centre[1] + h // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, 255,
                stroke, cv2.LINE_AA)
    film *= 1 - black / np.float32(255)
    film += (1 - film) * (white / np.float32(255))


@pytest.mark.parametrize("style", ["disc", "ring"])
@pytest.mark.parametrize("letter", ["D", "L", "R", "I"])
def test_a_drawn_marker_is_found_whole(style, letter):
    film = textured_film()
    draw_marker(film, (90, 110), 24, letter, style)
    boxes = find_markers(film)
    assert len(boxes) == 1, boxes
    marker = (90 - 26, 110 - 26, 90 + 27, 110 + 27)  # the disc and its ring
    assert coverage(marker, [(b.x0, b.y0, b.x1, b.y1) for b in boxes]) == 1.0
    assert boxes[0].area < 2.5 * (2 * 27) ** 2  # the marker, not a region around it


@pytest.mark.parametrize("style", ["disc", "ring"])
@pytest.mark.parametrize("edge", ["top", "left", "right", "bottom"])
def test_a_marker_cut_by_the_film_edge_is_found(style, edge):
    film = textured_film()
    centre = {"top": (500, 20), "left": (20, 500), "right": (1003, 500), "bottom": (500, 1003)}[edge]
    draw_marker(film, centre, 24, "I", style)  # the ring reaches 4-6 px past the film's edge
    boxes = find_markers(film)
    assert len(boxes) == 1, boxes
    marker = (max(0, centre[0] - 26), max(0, centre[1] - 26), min(1024, centre[0] + 27), min(1024, centre[1] + 27))
    assert coverage(marker, [(b.x0, b.y0, b.x1, b.y1) for b in boxes]) == 1.0
    assert boxes[0].area < 2.5 * (2 * 27) ** 2


def test_a_circle_cut_by_the_edge_without_a_letter_is_not_a_marker():
    film = textured_film()
    drawn = np.zeros(film.shape, np.uint8)
    cv2.circle(drawn, (500, 15), 24, 255, thickness=3)  # an empty ring (a coin, an electrode) at the edge
    cv2.circle(drawn, (15, 500), 24, 255, thickness=cv2.FILLED)  # a plain disc at the edge
    film[drawn > 0] = 1.0
    assert find_markers(film) == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nothing_is_found_on_a_film_without_markers(seed):
    assert find_markers(textured_film(seed=seed)) == []


def test_rings_without_a_letter_and_letters_without_a_ring_are_not_markers():
    film = textured_film()
    drawn = np.zeros(film.shape, np.uint8)
    cv2.circle(drawn, (100, 100), 24, 255, thickness=3)  # an ECG electrode's ring with its small snap
    cv2.circle(drawn, (100, 100), 3, 255, thickness=cv2.FILLED)
    cv2.putText(drawn, "L", (480, 500), cv2.FONT_HERSHEY_SIMPLEX, 1.5, 255, 4)  # a letter alone: CRAFT's job
    film[drawn > 0] = 1.0
    cv2.circle(film, (300, 300), 24, 0.0, thickness=cv2.FILLED)  # a plain disc: no letter
    assert find_markers(film) == []


def test_a_marker_box_replaces_the_craft_boxes_inside_it():
    marker = TextBox(60, 80, 120, 140, 1.0)
    letter = TextBox(80, 95, 100, 125, 0.9)  # CRAFT's box on the letter
    word = TextBox(300, 500, 400, 520, 0.95)
    twin = TextBox(61, 81, 119, 139, 1.0)  # the same marker found in both polarities
    assert with_markers([letter, word], [marker, twin]) == [word, marker]
    round_letter = TextBox(310, 502, 325, 518, 1.0)  # the "O" of a word, found as a disc with a hole
    assert with_markers([word], [round_letter]) == [word]


def test_the_marker_finder_is_part_of_detection_unless_switched_off():
    film = textured_film()
    draw_marker(film, (90, 110), 24, "D", "disc")
    from pipeline.text.postprocess import finish_boxes

    assert len(finish_boxes([], film, TextConfig())) == 1
    assert finish_boxes([], film, TextConfig.paper()) == []
    with pytest.raises(ValueError, match="marker_level"):
        TextConfig(marker_level=0.7)


def tuning_films() -> list[str]:
    with (ANNOTATIONS / "actualmed_films.csv").open(encoding="utf-8") as handle:
        return [row["image"] for row in csv.DictReader(handle) if row["part"] == "tune"]


@pytest.mark.skipif(not REAL_FILMS.is_dir(), reason="the real Actualmed films are not beside the checkout")
def test_real_circled_markers_are_found_where_annotated():
    with (ANNOTATIONS / "actualmed_boxes.csv").open(encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["kind"] == "circled_marker"]
    films = set(tuning_films())
    rows = [row for row in rows if row["image"] in films][:6]
    assert rows, "no annotated circled marker on the tuning films"
    for row in rows:
        image = read_image(REAL_FILMS / row["image"])
        truth = tuple(int(row[key]) for key in ("x0", "y0", "x1", "y1"))
        boxes = find_markers(image)
        assert coverage(truth, [(b.x0, b.y0, b.x1, b.y1) for b in boxes]) >= 0.9, row["image"]
        assert len(boxes) <= 3, (row["image"], boxes)
