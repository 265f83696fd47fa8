"""COVIDx++ build with the real CRAFT weights: PNG, JPEG and DICOM in and out written alike with or without
text, whole markers, the text guard, manifest, resume, refusals."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from datasets.covidx import Record, read_split, write_split
from datasets.dicom import read_dicom
from datasets.images import image_format, parse_header, read_image, write_image
from pipeline.clean import CleanConfig, CleanError, build_clean_dataset, clean_image, clean_mask, psnr
from pipeline.clean_manifest import MANIFEST, REJECTED
from pipeline.inpaint import texture_ratio
from pipeline.text import TextBox, TextConfig, WeightsError, box_mask, detect_text, make_detector, match_boxes
from tests.pipeline import TEST_TEXT, as_tuple, burn, film, film_with_word_and_letter
from tests.pipeline.test_inpaint import circled_marker, marker_box, textured_film

CONFIG = CleanConfig(text=TEST_TEXT)


@pytest.fixture(scope="module")
def detector():
    return make_detector(TEST_TEXT)


def png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8))
    return path


def edges(image: np.ndarray) -> np.ndarray:
    """Gradient magnitude (intensity per pixel) of an (H, W) float32 image."""
    return np.hypot(cv2.Sobel(image, cv2.CV_32F, 1, 0), cv2.Sobel(image, cv2.CV_32F, 0, 1)) / 8


def hashes(root: Path) -> dict[str, str]:
    """sha256 and modification time of every file under `root`."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() + str(p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_inpainting_restores_the_film_better_than_a_black_box():
    image, clean, truth = film_with_word_and_letter()
    boxes = [TextBox(b.x0, b.y0, b.x1, b.y1, 1.0) for b in truth]
    inpainted, mask = clean_image(image, boxes, CleanConfig(method="telea"))  # the paper's setting
    blacked, same_mask = clean_image(image, boxes, CleanConfig(method="black"))
    assert np.array_equal(mask, same_mask) and mask.sum() > sum((b.x1 - b.x0) * (b.y1 - b.y0) for b in boxes)
    np.testing.assert_array_equal(inpainted[~mask], image[~mask])  # nothing outside the mask changes
    assert (blacked[mask] == 0).all()
    inside = box_mask(image.shape, boxes)  # PSNR inside the text boxes against the known clean film
    with_text, telea, black = (psnr(out, clean, inside) for out in (image, inpainted, blacked))
    assert telea > with_text + 3 and telea > black + 15 and telea > 21, (with_text, telea, black)
    exact, _ = clean_image(image, boxes, CleanConfig(method="telea", dilate=0))  # tight boxes: better still
    assert psnr(exact, clean, inside) > telea
    texture, texture_mask = clean_image(image, boxes)  # the default keeps the film's texture
    np.testing.assert_array_equal(texture_mask, mask)
    assert psnr(texture, clean, inside) > black + 15 and texture_ratio(texture, mask) > 0.6


