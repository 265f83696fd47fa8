"""Full-resolution COVIDx++ crops (reports.crops) on a hand-made real-style run: the source dataset lies outside
the run folder and is found through config.yaml's data.root, as for `cxr-audit run --data ...`."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

import reports
from reports import crops

HEIGHT, WIDTH = 60, 80
BOX = (30, 40, 50, 46)  # x0, y0, x1, y1 of the burned-in "text" in the cleaned film
SECRET = "Qwzx^Hiddenname"  # a DICOM PatientName that must never reach the report


def film(seed: int) -> np.ndarray:
    """(HEIGHT, WIDTH) uint8 noise: every pixel distinct enough that a shifted or resampled crop would not match."""
    return np.random.default_rng(seed).integers(20, 200, (HEIGHT, WIDTH), dtype=np.uint8)


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(pixels).save(path)
    return path


def manifest(rows: list[dict]) -> pd.DataFrame:
    defaults = {"split_files": "test_COVIDx9A.txt", "reason": "", "boxes": "[]", "kept_boxes": "[]",
                "refused_boxes": "[]", "masked_pixels": 0, "masked_fraction": 0.0}
    return pd.DataFrame([{**defaults, **row} for row in rows])


@pytest.fixture
def real_run(tmp_path: Path) -> Path:
    """A run folder whose config.yaml points at a source folder outside it: one cleaned film, one unchanged."""
    source, run = tmp_path / "covidx", tmp_path / "run"
    before, after = film(1), film(1)
    x0, y0, x1, y1 = BOX
    before[y0:y1, x0:x1] = 255  # the bright "text"
    save(source / "test" / "text.png", before)
    save(run / "covidx_pp" / "test" / "text.png", after)
    save(source / "test" / "plain.png", film(2))
    save(run / "covidx_pp" / "test" / "plain.png", film(2))
    (run / "config.yaml").write_text(f"run_dir: {run}\ndata:\n  root: {source}\n  train_split: train.txt\n")
    box = {"x0": x0, "y0": y0, "x1": x1, "y1": y1, "score": 0.93}
    refused = {"x0": 2, "y0": 2, "x1": 12, "y1": 8, "score": 0.41, "reason": "not text-like: stroke contrast 0.012"}
    manifest([{"source": "test/text.png", "output": "test/text.png", "status": "cleaned", "boxes": json.dumps([box]),
               "refused_boxes": json.dumps([refused]), "masked_pixels": 120, "masked_fraction": 0.025},
              {"source": "test/plain.png", "output": "test/plain.png", "status": "unchanged"}]).to_csv(
        run / "covidx_pp" / "manifest.csv", index=False)
    return run


class Figures(HTMLParser):
    """Each full-resolution figure of a report: caption (the img alt text) → decoded pixels."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.full: dict[str, np.ndarray] = {}
        self.all: list[str] = []
        self._in_full = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "figure":
            self._in_full = values.get("class") == "full"
        elif tag == "img":
            self.all.append(values["alt"] or "")
            if self._in_full:
                data = base64.b64decode((values["src"] or "").split(",", 1)[1])
                self.full[values["alt"] or ""] = np.asarray(PILImage.open(io.BytesIO(data)))


def figure(figures: Figures, words: str) -> np.ndarray:
    found = [pixels for caption, pixels in figures.full.items() if words in caption]
    assert len(found) == 1, f"{words!r} in {list(figures.full)}"
    return found[0]


