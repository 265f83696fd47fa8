"""Bad images inside the per-image stages: each one is a rejected row naming the file and the reason,
and the stage goes on with the rest; the memory bound of reading one image.

The error messages themselves are checked per reader in tests/datasets; the split-file, checkpoint,
CRAFT-weights, iGOS++ and config cases in their packages' tests (docs/errors.md).
"""

import shutil
import struct
import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from datasets.covidx import Record
from datasets.errors import MAX_PIXELS, ImageReadError
from datasets.images import read_image
from datasets.torch_dataset import LABEL_ORDER
from pipeline.checkpoint import CheckpointMeta, save_checkpoint
from pipeline.models import build_classifier
from pipeline.predict import predict_split
from pipeline.text import TextConfig, detect_split
from pipeline.train import preload

# The readable kinds (predicted / detected) and the bad ones with a phrase their reason must contain.
GOOD = ("gray8.png", "gray16.png", "rgb.png", "rgba.png", "mono.dcm")
BAD = {
    "zero_bytes.png": "empty file (0 bytes)",
    "truncated.png": "truncated or corrupt",
    "truncated.jpg": "truncated or corrupt",
    "truncated.dcm": "cannot decode pixel data",
    "corrupt_attribute.dcm": "corrupt DICOM attribute",
    "no_pixels.dcm": "no Pixel Data",
    "multi_frame.dcm": "multi-frame DICOM (10 frames)",
    "text.png": "unrecognised file signature",
    "text.dcm": "unrecognised file signature",
    "huge.png": "10000×10000 pixels; expected at most 50,000,000",
    "tiny.png": "8×8 pixels; expected at least 16",
    "missing.png": "file not found",
}


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def black_png(path: Path, width: int, height: int) -> Path:
    """A valid all-black 8-bit gray PNG, compressed row by row (10,000² pixels: about 100 KB on disk)."""
    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", pixels)
                     + png_chunk(b"IEND", b""))
    return path