def test_a_circled_marker_is_removed_whole_with_no_ring_and_no_smooth_patch():
    film = textured_film(seed=3)
    centre, radius = (120, 100), 26
    marked = circled_marker(film, centre, radius)
    box = marker_box(centre, radius)  # the ring's outer edge: it cuts through the dark outline
    drawn = np.abs(marked - film) > 0.02  # the disc, its dark outline, the ring and the letter
    circle = np.zeros(film.shape, np.uint8)
    cv2.circle(circle, centre, radius + 2, 1, thickness=9)  # the ring and the outline, with a margin
    circle = circle.astype(bool)

    def leftovers(config: CleanConfig) -> tuple[float, float]:
        """Largest error on the marker's pixels, and the edge strength along its circle relative to the film's."""
        out, _ = clean_image(marked, [box], config)
        return float(np.abs(out - film)[drawn].max()), float(edges(out)[circle].mean() / edges(film)[circle].mean())

    error, edge = leftovers(CleanConfig())
    assert error < 0.2 and edge < 1.3, (error, edge)
    error, edge = leftovers(CleanConfig(method="telea", whole_markers=False))  # the box alone: the ring stays
    assert error > 0.4 and edge > 1.5, (error, edge)
    out, mask = clean_image(marked, [box])
    assert mask[drawn].all() and 0.7 <= texture_ratio(out, mask) <= 1.3  # no smooth (or X-shaped) patch


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
    far = ~clean_mask(source, text_row.boxes, CONFIG)
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
    assert json.loads(table["train/text.png"]["refused_boxes"]) == []  # CRAFT's boxes here are all text
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
    # Cleaned and text-free (byte-copied) outputs alike: the same pixel format; the same display values
    # outside the mask (to the stored precision). The cleaned file is uncompressed, with an identity window.
    copied = pydicom.dcmread(dst / "test" / "plain.dcm")
    for keyword in ("BitsAllocated", "BitsStored", "PixelRepresentation", "PhotometricInterpretation",
                    "SamplesPerPixel", "Rows", "Columns"):
        assert after.get(keyword) == copied.get(keyword), keyword
    source = read_dicom(marked)
    outside = ~clean_mask(source, manifest.row("test/marked.dcm").boxes, CONFIG)
    np.testing.assert_allclose(read_dicom(dst / "test" / "marked.dcm")[outside], source[outside], atol=1e-4)


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
    given = TextBox(100, 150, 140, 180, 0.9)  # plain film: only cleaned with the text guard off
    detections = {"train/a.png": [], "b.png": [given], "c.png": [given]}
    # Every image has boxes: no detector is loaded (these weights would fail), none is run.
    no_weights = CleanConfig(text=TextConfig(weights_dir=str(tmp_path / "no-weights")), text_guard=False)
    first = build_clean_dataset(src, tmp_path / "first", ["train_x.txt"], config=no_weights, detections=detections)
    assert first.row("train/a.png").status == "unchanged"  # the text stays: the given boxes say "none"
    assert first.row("train/b.png").boxes == [given] and first.row("train/b.png").status == "cleaned"
    assert first.row("train/b.png").masked_pixels == (40 + 4) * (30 + 4)  # the given box, dilated 2 px

    del detections["c.png"]  # now c.png is detected here, with the real weights
    second = build_clean_dataset(src, tmp_path / "second", ["train_x.txt"], detector=detector, config=CONFIG,
                                 detections=detections)
    found = second.row("train/c.png").boxes
    assert match_boxes([as_tuple(b) for b in truth], [as_tuple(b) for b in found]) == [0, 1]
    refused = second.row("train/b.png")  # with the text guard on (the default) the plain-film box stays
    assert refused.status == "unchanged" and refused.boxes == [] and [r.box for r in refused.refused_boxes] == [given]


# ---- every image written alike, with or without text -------------------------------------------------------