def test_a_real_run_shows_the_removed_text_at_full_resolution(real_run: Path) -> None:
    html = reports.render(real_run).read_text(encoding="utf-8")
    figures = Figures(html)
    source = str(real_run.parent / "covidx")
    assert f"Source films read from {source}" in html
    assert "1 of 1 cleaned films shown" in html and "1 of 1 shown" in html
    pixels = figure(figures, "test/text.png, removed box 1 of 1")
    before = np.asarray(PILImage.open(real_run.parent / "covidx" / "test" / "text.png"))
    after = np.asarray(PILImage.open(real_run / "covidx_pp" / "test" / "text.png"))
    x0, y0, x1, y1 = crops.box_window(BOX, before.shape)
    h, w = y1 - y0, x1 - x0
    factor = crops.zoom_factor((h, w))
    assert factor > 1 and pixels.shape == (h * factor, 2 * w * factor + crops.GAP, 3)
    panels = pixels[:, : w * factor], pixels[:, w * factor + crops.GAP:]
    left, right = (panel[::factor, ::factor] for panel in panels)  # undo the nearest-neighbour enlargement
    assert (panels[0] == left.repeat(factor, 0).repeat(factor, 1)).all()
    assert (right == after[y0:y1, x0:x1, None]).all(), "the after panel holds the COVIDx++ film's exact pixels"
    gray = (left[..., 0] == left[..., 1]) & (left[..., 1] == left[..., 2])
    assert (left[gray][:, 0] == before[y0:y1, x0:x1][gray]).all(), "the before panel holds the source's pixels"
    # The outline (green) lies just outside the box; the box's own pixels, the "text", are untouched.
    box = (slice(BOX[1] - y0, BOX[3] - y0), slice(BOX[0] - x0, BOX[2] - x0))
    assert gray[box].all() and (left[box] == 255).all()
    assert (~gray).sum() == 2 * (BOX[2] - BOX[0] + 2) + 2 * (BOX[3] - BOX[1])
    assert (left[~gray] == crops.REMOVED).all()
    # The refused box is listed with its reason.
    assert "not text-like: stroke contrast 0.012" in html and "1 shown of 1" in html


def test_a_film_where_nothing_was_detected_gets_its_corners_and_edge_strips(real_run: Path) -> None:
    figures = Figures(reports.render(real_run).read_text(encoding="utf-8"))
    plain = np.asarray(PILImage.open(real_run.parent / "covidx" / "test" / "plain.png"))
    grid = figure(figures, "test/plain.png (80×60 px), no text detected: the four corners")
    side = round(crops.CORNER * WIDTH)
    factor = crops.zoom_factor((side, side))
    near, far = side * factor, side * factor + crops.GAP
    assert grid.shape == (2 * near + crops.GAP,) * 2
    assert (grid[:near:factor, :near:factor] == plain[:side, :side]).all()
    assert (grid[:near:factor, far::factor] == plain[:side, -side:]).all()
    assert (grid[far::factor, :near:factor] == plain[-side:, :side]).all()
    assert (grid[far::factor, far::factor] == plain[-side:, -side:]).all()
    factor = crops.zoom_factor((5, WIDTH))
    rows = round(crops.STRIP * HEIGHT)
    strip = figure(figures, "test/plain.png, no text detected: the bottom")
    assert (strip == plain[-rows:].repeat(factor, 0).repeat(factor, 1)).all()
    strip = figure(figures, "test/plain.png, no text detected: the top")
    assert (strip == plain[:rows].repeat(factor, 0).repeat(factor, 1)).all()


def test_a_missing_source_is_explained_not_raised(real_run: Path) -> None:
    (real_run.parent / "covidx" / "test" / "text.png").unlink()
    html = reports.render(real_run).read_text(encoding="utf-8")
    assert "0 of 1 cleaned films shown" in html and "source not found under" in html
    assert "test/plain.png (80×60 px), no text detected" in html  # the other film is still shown
    for path in (real_run.parent / "covidx").rglob("*"):
        if path.is_file():
            path.unlink()
    (real_run.parent / "covidx" / "test").rmdir()
    (real_run.parent / "covidx").rmdir()
    html = reports.render(real_run).read_text(encoding="utf-8")
    assert "Crops not shown: the source folder" in html and "is not found on this machine" in html


