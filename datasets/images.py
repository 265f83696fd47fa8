"""Radiographs on disk (PNG, JPEG, DICOM) to float32 H×W arrays in [0, 1], and back in the source's format.

The format is taken from the file's signature, not its extension. PNG/JPEG pixels are read as
stored (EXIF orientation is ignored); colour is converted to gray (ITU-R 601 weights, alpha
dropped); values are divided by the largest value of the file's bit depth (255, 4095 for 12-bit
JPEG, 65535). The size in the header is checked before any pixel is decoded.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, JpegImagePlugin

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


def write_image(path: str | Path, array: np.ndarray, *, like: str | Path, jpeg_quality: int | str = "keep",
                changed: np.ndarray | None = None) -> Path:
    """Write `array` (H, W) in [0, 1] stored as the source image `like` is: same format, bit depth, colour mode.

    PNG: the source's colour type (gray, gray+alpha, RGB or RGBA) and bit depth (8 or 16), the gray value in
    every colour channel and the source's alpha; with `changed` (H, W) bool only those pixels come from
    `array` and every other pixel keeps the source's stored values (all channels, exactly). The source's
    ancillary chunks that do not depend on the pixel values (colour space, text, resolution, EXIF; see
    _KEPT_PNG_CHUNKS) are kept; the output is not interlaced. Palette and 1/2/4-bit PNG sources are refused.
    JPEG: 8-bit, the source's colour mode (gray, or RGB with equal channels), chroma subsampling and
    progressive mode, re-encoded whole with Pillow; `jpeg_quality` "keep" uses the source's own quantisation
    tables, an integer 1–100 the standard tables at that quality. DICOM: write_dicom_like (source header kept,
    new UIDs). Written atomically; writing over `like` itself is refused.
    """
    check_not_source(path, like)
    kind = image_format(like)
    if kind == "dicom":
        return write_dicom_like(like, array, path)
    data = Path(like).read_bytes()
    header = parse_header(like, data)
    pixels = check_unit_image(path, array)
    if pixels.shape != (header.height, header.width):
        expected = (header.height, header.width)
        raise ImageWriteError(path, f"array has shape {pixels.shape}: expected the source's {expected}")
    if kind == "png":
        return write_bytes(path, _png_like(path, data, pixels, changed))
    if header.bits > 8:
        raise ImageWriteError(path, f"source is a {header.bits}-bit JPEG: expected an 8-bit JPEG source")
    return write_bytes(path, _jpeg_like(path, like, pixels, jpeg_quality))


# PNG colour types this module writes: type -> (name, samples per pixel); and the ancillary chunks copied
# from the source (their meaning does not depend on the pixel values; tIME, APNG frames, private chunks go).
_PNG_COLOUR_TYPES = {0: ("gray", 1), 2: ("RGB", 3), 4: ("gray+alpha", 2), 6: ("RGBA", 4)}
_KEPT_PNG_CHUNKS = frozenset({b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"cICP", b"mDCV", b"cLLI", b"sBIT", b"bKGD",
                              b"tRNS", b"pHYs", b"tEXt", b"zTXt", b"iTXt", b"eXIf"})
# cv2.IMREAD_UNCHANGED channel order -> PNG sample order, per colour type (gray+alpha decodes as BGRA).
_PNG_SAMPLES = {0: [0], 2: [2, 1, 0], 4: [0, 3], 6: [2, 1, 0, 3]}


def _png_chunks(path: str | Path, data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, whole chunk bytes: length, type, data, CRC) of every chunk of a PNG file's bytes."""
    chunks, offset = [], len(PNG_SIGNATURE)
    while offset + 12 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, end = data[offset + 4 : offset + 8], offset + 12 + length
        chunks.append((kind, data[offset:end]))
        offset = end
        if kind == b"IEND":
            return chunks
    raise ImageReadError(path, "truncated or corrupt PNG: expected an IEND chunk")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_like(path: str | Path, data: bytes, pixels: np.ndarray, changed: np.ndarray | None) -> bytes:
    """PNG bytes of `pixels` (H, W) in [0, 1] in the colour type and depth of the source PNG `data`."""
    width, height, bits, colour = struct.unpack(">IIBB", data[16:26])
    if colour not in _PNG_COLOUR_TYPES or bits not in (8, 16):
        raise ImageWriteError(path, f"source is a {bits}-bit PNG of colour type {colour}: expected an 8- or 16-bit "
                                    "gray, gray+alpha, RGB or RGBA PNG source")
    _, samples = _PNG_COLOUR_TYPES[colour]
    dtype = np.uint16 if bits == 16 else np.uint8
    stored = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if stored is None:
        raise ImageWriteError(path, "cannot decode the source PNG to copy its colour mode")
    stored = stored.reshape(height, width, -1)[..., _PNG_SAMPLES[colour]].astype(dtype)
    gray = np.rint(pixels * (2**bits - 1)).astype(dtype)
    where = np.ones((height, width), bool) if changed is None else np.asarray(changed, bool)
    colours = samples - (colour in (4, 6))  # the alpha sample, if any, stays the source's
    stored[..., :colours] = np.where(where[..., None], gray[..., None], stored[..., :colours])
    chunks = _png_chunks(path, data)
    first_data = next(i for i, (kind, _) in enumerate(chunks) if kind == b"IDAT")
    kept = [(i, raw) for i, (kind, raw) in enumerate(chunks) if kind in _KEPT_PNG_CHUNKS]
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, 0))
    return (PNG_SIGNATURE + ihdr + b"".join(raw for i, raw in kept if i < first_data)
            + _chunk(b"IDAT", zlib.compress(_png_rows(stored, bits), 6))
            + b"".join(raw for i, raw in kept if i > first_data) + _chunk(b"IEND", b""))


def _png_rows(stored: np.ndarray, bits: int) -> bytes:
    """The filtered scanlines of `stored` (H, W, samples): PNG filter 1 ("Sub") on every row, big-endian samples."""
    height = stored.shape[0]
    raw = np.ascontiguousarray(stored.astype(">u2" if bits == 16 else np.uint8)).view(np.uint8).reshape(height, -1)
    step = stored.shape[2] * bits // 8  # bytes per pixel
    filtered = raw.copy()
    filtered[:, step:] = raw[:, step:] - raw[:, :-step]  # uint8 arithmetic wraps modulo 256, as the filter asks
    return np.hstack([np.ones((height, 1), np.uint8), filtered]).tobytes()


def _jpeg_like(path: str | Path, like: str | Path, pixels: np.ndarray, quality: int | str) -> bytes:
    """JPEG bytes of `pixels` (H, W) in [0, 1] encoded as the source JPEG `like` (see write_image)."""
    with Image.open(like) as source:
        if source.mode not in ("L", "RGB"):
            raise ImageWriteError(path, f"source is a {source.mode} JPEG: expected a gray or RGB JPEG source")
        mode = source.mode
        options = {"subsampling": JpegImagePlugin.get_sampling(source),
                   "progressive": bool(source.info.get("progressive"))}
        options.update({key: source.info[key] for key in ("icc_profile", "exif", "dpi", "comment")
                        if source.info.get(key)})
        if quality == "keep":
            options["qtables"] = source.quantization
        else:
            options["quality"] = int(quality)
    image = Image.fromarray(np.rint(pixels * 255).astype(np.uint8), "L").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


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
