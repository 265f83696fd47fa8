"""PNG/JPEG/DICOM reading to float32 [0, 1] with known pixels, bad files, and writes in the source's format."""

import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, JpegImagePlugin, PngImagePlugin
from pydicom.data import get_testdata_file

from datasets.errors import ImageReadError, ImageWriteError
from datasets.images import image_format, parse_header, read_image, write_image

GRADIENT8 = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32).astype(np.uint8)  # every value 0..255
GRADIENT16 = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)
SMOOTH8 = np.add.outer(np.arange(32), np.arange(32)).astype(np.uint8) * 4  # 0..248, JPEG-friendly


def save(path, array):
    assert cv2.imwrite(str(path), array)
    return path


def png_bytes(width, height, bits=8, color_type=0, rows=b""):
    """A PNG from its parts: IHDR, one IDAT with `rows` (filter bytes included), IEND."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bits, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_8_and_16_bit_grayscale_png_read_to_known_values(tmp_path):
    eight = read_image(save(tmp_path / "8.png", GRADIENT8))
    sixteen = read_image(save(tmp_path / "16.png", GRADIENT16))
    assert eight.dtype == sixteen.dtype == np.float32 and eight.shape == (32, 32)
    np.testing.assert_array_equal(eight, GRADIENT8.astype(np.float32) / 255)
    np.testing.assert_array_equal(sixteen, GRADIENT16.astype(np.float32) / 65535)


def test_colour_is_converted_to_gray_with_bt601_weights(tmp_path):
    bgr = np.zeros((16, 16, 3), np.uint8)
    bgr[:, :8] = (0, 0, 255)  # red: 0.299 · 255 ≈ 76
    bgr[:, 8:] = (255, 0, 0)  # blue: 0.114 · 255 ≈ 29
    gray = read_image(save(tmp_path / "rgb.png", bgr))
    np.testing.assert_allclose(gray[0, [0, 15]], [76 / 255, 29 / 255], atol=1 / 255)
    bgra = np.dstack([bgr, np.full((16, 16), 7, np.uint8)])
    np.testing.assert_array_equal(read_image(save(tmp_path / "rgba.png", bgra)), gray)
    rgb16 = bgr.astype(np.uint16) * 257
    np.testing.assert_allclose(read_image(save(tmp_path / "rgb16.png", rgb16)), gray, atol=1 / 255)


def test_low_bit_depth_png_is_scaled_to_unit_range(tmp_path):
    # 1-bit gray, 16×16: left half black, right half white.
    rows = b"".join(b"\x00\x00\xff" for _ in range(16))
    path = tmp_path / "1bit.png"
    path.write_bytes(png_bytes(16, 16, bits=1, rows=rows))
    image = read_image(path)
    np.testing.assert_array_equal(image[:, :8], 0)
    np.testing.assert_array_equal(image[:, 8:], 1)


def test_jpeg_reads_close_to_what_was_encoded(tmp_path):
    image = read_image(save(tmp_path / "a.jpg", SMOOTH8))
    assert image_format(tmp_path / "a.jpg") == "jpeg" and image.shape == (32, 32)
    assert np.abs(image - SMOOTH8 / 255).max() < 0.03


def test_format_comes_from_the_signature_not_the_extension(tmp_path):
    save(tmp_path / "real.png", GRADIENT8)
    (tmp_path / "named.jpg").write_bytes((tmp_path / "real.png").read_bytes())
    np.testing.assert_array_equal(read_image(tmp_path / "named.jpg"), read_image(tmp_path / "real.png"))
    dicom = get_testdata_file("MR_small.dcm", download=False)
    assert image_format(dicom) == "dicom" and read_image(dicom).shape == (64, 64)


def _read_error(path, **kwargs):
    with pytest.raises(ImageReadError) as caught:
        read_image(path, **kwargs)
    assert str(path) in str(caught.value)
    return str(caught.value)


def test_bad_files_get_clear_errors(tmp_path):
    assert "file not found" in _read_error(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    assert "empty file (0 bytes)" in _read_error(tmp_path / "empty.png")
    (tmp_path / "notes.png").write_text("this is a text file, not an image")
    assert "expected a PNG, JPEG or DICOM" in _read_error(tmp_path / "notes.png")
    data = save(tmp_path / "full.png", GRADIENT8).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in _read_error(tmp_path / "cut.png")
    (tmp_path / "header-only.png").write_bytes(data[:20])
    assert "IHDR" in _read_error(tmp_path / "header-only.png")
    jpeg = save(tmp_path / "full.jpg", GRADIENT8).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    assert "truncated or corrupt" in _read_error(tmp_path / "cut.jpg")
    (tmp_path / "sof-less.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x04ab\xff\xda\x00\x02")
    assert "start-of-frame" in _read_error(tmp_path / "sof-less.jpg")


def test_huge_and_tiny_images_are_rejected_from_the_header(tmp_path):
    # The header claims 10,000×10,000 but there are no pixels: only the header can have been read.
    (tmp_path / "huge.png").write_bytes(png_bytes(10_000, 10_000))
    assert "10000×10000" in _read_error(tmp_path / "huge.png")
    jpeg = bytearray(save(tmp_path / "small.jpg", GRADIENT8).read_bytes())
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 10_000, 10_000)
    (tmp_path / "huge.jpg").write_bytes(bytes(jpeg))
    assert parse_header(tmp_path / "huge.jpg", bytes(jpeg)).height == 10_000
    assert "at most" in _read_error(tmp_path / "huge.jpg")
    assert "at least 16" in _read_error(save(tmp_path / "tiny.png", np.zeros((4, 40), np.uint8)))
    assert read_image(tmp_path / "tiny.png", min_side=4).shape == (4, 40)


@pytest.mark.parametrize(
    ("name", "source", "tolerance"),
    [("8.png", GRADIENT8, 0.5 / 255), ("16.png", GRADIENT16, 0.5 / 65535), ("8.jpg", SMOOTH8, 0.02)],
)
def test_write_image_round_trips_in_the_source_format_and_depth(tmp_path, name, source, tolerance):
    like = save(tmp_path / name, source)
    array = np.random.default_rng(1).random((32, 32)) if like.suffix == ".png" else read_image(like)
    out = write_image(tmp_path / "out" / name, array, like=like)
    assert image_format(out) == image_format(like)
    assert parse_header(out, out.read_bytes()).bits == parse_header(like, like.read_bytes()).bits
    assert np.abs(read_image(out) - array).max() <= tolerance + 1e-7


def test_write_image_like_a_dicom_writes_a_dicom(tmp_path):
    like = get_testdata_file("MR_small.dcm", download=False)
    array = read_image(like)
    out = write_image(tmp_path / "mr.dcm", array, like=like)
    assert image_format(out) == "dicom"
    np.testing.assert_allclose(read_image(out), array, atol=1e-4)


def test_write_image_refuses_bad_arrays_and_the_source_itself(tmp_path):
    like = save(tmp_path / "a.png", GRADIENT8)
    before = like.read_bytes()
    with pytest.raises(ImageWriteError, match="overwrite the source"):
        write_image(like, np.zeros((32, 32)), like=like)
    with pytest.raises(ImageWriteError, match="expected H×W"):
        write_image(tmp_path / "b.png", np.zeros((32, 32, 3)), like=like)
    with pytest.raises(ImageWriteError, match="NaN"):
        write_image(tmp_path / "b.png", np.full((32, 32), np.nan), like=like)
    assert like.read_bytes() == before and not (tmp_path / "b.png").exists()


@pytest.mark.parametrize(
    ("mode", "bits", "colour_type", "channels"),
    [("L", 8, 0, 1), ("I;16", 16, 0, 1), ("RGB", 8, 2, 3), ("RGBA", 8, 6, 4), ("LA", 8, 4, 2)],
)
def test_write_image_keeps_the_png_sources_colour_type_and_depth(tmp_path, mode, bits, colour_type, channels):
    top = 2**bits - 1
    stored = (np.arange(32 * 32).reshape(32, 32) * top // (32 * 32 - 1)).astype(np.uint16 if bits == 16 else np.uint8)
    source = Image.fromarray(stored)  # "L", or "I;16" for 16 bits
    if mode in ("RGB", "RGBA", "LA"):
        source = source.convert(mode)
    if mode in ("RGBA", "LA"):
        source.putalpha(Image.fromarray(np.full((32, 32), 200, np.uint8)))
    source.save(tmp_path / "like.png")
    array = np.random.default_rng(2).random((32, 32))
    out = write_image(tmp_path / "out.png", array, like=tmp_path / "like.png")
    data = out.read_bytes()
    assert data[24:26] == bytes([bits, colour_type])  # IHDR bit depth and colour type, as the source's
    decoded = cv2.imread(str(out), cv2.IMREAD_UNCHANGED).reshape(32, 32, -1)
    expected = np.rint(array * top)
    for channel in range(min(decoded.shape[2], 3)):  # the gray value in every colour channel
        np.testing.assert_array_equal(decoded[..., channel], expected)
    if channels in (2, 4):
        np.testing.assert_array_equal(decoded[..., 3], 200)  # the source's alpha
    np.testing.assert_allclose(read_image(out), array, atol=0.5 / top + 1e-7)


def test_write_image_with_changed_keeps_every_other_stored_value_and_the_chunks(tmp_path):
    rng = np.random.default_rng(3)
    colour = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)  # a colour source: channels differ
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "kept")
    Image.fromarray(colour, "RGB").save(tmp_path / "like.png", pnginfo=info, dpi=(72, 72))
    changed = np.zeros((32, 48), bool)
    changed[8:20, 10:30] = True
    out = write_image(tmp_path / "out.png", np.full((32, 48), 0.5), like=tmp_path / "like.png", changed=changed)
    decoded = np.asarray(Image.open(out))
    np.testing.assert_array_equal(decoded[~changed], colour[~changed])
    assert (decoded[changed] == 128).all()
    with Image.open(out) as written:
        assert written.info["Comment"] == "kept" and round(written.info["dpi"][0]) == 72


def test_write_image_refuses_png_sources_it_cannot_reproduce(tmp_path):
    rows = b"".join(b"\x00\x00\xff" for _ in range(16))
    (tmp_path / "1bit.png").write_bytes(png_bytes(16, 16, bits=1, rows=rows))
    with pytest.raises(ImageWriteError, match="expected an 8- or 16-bit"):
        write_image(tmp_path / "out.png", np.zeros((16, 16)), like=tmp_path / "1bit.png")
    save(tmp_path / "a.png", GRADIENT8)
    with pytest.raises(ImageWriteError, match="expected the source's"):
        write_image(tmp_path / "out.png", np.zeros((16, 16)), like=tmp_path / "a.png")
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_jpeg_is_re_encoded_with_the_sources_tables_mode_and_subsampling(tmp_path, mode):
    picture = Image.fromarray(np.tile(SMOOTH8, (2, 2)), "L").convert(mode)
    picture.save(tmp_path / "like.jpg", quality=60, subsampling="4:2:0")
    array = read_image(tmp_path / "like.jpg")
    kept = write_image(tmp_path / "kept.jpg", array, like=tmp_path / "like.jpg")
    fixed = write_image(tmp_path / "fixed.jpg", array, like=tmp_path / "like.jpg", jpeg_quality=90)
    with Image.open(tmp_path / "like.jpg") as like, Image.open(kept) as a, Image.open(fixed) as b:
        assert a.mode == b.mode == like.mode
        assert a.quantization == like.quantization and b.quantization != like.quantization
        assert JpegImagePlugin.get_sampling(a) == JpegImagePlugin.get_sampling(like)
    assert np.abs(read_image(kept) - array).max() < 0.03  # the same tables again: little more loss