def test_box_crop_is_the_films_pixels_around_the_box() -> None:
    before = crops.Film(np.arange(200 * 300).reshape(200, 300) % 251, 0.0, 255.0, "png8")
    after = crops.Film(np.full((200, 300), 7), 0.0, 255.0, "png8")
    box = (100, 90, 140, 100)  # 40 × 10 px: margins 40 (its width) and 24 (the minimum)
    picture, window, factor = crops.box_crop(before, after, box)
    assert window == (60, 66, 180, 124)
    assert factor == 1 and picture.shape == (58, 2 * 120 + crops.GAP, 3)
    left = picture[:, :120, 0]
    assert (left[24:34, 40:80] == before.pixels[90:100, 100:140]).all()
    assert (picture[:, 120 + crops.GAP:] == 7).all() and (picture[:, 120:120 + crops.GAP] == 255).all()
    assert (picture[23, 39:81] == crops.REMOVED).all() and (picture[34, 39:81] == crops.REMOVED).all()


@pytest.mark.parametrize(("box", "shape", "expected"), [
    ((100, 100, 110, 104), (300, 300), (76, 76, 134, 128)),  # a small box: the 24-px minimum margin
    ((50, 100, 250, 110), (300, 300), (0, 76, 300, 134)),  # a wide box: its width, clipped to the film
    ((0, 0, 500, 20), (600, 1000), (0, 0, 500 + crops.MAX_MARGIN, 44)),  # at the corner, margin at most MAX_MARGIN
    ((290, 310, 330, 320), (300, 300), (266, 276, 300, 300)),  # a box past the film's edge: clipped, still a crop
])
def test_box_window(box: crops.Window, shape: tuple[int, int], expected: crops.Window) -> None:
    assert crops.box_window(box, shape) == expected


def test_read_film_keeps_16_bit_gray_and_rgb_values(tmp_path: Path) -> None:
    deep = np.linspace(1000, 5000, 40 * 30).reshape(30, 40).astype(np.uint16)
    PILImage.fromarray(deep).save(tmp_path / "deep.png")
    read = crops.read_film(tmp_path / "deep.png")
    assert read.kind == "png16" and (read.pixels == deep).all()
    shown = read.display()
    assert shown.min() == 0 and shown.max() == 255, "16-bit films are min-max stretched"
    gray = film(3)
    PILImage.fromarray(np.stack([gray] * 3, axis=2)).save(tmp_path / "rgb.png")
    assert (crops.read_film(tmp_path / "rgb.png").display() == gray).all(), "a gray RGB film keeps its values"
    PILImage.fromarray(gray).save(tmp_path / "film.jpg", quality=95)
    decoded = np.asarray(PILImage.open(tmp_path / "film.jpg"))
    assert (crops.read_film(tmp_path / "film.jpg").display() == decoded).all()
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(crops.FilmError, match="not a PNG, JPEG or DICOM"):
        crops.read_film(tmp_path / "junk.png")


