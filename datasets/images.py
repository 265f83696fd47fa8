"""Radiographs on disk (PNG, JPEG, DICOM) to float32 H×W arrays in [0, 1], and back in the source's format.

The format is taken from the file's signature, not its extension. PNG/JPEG pixels are read as
stored (EXIF orientation is ignored); colour is converted to gray (ITU-R 601 weights, alpha
dropped); values are divided by the largest value of the file's bit depth (255, 4095 for 12-bit
JPEG, 65535). The size in the header is checked before any pixel is decoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from datasets.atomic import write_bytes
from datasets.dicom import read_dicom, write_dicom_like
from datasets.errors import (
    MAX_PIXELS,
    MIN_SIDE,
    ImageReadError,
    ImageWriteError,
    check_image_size,
    check_not_source,
    check_unit_image,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
EXPECTED = "expected a PNG, JPEG or DICOM (Part 10) image"
# JPEG start-of-frame markers: C0–CF except C4 (DHT), C8 (reserved) and CC (DAC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class Header:
    """What a PNG/JPEG header says: format ("png" or "jpeg"), size in pixels, bits per sample."""

    kind: str
    height: int
    width: int
    bits: int


def image_format(path: str | Path) -> str:
    """The format, "png", "jpeg" or "dicom", from the file's first bytes; raise ImageReadError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, f"file not found: {EXPECTED}")
    with path.open("rb") as handle:
        start = handle.read(132)
    if not start:
        raise ImageReadError(path, f"empty file (0 bytes): {EXPECTED}")
    if start.startswith(PNG_SIGNATURE):
        return "png"
    if start.startswith(JPEG_SIGNATURE):
        return "jpeg"
    if start[128:132] == b"DICM":
        return "dicom"
    raise ImageReadError(path, f"unrecognised file signature {start[:8]!r}: {EXPECTED}")


def parse_header(path: str | Path, data: bytes) -> Header:
    """Parse the PNG IHDR or JPEG start-of-frame in `data` (the file's bytes) without decoding pixels."""
    if data.startswith(PNG_SIGNATURE):
        if len(data) < 26 or data[12:16] != b"IHDR":
            raise ImageReadError(path, "truncated or corrupt PNG: expected an IHDR chunk after the signature")
        width, height, bits = struct.unpack(">IIB", data[16:25])
        return Header("png", height, width, bits)
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            break
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        if marker in _SOF_MARKERS and offset + 9 <= len(data):
            bits, height, width = struct.unpack(">BHH", data[offset + 4 : offset + 9])
            return Header("jpeg", height, width, bits)
        if marker == 0xDA:  # start of scan before any frame header
            break
        offset += 2 + length
    raise ImageReadError(path, "truncated or corrupt JPEG: expected a start-of-frame header before the image data")


def read_image(path: str | Path, *, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> np.ndarray:
    """Read a PNG, JPEG or DICOM radiograph to float32 (H, W) in [0, 1] (0 = black).

    Raises ImageReadError naming the file for a missing, empty, truncated, corrupt or non-image
    file, and for images outside the size limits (from the header, before decoding).
    """
    path = Path(path)
    if image_format(path) == "dicom":
        return read_dicom(path, max_pixels=max_pixels, min_side=min_side)
    data = path.read_bytes()
    header = parse_header(path, data)
    check_image_size(path, header.height, header.width, max_pixels=max_pixels, min_side=min_side)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.shape[:2] != (header.height, header.width):
        raise ImageReadError(path, f"cannot decode {header.kind.upper()} pixel data: truncated or corrupt file")
    gray = _to_gray(path, decoded)
    scale = 255 if gray.dtype == np.uint8 else 2**header.bits - 1
    pixels = gray.astype(np.float32)
    pixels /= scale  # in place: one float32 copy of the image at a time (the memory bound, errors.MAX_PIXELS)
    return pixels.clip(0, 1, out=pixels)


def write_image(path: str | Path, array: np.ndarray, *, like: str | Path, jpeg_quality: int = 95) -> Path:
    """Write `array` (H, W) in [0, 1] in the format and bit depth of the source image `like`.

    PNG: 16-bit if the source is 16-bit, else 8-bit grayscale. JPEG: 8-bit grayscale at
    `jpeg_quality`. DICOM: write_dicom_like (source header kept, new UIDs). Written atomically;
    writing over `like` itself is refused.
    """
    check_not_source(path, like)
    kind = image_format(like)
    if kind == "dicom":
        return write_dicom_like(like, array, path)
    header = parse_header(like, Path(like).read_bytes())
    pixels = check_unit_image(path, array)
    if kind == "jpeg" and header.bits > 8:
        raise ImageWriteError(path, f"source is a {header.bits}-bit JPEG: expected an 8-bit JPEG source")
    dtype, top = (np.uint16, 65535) if header.bits == 16 else (np.uint8, 255)
    quantised = np.rint(pixels * top).astype(dtype)
    options = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if kind == "jpeg" else []
    ok, encoded = cv2.imencode(".png" if kind == "png" else ".jpg", quantised, options)
    if not ok:
        raise ImageWriteError(path, f"OpenCV could not encode the array as {kind.upper()}")
    return write_bytes(path, encoded.tobytes())


def _to_gray(path: Path, decoded: np.ndarray) -> np.ndarray:
    """(H, W) from a decoded (H, W), (H, W, 3) BGR or (H, W, 4) BGRA array."""
    if decoded.ndim == 2:
        return decoded
    channels = decoded.shape[2]
    if channels == 3:
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2GRAY)
    if channels == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2GRAY)
    raise ImageReadError(path, f"decoded image has {channels} channels: expected gray, BGR or BGRA")
