"""DICOM pixels: hand-built files with known answers, real radiographs from pydicom-data, derived files."""

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from datasets.dicom import read_dicom, read_header, write_dicom_like
from datasets.errors import DicomWarning, ImageReadError, ImageWriteError
from datasets.images import read_image

ROOT = Path(__file__).parents[2]
SECRET_NAME, SECRET_ID = "SECRETNAME^PATIENT", "SECRET-ID-4711"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


def make_dicom(path, stored, *, photometric="MONOCHROME2", bits_stored=None, raw=None, **attributes):
    """A single-frame DX file with `stored` pixels (16×16 or more); `raw` overrides the pixel bytes."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = DX_FOR_PRESENTATION, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID = "DX", SECRET_NAME, SECRET_ID
    ds.set_pixel_data(stored, photometric, bits_stored or stored.dtype.itemsize * 8)
    if raw is not None:
        ds.PixelData = raw
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def tile(values, dtype):
    """`values` repeated over a 16×16 image (the smallest accepted size)."""
    return np.resize(np.asarray(values, dtype=dtype), (16, 16))


def real(name):
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} missing: pydicom-data==1.0.0 must be installed"
    return path


def test_rescale_then_linear_window_gives_known_pixels(tmp_path):
    # values = 2·stored − 100 = [−100, 100, 300, 500]; LINEAR c=200.5 w=401 spans [0, 400].
    path = make_dicom(
        tmp_path / "a.dcm",
        tile([0, 100, 200, 300], np.uint16),
        RescaleSlope=2,
        RescaleIntercept=-100,
        WindowCenter=200.5,
        WindowWidth=401,
    )
    np.testing.assert_allclose(read_dicom(path), tile([0, 0.25, 0.75, 1], np.float32), atol=1e-6)


def test_linear_exact_and_sigmoid_windows(tmp_path):
    stored = tile([0, 100, 200, 300, 400], np.uint16)
    exact = make_dicom(tmp_path / "e.dcm", stored, WindowCenter=200, WindowWidth=400, VOILUTFunction="LINEAR_EXACT")
    np.testing.assert_allclose(read_dicom(exact), tile([0, 0.25, 0.5, 0.75, 1], np.float32), atol=1e-6)
    sigmoid = make_dicom(tmp_path / "s.dcm", stored, WindowCenter=200, WindowWidth=100, VOILUTFunction="SIGMOID")
    expected = 1 / (1 + np.exp(-4 * (stored - 200.0) / 100))
    np.testing.assert_allclose(read_dicom(sigmoid), expected, atol=1e-5)


def test_signed_pixels_window(tmp_path):
    path = make_dicom(
        tmp_path / "s.dcm",
        tile([-1000, 0, 500, 1000], np.int16),
        WindowCenter=0,
        WindowWidth=2000,
        VOILUTFunction="LINEAR_EXACT",
    )
    np.testing.assert_allclose(read_dicom(path), tile([0, 0.5, 0.75, 1], np.float32), atol=1e-6)


def _lut_item(entries, bits):
    item = Dataset()
    item.add_new(0x00283002, "US", [len(entries), 0, bits])  # LUT Descriptor: entries, first value, bits
    item.add_new(0x00283006, "US", entries)  # LUT Data
    return item


def test_voi_lut_sequence_is_preferred_to_the_window(tmp_path):
    path = make_dicom(
        tmp_path / "v.dcm",
        tile([0, 1, 2, 3], np.uint16),
        VOILUTSequence=[_lut_item([0, 51, 102, 255], 8)],
        WindowCenter=1000,
        WindowWidth=10,
    )
    np.testing.assert_allclose(read_dicom(path), tile([0, 0.2, 0.4, 1], np.float32), atol=1e-6)


def test_modality_lut_then_fallback_stretch_without_voi(tmp_path):
    path = make_dicom(
        tmp_path / "m.dcm", tile([0, 1, 2, 3], np.uint16), ModalityLUTSequence=[_lut_item([100, 400, 200, 300], 16)]
    )
    np.testing.assert_allclose(read_dicom(path), tile([0, 1, 1 / 3, 2 / 3], np.float32), atol=1e-6)


def test_bits_stored_masks_the_unused_high_bits(tmp_path):
    # 12-bit data in 16-bit words whose top 4 bits carry garbage (e.g. an overlay plane).
    values = tile([0, 1024, 2048, 4095], np.uint16)
    path = make_dicom(
        tmp_path / "b.dcm", values, bits_stored=12, raw=(values | 0xF000).tobytes(), WindowCenter=2048, WindowWidth=4096
    )
    np.testing.assert_allclose(read_dicom(path), values / 4095, atol=1e-6)


def test_monochrome1_is_inverted_to_display_like_monochrome2(tmp_path):
    stored = tile([0, 1000, 3000, 4095], np.uint16)
    window = {"WindowCenter": 2048, "WindowWidth": 4096, "bits_stored": 12}
    mono2 = read_dicom(make_dicom(tmp_path / "2.dcm", stored, **window))
    mono1 = read_dicom(make_dicom(tmp_path / "1.dcm", stored, photometric="MONOCHROME1", **window))
    np.testing.assert_allclose(mono1, 1 - mono2, atol=1e-6)
    assert mono1[0, 0] == 1 and mono1[0, 3] == 0


def test_for_processing_images_are_warned_about(tmp_path):
    path = make_dicom(tmp_path / "p.dcm", tile(range(16), np.uint16), PresentationIntentType="FOR PROCESSING")
    with pytest.warns(DicomWarning, match="FOR PROCESSING"):
        read_dicom(path)


@pytest.fixture(scope="module")
def radiograph():
    """RG1 (CR chest, MONOCHROME1): uncompressed and JPEG 2000 lossless; stored values of the former."""
    return read_dicom(real("RG1_UNCR.dcm")), read_dicom(real("RG1_J2KR.dcm")), pydicom.dcmread(real("RG1_UNCR.dcm"))


def test_real_radiograph_and_its_jpeg2000_twin_decode_alike(radiograph):
    uncompressed, jpeg2000, _ = radiograph
    assert uncompressed.shape == (1955, 1841) and uncompressed.dtype == np.float32
    assert 0 <= uncompressed.min() and uncompressed.max() <= 1
    assert np.abs(uncompressed - jpeg2000).max() < 1e-3


def test_real_radiograph_lungs_are_darker_than_the_mediastinum(radiograph):
    image, _, ds = radiograph
    height, width = image.shape
    rows = slice(int(0.35 * height), int(0.6 * height))
    lungs = [slice(int(0.2 * width), int(0.35 * width)), slice(int(0.65 * width), int(0.8 * width))]
    mediastinum = slice(int(0.46 * width), int(0.54 * width))
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    for lung in lungs:
        assert image[rows, lung].mean() + 0.15 < image[rows, mediastinum].mean()
        # The stored values say the opposite: without the inversion the lungs would be bright.
        assert ds.pixel_array[rows, lung].mean() > ds.pixel_array[rows, mediastinum].mean()


@pytest.mark.parametrize("twin", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"])
def test_compressed_transfer_syntaxes_decode_to_the_uncompressed_twin(twin):
    np.testing.assert_array_equal(read_dicom(real(twin)), read_dicom(real("MR_small.dcm")))


def test_jpeg_lossless_process_14_decodes():
    image = read_dicom(real("JPGLosslessP14SV1_1s_1f_8b.dcm"))
    assert image.shape == (768, 1024) and image.std() > 0.05


def _read_error(path, **kwargs):
    with pytest.raises(ImageReadError) as caught:
        read_dicom(path, **kwargs)
    message = str(caught.value)
    assert str(path) in message and "SECRET" not in message
    return message


def test_bad_dicoms_get_clear_errors_without_patient_identifiers(tmp_path):
    good = make_dicom(tmp_path / "good.dcm", tile(range(16), np.uint16))
    (tmp_path / "empty.dcm").write_bytes(b"")
    assert "empty file" in _read_error(tmp_path / "empty.dcm")
    (tmp_path / "text.dcm").write_text("not a dicom at all")
    assert "not a DICOM file" in _read_error(tmp_path / "text.dcm")
    (tmp_path / "cut.dcm").write_bytes(good.read_bytes()[:400])
    assert "no Pixel Data" in _read_error(tmp_path / "cut.dcm")
    short = make_dicom(tmp_path / "short.dcm", tile(range(16), np.uint16), raw=b"\0" * 100)
    assert "cannot decode pixel data" in _read_error(short)
    frames = make_dicom(tmp_path / "frames.dcm", np.zeros((2, 16, 16), np.uint16))
    assert "multi-frame DICOM (2 frames)" in _read_error(frames)
    assert "RT Plan Storage" in _read_error(real("rtplan.dcm"))
    assert "PALETTE COLOR" in _read_error(real("examples_palette.dcm"))
    # A value pydicom parses only when it is used (Window Center's VR bytes overwritten).
    window = make_dicom(tmp_path / "window.dcm", tile(range(16), np.uint16), WindowCenter=8, WindowWidth=16)
    raw = window.read_bytes()
    at = raw.index(b"\x28\x00\x50\x10DS") + 4
    window.write_bytes(raw[:at] + b"D\n" + raw[at + 2 :])
    assert "corrupt DICOM attribute (NotImplementedError)" in _read_error(window)


@pytest.mark.parametrize("name", ["SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm"])
def test_baseline_jpeg_dicom_decodes_close_to_its_uncompressed_twin(name):
    # YBR_FULL and YBR_FULL_422 lossy JPEG (decoded by Pillow) of the RGB image SC_rgb.dcm.
    np.testing.assert_allclose(read_dicom(real(name)), read_dicom(real("SC_rgb.dcm")), atol=0.04)


def test_corrupt_baseline_jpeg_dicom_never_aborts_the_process(tmp_path):
    # python-gdcm, first in pydicom's plugin order, calls abort() on this file (the 0xFF of the second
    # DHT marker overwritten); it is read in a subprocess, so a regression fails here instead of killing pytest.
    data = bytearray(Path(real("SC_rgb_jpeg_dcmtk.dcm")).read_bytes())
    first_dht = data.index(b"\xff\xc4", data.index(b"\xff\xd8\xff"))
    data[data.index(b"\xff\xc4", first_dht + 2)] = ord("M")
    path = tmp_path / "corrupt_jpeg.dcm"
    path.write_bytes(bytes(data))
    code = ("import sys\nfrom datasets.errors import ImageReadError\nfrom datasets.images import read_image\n"
            "try:\n    print(read_image(sys.argv[1]).shape)\nexcept ImageReadError as error:\n    print(error)\n")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300,
                            cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "(100, 100)"  # Pillow decodes what is left of the scan


def test_image_size_is_checked_from_the_header_before_decoding(tmp_path):
    huge = make_dicom(tmp_path / "huge.dcm", tile(range(16), np.uint16), Rows=10_000, Columns=10_000)
    assert "10000×10000" in _read_error(huge) and "at most" in _read_error(huge)
    tiny = make_dicom(tmp_path / "tiny.dcm", np.zeros((4, 4), np.uint16))
    assert "at least 16" in _read_error(tiny)


def test_derived_dicom_keeps_header_and_reads_back_as_written(tmp_path):
    stored = np.resize(np.arange(0, 4096, 7, dtype=np.uint16), (32, 32))
    source = make_dicom(
        tmp_path / "src.dcm",
        stored,
        photometric="MONOCHROME1",
        bits_stored=12,
        RescaleSlope=2,
        RescaleIntercept=-5,
        WindowCenter=3000,
        WindowWidth=5000,
        BurnedInAnnotation="YES",
        ImageType=["ORIGINAL"],
    )
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    array = np.random.default_rng(0).random((32, 32))
    out = write_dicom_like(source, array, tmp_path / "out" / "clean.dcm", burned_in_text_removed=True)
    np.testing.assert_allclose(read_dicom(out), array, atol=0.5 / 4095 + 1e-6)

    old, new = pydicom.dcmread(source), pydicom.dcmread(out)
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before
    assert new.SOPInstanceUID != old.SOPInstanceUID and new.SeriesInstanceUID != old.SeriesInstanceUID
    assert new.file_meta.MediaStorageSOPInstanceUID == new.SOPInstanceUID
    assert new.StudyInstanceUID == old.StudyInstanceUID and new.PatientID == SECRET_ID
    assert (new.PhotometricInterpretation, new.BitsAllocated, new.BitsStored) == ("MONOCHROME1", 16, 12)
    assert new.BurnedInAnnotation == "NO" and new.ImageType[0] == "DERIVED" and new.DerivationDescription
    assert new.SourceImageSequence[0].ReferencedSOPInstanceUID == old.SOPInstanceUID


def test_derived_dicom_keeps_burned_in_annotation_unless_asked(tmp_path):
    source = make_dicom(tmp_path / "src.dcm", tile(range(16), np.uint16), BurnedInAnnotation="YES")
    out = write_dicom_like(source, np.zeros((16, 16)), tmp_path / "out.dcm")
    assert pydicom.dcmread(out).BurnedInAnnotation == "YES"


def test_derived_dicom_from_real_jpeg2000_source_is_uncompressed(tmp_path, radiograph):
    _, jpeg2000, _ = radiograph
    out = write_dicom_like(real("RG1_J2KR.dcm"), jpeg2000, tmp_path / "rg1.dcm")
    assert read_header(out).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_allclose(read_image(out), jpeg2000, atol=0.5 / 32767 + 1e-6)


def test_derived_dicom_refuses_bad_input(tmp_path):
    source = make_dicom(tmp_path / "src.dcm", tile(range(16), np.uint16))
    with pytest.raises(ImageWriteError, match="overwrite the source"):
        write_dicom_like(source, np.zeros((16, 16)), source)
    with pytest.raises(ImageWriteError, match="expected the source's"):
        write_dicom_like(source, np.zeros((8, 8)), tmp_path / "o.dcm")
    with pytest.raises(ImageWriteError, match=r"outside \[0, 1\]"):
        write_dicom_like(source, np.full((16, 16), 1.5), tmp_path / "o.dcm")
    assert not (tmp_path / "o.dcm").exists()