def dicom(path: Path, pixels: np.ndarray, compressed: bool = False) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.1", generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID = "DX", SECRET, "MRN-QWZX-1"
    if compressed:
        jpeg = io.BytesIO()
        PILImage.fromarray(pixels.astype(np.uint8)).save(jpeg, format="JPEG")
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = *pixels.shape, 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = encapsulate([jpeg.getvalue()])
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.set_pixel_data(pixels, "MONOCHROME2", 12 if pixels.dtype == np.uint16 else 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_films_are_stretched_and_compressed_ones_are_not_shown(tmp_path: Path) -> None:
    stored = (np.arange(HEIGHT * WIDTH).reshape(HEIGHT, WIDTH) % 4000 + 50).astype(np.uint16)
    read = crops.read_film(dicom(tmp_path / "plain.dcm", stored))
    assert read.kind == "dicom" and (read.pixels == stored).all()
    assert (read.display() == np.round((stored - 50.0) * (255 / 3999))).all()  # min-max stretch only
    with pytest.raises(crops.FilmError, match="not shown: DICOM with compressed"):
        crops.read_film(dicom(tmp_path / "jpeg.dcm", film(4), compressed=True))


def test_dicom_sources_render_without_any_header_value(real_run: Path) -> None:
    source = real_run.parent / "covidx"
    dicom(source / "test" / "plain.dcm", film(2))
    dicom(source / "test" / "jpeg.dcm", film(5), compressed=True)
    table = pd.read_csv(real_run / "covidx_pp" / "manifest.csv")
    table = pd.concat([table, manifest([{"source": "test/jpeg.dcm", "output": "test/jpeg.dcm",
                                         "status": "unchanged"}])])
    table.loc[table["source"] == "test/plain.png", ["source", "output"]] = "test/plain.dcm"
    table.to_csv(real_run / "covidx_pp" / "manifest.csv", index=False)
    html = reports.render(real_run).read_text(encoding="utf-8")
    assert "test/plain.dcm (80×60 px), no text detected: the four corners" in html
    assert "not shown: DICOM with compressed" in html
    assert "Hiddenname" not in html and "QWZX" not in html
    assert "Hiddenname" not in (real_run / "summary.md").read_text(encoding="utf-8")


def test_unchanged_films_are_picked_by_share_then_name() -> None:
    table = manifest([{"source": name, "status": "unchanged"} for name in ("test/c.png", "test/a.png", "test/b.png")]
                     + [{"source": "test/d.png", "status": "unchanged", "refused_boxes": json.dumps([{
                         "x0": 1, "y0": 1, "x1": 5, "y1": 5, "score": 0.5, "reason": "x"}])},
                        {"source": "test/e.png", "status": "cleaned"}])
    assert crops.pick_unchanged(table, None, 2)["source"].tolist() == ["test/a.png", "test/b.png"]
    picked = crops.pick_unchanged(table, {"test/c.png": 0.4, "test/d.png": 0.9}, 4)
    assert picked["source"].tolist() == ["test/c.png", "test/a.png", "test/b.png"]  # d: a box was detected


def test_source_root_follows_config_yaml(tmp_path: Path) -> None:
    assert crops.source_root(tmp_path)[0] == tmp_path / "data"  # no config.yaml
    (tmp_path / "config.yaml").write_text("data:\n  root: null\n")
    assert crops.source_root(tmp_path)[0] == tmp_path / "data"
    (tmp_path / "config.yaml").write_text("data:\n  root: /data/covidx\n")
    assert crops.source_root(tmp_path)[0] == Path("/data/covidx")
    (tmp_path / "config.yaml").write_text("data: !!python/object/apply:os.system ['true']\n")
    root, how = crops.source_root(tmp_path)  # read as data only: a Python tag is refused, not run
    assert root == tmp_path / "data" and "unreadable" in how


def test_a_wide_bottom_strip_is_subsampled_to_fit() -> None:
    wide = crops.Film(np.arange(50 * 300).reshape(50, 300) % 256, 0.0, 255.0, "png8")
    strip, scale = crops.edge_strip(wide, "bottom", widest=100)
    assert "1 pixel in 3" in scale and (strip == wide.pixels[46::3, ::3]).all()


def test_a_dicom_header_is_never_read_into_an_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.dcm"
    data = dicom(tmp_path / "ok.dcm", film(6)).read_bytes()
    path.write_bytes(data[: len(data) - 2000])  # pixel data cut short
    with pytest.raises(crops.FilmError) as error:
        crops.read_film(path)
    assert "Hiddenname" not in str(error.value) and "not shown: DICOM" in str(error.value)
    assert pydicom.dcmread(tmp_path / "ok.dcm").PatientName == SECRET  # the planted value is really there


def test_a_manifest_without_unchanged_films_or_with_damaged_files_still_renders(real_run: Path) -> None:
    table = pd.read_csv(real_run / "covidx_pp" / "manifest.csv")
    table[table["status"] == "cleaned"].to_csv(real_run / "covidx_pp" / "manifest.csv", index=False)
    (real_run / "covidx_pp" / "test" / "text.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # cut short
    html = reports.render(real_run).read_text(encoding="utf-8")
    assert "0 of 1 cleaned films shown" in html and "COVIDx++ copy: text.png: cannot decode" in html
    assert "nothing: 0 of 0 shown" in html