def save_source(path: Path, image: np.ndarray, kind: str) -> Path:
    """`image` (H, W) in [0, 1] stored as one kind of COVIDx source file, with a pHYs and a tEXt chunk in PNGs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    eight = np.rint(image * 255).astype(np.uint8)
    if kind == "jpeg-gray":
        Image.fromarray(eight, "L").save(path, "JPEG", quality=80)
    elif kind == "jpeg-rgb":
        Image.fromarray(eight, "L").convert("RGB").save(path, "JPEG", quality=80, subsampling="4:2:0")
    else:
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("Software", "scanner 1.0")
        sixteen = np.rint(image * 65535).astype(np.uint16)
        picture = {"png-gray8": lambda: Image.fromarray(eight, "L"),
                   "png-gray16": lambda: Image.fromarray(sixteen),  # "I;16"
                   "png-rgb8": lambda: Image.fromarray(eight, "L").convert("RGB"),
                   "png-rgba8": lambda: Image.fromarray(eight, "L").convert("RGBA"),
                   "png-gray-alpha8": lambda: Image.fromarray(eight, "L").convert("LA")}[kind]()
        picture.save(path, "PNG", pnginfo=info, dpi=(150, 150))
    return path


def file_traits(path: Path) -> dict:
    """What a reader can tell about a file beyond its pixels: format, size, bits, mode, JPEG tables, PNG chunks."""
    with Image.open(path) as opened:
        traits = {"format": image_format(path), "bits": parse_header(path, path.read_bytes()).bits,
                  "mode": opened.mode, "size": opened.size, "info": sorted(opened.info)}
        if traits["format"] == "jpeg":
            from PIL import JpegImagePlugin

            traits.update(tables=opened.quantization, sampling=JpegImagePlugin.get_sampling(opened),
                          layers=opened.layers)
    if traits["format"] == "png":
        data, chunks, offset = path.read_bytes(), [], 8
        while offset < len(data):
            length = int.from_bytes(data[offset : offset + 4], "big")
            chunks.append(data[offset + 4 : offset + 8])
            offset += 12 + length
        traits["chunks"] = [kind for i, kind in enumerate(chunks) if kind != b"IDAT" or chunks[i - 1] != b"IDAT"]
        traits["ihdr"] = data[24:29]  # bit depth, colour type, compression, filter, interlace
    return traits


KINDS = ["png-gray8", "png-gray16", "png-rgb8", "png-rgba8", "png-gray-alpha8", "jpeg-gray", "jpeg-rgb"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_texted_and_a_text_free_film_are_written_alike(tmp_path, kind):
    src, dst = tmp_path / "src", tmp_path / "dst"
    texted, truth = burn(film(seed=7), "PORTABLE", 100, 150, 20)
    suffix = ".jpg" if kind.startswith("jpeg") else ".png"
    sources = {"text": save_source(src / "train" / f"text{suffix}", texted, kind),
               "free": save_source(src / "train" / f"free{suffix}", film(seed=8), kind)}
    write_split([Record("a", f"text{suffix}", "normal"), Record("b", f"free{suffix}", "normal")], src / "train_x.txt")
    box = TextBox(truth.x0, truth.y0, truth.x1, truth.y1, 1.0)
    config = CleanConfig(text=TextConfig(weights_dir=str(tmp_path / "no-weights")))  # no detector: boxes given
    manifest = build_clean_dataset(src, dst, ["train_x.txt"], config=config,
                                   detections={f"text{suffix}": [box], f"free{suffix}": []})
    assert manifest.row(f"train/text{suffix}").status == "cleaned"
    assert manifest.row(f"train/free{suffix}").status == "unchanged"
    outputs = {name: dst / "train" / path.name for name, path in sources.items()}

    # Same format, bit depth, colour mode, metadata and (JPEG) tables and subsampling: as each source, so alike.
    for name in ("text", "free"):
        assert file_traits(outputs[name]) == file_traits(sources[name]), name
    assert file_traits(outputs["text"]) | {"size": 0} == file_traits(outputs["free"]) | {"size": 0}
    image = read_image(sources["text"])
    mask = clean_mask(image, [box], config)
    assert mask.sum() == manifest.row(f"train/text{suffix}").masked_pixels
    if suffix == ".png":
        # Lossless: the text-free film is the source's bytes; the cleaned one keeps every stored value outside
        # the mask, in every channel, and gets the gray value in every colour channel inside it.
        assert outputs["free"].read_bytes() == sources["free"].read_bytes()
        before = cv2.imread(str(sources["text"]), cv2.IMREAD_UNCHANGED)
        after = cv2.imread(str(outputs["text"]), cv2.IMREAD_UNCHANGED)
        assert after.dtype == before.dtype and after.shape == before.shape
        np.testing.assert_array_equal(after[~mask], before[~mask])
        if after.ndim == 3:
            np.testing.assert_array_equal(after[mask][:, 0], after[mask][:, 1])
    else:
        # Every JPEG is re-encoded by one path, the text-free film too, and the cleaned film equals that path
        # applied to its own source in every 16-px block (a colour JPEG's unit) the mask leaves alone.
        again = write_image(tmp_path / "again.jpg", read_image(sources["free"]), like=sources["free"])
        assert again.read_bytes() == outputs["free"].read_bytes()
        unmasked = write_image(tmp_path / "unmasked.jpg", image, like=sources["text"])
        blocks = cv2.dilate(mask.astype(np.uint8), np.ones((33, 33), np.uint8)).astype(bool)
        np.testing.assert_array_equal(read_image(outputs["text"])[~blocks], read_image(unmasked)[~blocks])
        changes = [np.abs(read_image(outputs[name]) - read_image(sources[name]))[~blocks].mean() for name in outputs]
        assert abs(changes[0] - changes[1]) < 0.5 / 255  # the same re-encoding loss (none, from this encoder)


def test_boxes_over_anatomy_are_refused_kept_in_the_image_and_recorded(tmp_path):
    src = tmp_path / "src"
    image, clean, truth = film_with_word_and_letter()
    png(src / "train" / "a.png", image)
    png(src / "train" / "b.png", clean)
    write_split([Record("p", "a.png", "normal"), Record("q", "b.png", "normal")], src / "train_x.txt")
    word = TextBox(truth[0].x0, truth[0].y0, truth[0].x1, truth[0].y1, 0.9)
    lung = TextBox(150, 120, 230, 150, 0.8)  # a false detection on the lung and ribs
    detections = {"a.png": [word, lung], "b.png": [lung]}
    config = CleanConfig(text=TextConfig(weights_dir=str(tmp_path / "no-weights")))
    manifest = build_clean_dataset(src, tmp_path / "out", ["train_x.txt"], config=config, detections=detections)

    mixed, plain = manifest.row("train/a.png"), manifest.row("train/b.png")
    assert mixed.status == "cleaned" and mixed.boxes == [word] and [r.box for r in mixed.refused_boxes] == [lung]
    assert plain.status == "unchanged" and plain.boxes == [] and [r.box for r in plain.refused_boxes] == [lung]
    assert "not text-like" in plain.refused_boxes[0].reason
    out = read_image(tmp_path / "out" / "train" / "a.png")
    np.testing.assert_array_equal(out[120:150, 150:230], read_image(src / "train" / "a.png")[120:150, 150:230])
    with (tmp_path / "out" / MANIFEST).open(newline="") as handle:
        table = {row["source"]: row for row in csv.DictReader(handle)}
    written = json.loads(table["train/b.png"]["refused_boxes"])
    assert [(r["x0"], r["y0"], r["x1"], r["y1"]) for r in written] == [(150, 120, 230, 150)]
    assert written[0]["reason"].startswith("not text-like: stroke contrast")
    again = build_clean_dataset(src, tmp_path / "out", ["train_x.txt"], config=config, detections=detections)
    assert again.counts()["reused"] == 2 and again.row("train/b.png").refused_boxes == plain.refused_boxes

    off = build_clean_dataset(src, tmp_path / "off", ["train_x.txt"], detections=detections,
                              config=CleanConfig(text=config.text, text_guard=False))
    assert off.row("train/b.png").status == "cleaned" and off.row("train/b.png").refused_boxes == []


def test_the_config_digest_covers_every_option_that_changes_pixels():
    base = CleanConfig()
    changed = [CleanConfig(method="telea"), CleanConfig(radius=5), CleanConfig(dilate=3),
               CleanConfig(whole_markers=False), CleanConfig(text_guard=False), CleanConfig(keep_laterality=True),
               CleanConfig(jpeg_quality=90), CleanConfig(text=TextConfig(long_side=512))]
    digests = {config.digest() for config in changed}
    assert len(digests) == len(changed) and base.digest() not in digests
    assert CleanConfig(checkpoint_every=3, link_unchanged=True).digest() == base.digest()
    for bad in ({"jpeg_quality": 0}, {"jpeg_quality": "best"}, {"method": "smudge"}, {"dilate": -1}):
        with pytest.raises(ValueError):
            CleanConfig(**bad)
