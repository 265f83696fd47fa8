"""COVIDx++ build with the real CRAFT weights: PNG and DICOM in and out, manifest, resume, refusals."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from datasets.covidx import Record, read_split, write_split
from datasets.dicom import read_dicom
from datasets.images import read_image
from pipeline.clean import (
    MANIFEST,
    REJECTED,
    CleanConfig,
    CleanError,
    build_clean_dataset,
    clean_image,
    psnr,
)
from pipeline.text import TextBox, TextConfig, WeightsError, box_mask, detect_text, make_detector, match_boxes
from tests.pipeline import TEST_TEXT, as_tuple, burn, film, film_with_word_and_letter

CONFIG = CleanConfig(text=TEST_TEXT)


@pytest.fixture(scope="module")
def detector():
    return make_detector(TEST_TEXT)


def png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8))
    return path


def hashes(root: Path) -> dict[str, str]:
    """sha256 and modification time of every file under `root`."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() + str(p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_inpainting_restores_the_film_better_than_a_black_box():
    image, clean, truth = film_with_word_and_letter()
    boxes = [TextBox(b.x0, b.y0, b.x1, b.y1, 1.0) for b in truth]
    inpainted, mask = clean_image(image, boxes, CleanConfig())
    blacked, same_mask = clean_image(image, boxes, CleanConfig(method="black"))
    assert np.array_equal(mask, same_mask) and mask.sum() > sum((b.x1 - b.x0) * (b.y1 - b.y0) for b in boxes)
    np.testing.assert_array_equal(inpainted[~mask], image[~mask])  # nothing outside the mask changes
    assert (blacked[mask] == 0).all()
    inside = box_mask(image.shape, boxes)  # PSNR inside the text boxes against the known clean film
    with_text, telea, black = (psnr(out, clean, inside) for out in (image, inpainted, blacked))
    assert telea > with_text + 3 and telea > black + 15 and telea > 21, (with_text, telea, black)
    exact, _ = clean_image(image, boxes, CleanConfig(dilate=0))  # tight boxes: better still
    assert psnr(exact, clean, inside) > telea