def dicom(path: Path, stored: np.ndarray, **attributes) -> Path:
    """A MONOCHROME2 DX file with `stored` pixels (12 bits stored) and extra attributes."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.1", generate_uid()
    ds.Modality = "DX"
    ds.set_pixel_data(stored, "MONOCHROME2", 12)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def pydicom_file(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} missing: pydicom and pydicom-data must be installed"
    return Path(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """One image folder with every readable kind (GOOD) and every bad one (BAD; missing.png is absent)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    gradient = np.add.outer(np.arange(64), np.arange(64)).astype(np.uint8) * 2
    cv2.imwrite(str(root / "gray8.png"), gradient)
    cv2.imwrite(str(root / "gray16.png"), gradient.astype(np.uint16) * 257)
    cv2.imwrite(str(root / "rgb.png"), np.dstack([gradient, gradient[::-1], gradient.T]))
    cv2.imwrite(str(root / "rgba.png"), np.dstack([gradient, gradient[::-1], gradient.T, np.full_like(gradient, 9)]))
    dicom(root / "mono.dcm", gradient.astype(np.uint16) * 16)

    (root / "zero_bytes.png").write_bytes(b"")
    png = (root / "gray8.png").read_bytes()
    (root / "truncated.png").write_bytes(png[: len(png) // 2])
    assert cv2.imwrite(str(root / "full.jpg"), gradient)
    jpeg = (root / "full.jpg").read_bytes()
    (root / "full.jpg").unlink()
    (root / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    mr = pydicom_file("MR_small.dcm").read_bytes()
    (root / "truncated.dcm").write_bytes(mr[:-1000])  # cut inside the pixel data
    # Window Center's VR bytes overwritten: pydicom parses the value lazily, when the window is applied.
    data = dicom(root / "corrupt_attribute.dcm", gradient.astype(np.uint16), WindowCenter=100, WindowWidth=200)
    raw = data.read_bytes()
    at = raw.index(b"\x28\x00\x50\x10DS") + 4
    data.write_bytes(raw[:at] + b"D\n" + raw[at + 2 :])
    shutil.copyfile(pydicom_file("rtplan.dcm"), root / "no_pixels.dcm")
    shutil.copyfile(pydicom_file("emri_small.dcm"), root / "multi_frame.dcm")
    (root / "text.png").write_text("patient notes, not an image\n")
    (root / "text.dcm").write_text("not a DICOM either\n")
    black_png(root / "huge.png", 10_000, 10_000)
    cv2.imwrite(str(root / "tiny.png"), np.zeros((8, 8), np.uint8))
    return root


@pytest.fixture(scope="module")
def records(folder) -> list[Record]:
    names = [*GOOD[:2], *BAD, *GOOD[2:]]  # readable images before, between and after the bad ones
    return [Record(f"p{index}", name, "normal", path=folder / name) for index, name in enumerate(names)]


def assert_rejected(reasons: dict[str, str], folder: Path) -> None:
    """Exactly the BAD images were skipped, each with its path and the expected reason."""
    assert set(reasons) == set(BAD)
    for name, phrase in BAD.items():
        assert phrase in reasons[name] and str(folder / name) in reasons[name], (name, reasons[name])
        assert reasons[name].startswith("ImageReadError: "), reasons[name]


def test_prediction_rejects_each_bad_image_and_predicts_the_rest(folder, records, tmp_path):
    torch.manual_seed(0)
    checkpoint = save_checkpoint(build_classifier("small_cnn", 3), CheckpointMeta("small_cnn", LABEL_ORDER, 32),
                                 tmp_path / "a.safetensors")
    result = predict_split(checkpoint, records, tmp_path / "a_test.csv", batch_size=4)
    assert_rejected({reject.filename: reject.reason for reject in result.rejected}, folder)
    assert result.table["filename"].tolist() == [name for name in (r.filename for r in records) if name in GOOD]
    assert np.isfinite(result.table[[f"prob_{label}" for label in LABEL_ORDER]].to_numpy()).all()


def test_training_preload_rejects_each_bad_image_and_keeps_the_rest(folder, records):
    images, kept, rejected = preload(records, 32)
    assert_rejected({reject.filename: reject.reason for reject in rejected}, folder)
    assert [records[index].filename for index in kept] == [r.filename for r in records if r.filename in GOOD]
    assert images.shape == (len(GOOD), 32, 32)


class NoText:
    """A detector that finds nothing: the stage's bookkeeping is under test here, not CRAFT."""

    config = TextConfig()

    def detect(self, images: list[np.ndarray]) -> list[list]:
        return [[] for _ in images]


def test_text_detection_records_each_bad_image_as_a_rejected_row(folder, records, tmp_path):
    table = detect_split(records, tmp_path / "detections.csv", detector=NoText(), split="test")
    assert_rejected({row.filename: row.reason for row in table.rows if row.status == "rejected"}, folder)
    assert [row.filename for row in table.rows if row.status == "ok"] == [
        r.filename for r in records if r.filename in GOOD]


def _peak_bytes(path: Path, **kwargs) -> int:
    """Peak memory (tracemalloc: Python objects and NumPy/OpenCV arrays) of read_image(path)."""
    tracemalloc.start()
    try:
        read_image(path, **kwargs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reading_stays_within_the_memory_bound_and_larger_images_are_refused_unread(folder, tmp_path):
    side = 2048
    noise = np.random.default_rng(0).integers(0, 4096, (side, side)).astype(np.uint16)
    png = tmp_path / "noise16.png"
    cv2.imwrite(str(png), noise * 16, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    dcm = dicom(tmp_path / "noise.dcm", noise, RescaleSlope=1, RescaleIntercept=0, WindowCenter=2048,
                WindowWidth=4096)
    # Bytes per pixel at the peak (the file's bytes included): measured 7.8 (PNG) and 36 (DICOM).
    assert _peak_bytes(png) / side**2 < 10
    assert _peak_bytes(dcm) / side**2 < 40
    assert MAX_PIXELS * 40 <= 2 * 2**30  # so one read stays under 2 GiB at the default limit

    # 10,000 × 10,000 (a valid PNG of 100 MP) is refused from its header: nothing near 100 MB is allocated.
    huge = folder / "huge.png"
    tracemalloc.start()
    try:
        with pytest.raises(ImageReadError, match="10000×10000"):
            read_image(huge)
        assert tracemalloc.get_traced_memory()[1] < huge.stat().st_size + 2**20
    finally:
        tracemalloc.stop()

    # The limit is a keyword: one pixel less than the image refuses it, the same way.
    with pytest.raises(ImageReadError, match=f"{side}×{side} pixels; expected at most 4,194,303") as error:
        read_image(png, max_pixels=side**2 - 1)
    assert str(png) in str(error.value) and "downscale" in str(error.value)