def test_build_cleans_text_copies_text_free_images_and_records_rejects(detector, tmp_path):
    src, dst = tmp_path / "covidx", tmp_path / "covidx_plus"
    image, clean, _ = film_with_word_and_letter()
    other, _ = burn(film(seed=6), "AP", 200, 150, 20)
    png(src / "train" / "text.png", image)
    png(src / "train" / "other.png", other)
    png(src / "train" / "free.png", clean)
    (src / "train" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    records = [Record("p1", "text.png", "normal", "rsna"), Record("p2", "other.png", "COVID-19", "ricord"),
               Record("p3", "free.png", "pneumonia", "cohen"), Record("p4", "broken.png", "normal", "rsna"),
               Record("p5", "gone.png", "normal", "rsna"), Record("p6", "link.png", "normal", "rsna")]
    (src / "train" / "link.png").symlink_to(png(tmp_path / "outside.png", clean))
    write_split(records, src / "train_tiny.txt")
    before = hashes(src)

    manifest = build_clean_dataset(src, dst, ["train_tiny.txt"], detector=detector, config=CONFIG)

    assert hashes(src) == before  # the source is only read
    assert manifest.counts() == {"cleaned": 2, "unchanged": 1, "rejected": 3, "reused": 0}
    text_row = manifest.row("train/text.png")
    assert text_row.status == "cleaned" and len(text_row.boxes) == 2 and text_row.output == "train/text.png"
    assert text_row.masked_pixels > 0 and text_row.source_sha256 == hashlib.sha256(
        (src / "train" / "text.png").read_bytes()).hexdigest()
    assert manifest.row("train/free.png").status == "unchanged"
    assert (dst / "train" / "free.png").read_bytes() == (src / "train" / "free.png").read_bytes()
    broken = manifest.row("train/broken.png")
    assert broken.status == "rejected" and "broken.png" in broken.reason and "corrupt PNG" in broken.reason
    assert not (dst / "train" / "broken.png").exists()
    assert "file not found" in manifest.row("train/gone.png").reason
    assert "outside its image folder" in manifest.row("train/link.png").reason

    # Outputs: same format and bit depth; text gone (re-detection finds nothing); the rest of the film kept.
    cleaned = read_image(dst / "train" / "text.png")
    assert cv2.imread(str(dst / "train" / "text.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    assert detect_text(cleaned, detector=detector) == []
    assert detect_text(read_image(dst / "train" / "other.png"), detector=detector) == []
    source = read_image(src / "train" / "text.png")
    far = ~box_mask(source.shape, text_row.boxes, CONFIG.dilate)
    np.testing.assert_array_equal(cleaned[far], source[far])
    ink = np.abs(source - clean) > 0.1  # the text's own pixels: far from the film before, close after
    assert psnr(cleaned, clean, ink) > psnr(source, clean, ink) + 5

    # Tables and split files for the new root.
    assert [r.filename for r in read_split(dst / "train_tiny.txt", dst / "train")] == ["text.png", "other.png",
                                                                                       "free.png"]
    with (dst / MANIFEST).open(newline="") as handle:
        table = {row["source"]: row for row in csv.DictReader(handle)}
    assert sorted(table) == ["train/broken.png", "train/free.png", "train/gone.png", "train/link.png",
                             "train/other.png", "train/text.png"]
    written_boxes = json.loads(table["train/text.png"]["boxes"])
    assert written_boxes == [box.to_dict() for box in text_row.boxes]
    assert {"x0", "y0", "x1", "y1", "score"} <= set(written_boxes[0])
    assert table["train/free.png"]["output_sha256"] == table["train/free.png"]["source_sha256"]
    with (dst / REJECTED).open(newline="") as handle:
        assert [row["source"] for row in csv.DictReader(handle)] == ["train/broken.png", "train/gone.png",
                                                                     "train/link.png"]

    # A rerun resumes: nothing is redone, nothing rewritten; a changed config redoes the work.
    written = hashes(dst)
    again = build_clean_dataset(src, dst, ["train_tiny.txt"], detector=detector, config=CONFIG)
    assert again.counts()["reused"] == 3 and again.counts()["rejected"] == 3
    assert {k: v for k, v in hashes(dst).items() if k.startswith("train/")} == {
        k: v for k, v in written.items() if k.startswith("train/")}
    (dst / "train" / "other.png").write_bytes(b"tampered")
    third = build_clean_dataset(src, dst, ["train_tiny.txt"], detector=detector, config=CONFIG)
    assert third.counts()["reused"] == 2 and third.row("train/other.png").status == "cleaned"


def rg1_small(path: Path, *, text: bool) -> Path:
    """A 256-px CR chest DICOM made from RG1's header and pixels (MONOCHROME1, 15-bit), optionally with text."""
    ds = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm", download=False))
    stored = ds.pixel_array
    small = cv2.resize(stored.astype(np.float32), (240, 256), interpolation=cv2.INTER_AREA)
    if text:
        # Burn "R" and "PORTABLE" as the brightest display value: the lowest stored value in MONOCHROME1.
        display = 1 - np.clip(small / 30000, 0, 1)  # RG1's window: centre 15000, width 30000
        display, _ = burn(display.astype(np.float32), "PORTABLE", 100, 12, 16)
        display, _ = burn(display, "R", 14, 40, 22)
        small = (1 - display) * 30000
    ds.set_pixel_data(np.rint(small).clip(0, 2**15 - 1).astype(np.uint16), "MONOCHROME1", 15)
    ds.BurnedInAnnotation = "YES" if text else "NO"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_in_dicom_out_keeps_the_header_with_new_uids(detector, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "test").mkdir(parents=True)
    marked = rg1_small(src / "test" / "marked.dcm", text=True)
    plain = rg1_small(src / "test" / "plain.dcm", text=False)
    write_split([Record("a", "marked.dcm", "normal"), Record("b", "plain.dcm", "normal")], src / "test_rg1.txt")
    source_bytes = marked.read_bytes()
    assert len(detect_text(read_dicom(marked), detector=detector)) == 2  # the text is there to find

    manifest = build_clean_dataset(src, dst, {"test_rg1.txt": "test"}, detector=detector, config=CONFIG)

    assert marked.read_bytes() == source_bytes
    assert manifest.row("test/marked.dcm").status == "cleaned"
    assert manifest.row("test/plain.dcm").status == "unchanged"
    assert (dst / "test" / "plain.dcm").read_bytes() == plain.read_bytes()
    before, after = pydicom.dcmread(marked), pydicom.dcmread(dst / "test" / "marked.dcm")
    assert after.BurnedInAnnotation == "NO" and before.BurnedInAnnotation == "YES"
    assert after[0x00280301].value == "NO"
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "Modality", "BodyPartExamined", "Rows",
                    "Columns", "BitsAllocated", "BitsStored", "PhotometricInterpretation"):
        assert after.get(keyword) == before.get(keyword), keyword
    assert after.SOPInstanceUID != before.SOPInstanceUID and after.SeriesInstanceUID != before.SeriesInstanceUID
    assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
    assert after.SourceImageSequence[0].ReferencedSOPInstanceUID == before.SOPInstanceUID
    assert detect_text(read_dicom(dst / "test" / "marked.dcm"), detector=detector) == []


def test_destination_inside_equal_to_or_around_the_source_is_refused(detector, tmp_path):
    src = tmp_path / "src"
    png(src / "train" / "a.png", film())
    write_split([Record("p", "a.png", "normal")], src / "train_x.txt")
    for dst, reason in ((src, "is the source root"), (src / "plus", "inside the source"),
                        (tmp_path, "contains the source")):
        with pytest.raises(CleanError, match=reason):
            build_clean_dataset(src, dst, ["train_x.txt"], detector=detector, config=CONFIG)
    assert sorted(p.name for p in src.rglob("*")) == ["a.png", "train", "train_x.txt"]
    with pytest.raises(CleanError, match="split file not found"):
        build_clean_dataset(src, tmp_path / "out", ["test_x.txt"], detector=detector, config=CONFIG)


def test_missing_weights_stop_the_build_with_a_clear_error(tmp_path):
    src = tmp_path / "src"
    png(src / "train" / "a.png", film())
    write_split([Record("p", "a.png", "normal")], src / "train_x.txt")
    config = CleanConfig(text=TextConfig(weights_dir=str(tmp_path / "no-weights")))
    with pytest.raises(WeightsError, match=r"craft_mlt_25k\.pth: CRAFT weights file not found"):
        build_clean_dataset(src, tmp_path / "out", ["train_x.txt"], config=config)


def test_black_box_policy_and_kept_laterality_markers(detector, tmp_path):
    src = tmp_path / "src"
    image, _, truth = film_with_word_and_letter()
    png(src / "train" / "a.png", image)
    write_split([Record("p", "a.png", "normal")], src / "train_x.txt")

    black = build_clean_dataset(src, tmp_path / "black", ["train_x.txt"], detector=detector,
                                config=CleanConfig(text=TEST_TEXT, method="black"))
    out = read_image(tmp_path / "black" / "train" / "a.png")
    for box in black.row("train/a.png").boxes:
        assert (out[box.y0:box.y1, box.x0:box.x1] == 0).all()

    kept = build_clean_dataset(src, tmp_path / "kept", ["train_x.txt"], detector=detector,
                               config=CleanConfig(text=TEST_TEXT, keep_laterality=True))
    row = kept.row("train/a.png")
    word, letter = (as_tuple(b) for b in truth)
    assert row.status == "cleaned" and len(row.boxes) == 1 and len(row.kept_boxes) == 1
    assert row.kept_boxes[0].x0 <= letter[0] and row.boxes[0].x0 <= word[0] < row.boxes[0].x1
    out = read_image(tmp_path / "kept" / "train" / "a.png")
    x0, y0, x1, y1 = letter
    np.testing.assert_array_equal(out[y0:y1, x0:x1], read_image(src / "train" / "a.png")[y0:y1, x0:x1])


def test_precomputed_boxes_are_used_and_only_images_without_them_are_detected(detector, tmp_path):
    src = tmp_path / "src"
    image, _, truth = film_with_word_and_letter()
    for name in ("a.png", "b.png", "c.png"):
        png(src / "train" / name, image)
    write_split([Record(f"p{i}", name, "normal") for i, name in enumerate(("a.png", "b.png", "c.png"))],
                src / "train_x.txt")
    given = TextBox(100, 150, 140, 180, 0.9)
    detections = {"train/a.png": [], "b.png": [given], "c.png": [given]}
    # Every image has boxes: no detector is loaded (these weights would fail), none is run.
    no_weights = CleanConfig(text=TextConfig(weights_dir=str(tmp_path / "no-weights")))
    first = build_clean_dataset(src, tmp_path / "first", ["train_x.txt"], config=no_weights, detections=detections)
    assert first.row("train/a.png").status == "unchanged"  # the text stays: the given boxes say "none"
    assert first.row("train/b.png").boxes == [given] and first.row("train/b.png").status == "cleaned"
    assert first.row("train/b.png").masked_pixels == (40 + 4) * (30 + 4)  # the given box, dilated 2 px

    del detections["c.png"]  # now c.png is detected here, with the real weights
    second = build_clean_dataset(src, tmp_path / "second", ["train_x.txt"], detector=detector, config=CONFIG,
                                 detections=detections)
    found = second.row("train/c.png").boxes
    assert match_boxes([as_tuple(b) for b in truth], [as_tuple(b) for b in found]) == [0, 1]
    assert second.row("train/b.png").boxes == [given]
