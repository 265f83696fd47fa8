"""DICOM radiographs: stored pixels to a display-ready float32 H×W in [0, 1], and derived DICOMs.

Reading follows PS3.3: stored values (Bits Stored respected) → Modality LUT (Rescale Slope/Intercept
or LUT sequence) → VOI LUT (VOI LUT sequence, else Window Center/Width with LINEAR, LINEAR_EXACT or
SIGMOID) → [0, 1] over the VOI output range → MONOCHROME1 inverted, so that 0 is always black. When
the file has neither a VOI LUT nor a window, the modality values are stretched linearly from their
minimum to their maximum. Compressed transfer syntaxes decode through pydicom's plugins
(pylibjpeg-openjpeg for JPEG 2000, Pillow for baseline JPEG, pydicom itself for RLE, python-gdcm for
JPEG Lossless and JPEG-LS). Header values are parsed lazily, so a corrupt value can surface at any
step: every failure becomes an ImageReadError naming the file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.pixels.processing import apply_windowing
from pydicom.uid import generate_uid

from datasets.atomic import atomic_path
from datasets.errors import (
    MAX_PIXELS,
    MIN_SIDE,
    DicomWarning,
    ImageReadError,
    ImageWriteError,
    check_image_size,
    check_not_source,
    check_unit_image,
)

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
DERIVATION = "Pixel data modified by cxr-audit"
# Header values that describe the old stored pixels and would be wrong for the new ones.
_STALE_PIXEL_KEYWORDS = (
    "ModalityLUTSequence",
    "VOILUTSequence",
    "VOILUTFunction",
    "WindowCenterWidthExplanation",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
)
# python-gdcm, first in pydicom's plugin order, aborts the whole process (an uncaught C++ exception) on
# some corrupt baseline JPEG data, so it decodes only what no other installed plugin can (JPEG Lossless,
# JPEG-LS); these decode the same files to the same pixels and fail with an exception.
_SAFER_PLUGINS = ("pylibjpeg", "pillow")


def read_dicom(path: str | Path, *, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> np.ndarray:
    """Read a single-frame DICOM image to float32 (H, W) in [0, 1], displayed like MONOCHROME2.

    RGB/YBR images are converted to gray over their Bits Stored range. Warns (DicomWarning) on
    FOR PROCESSING images; raises ImageReadError for anything that is not a readable single-frame
    image within the size limits (checked from the header, before decoding).
    """
    ds = read_header(path, max_pixels=max_pixels, min_side=min_side)
    try:
        for_processing = ds.get("PresentationIntentType", "") == "FOR PROCESSING"
        stored = _decode(path, ds)
        if ds.PhotometricInterpretation in MONOCHROME:
            image = _display(ds, stored)
        else:
            gray = stored.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
            image = (gray / (2**ds.BitsStored - 1)).clip(0, 1).astype(np.float32)
    except ImageReadError:
        raise
    except Exception as err:  # a lazily parsed value; pydicom's message may quote it, so it is not shown
        raise ImageReadError(
            path, f"corrupt DICOM attribute ({type(err).__name__}): expected readable image attributes"
        ) from err
    if for_processing:
        warnings.warn(
            f"{path}: FOR PROCESSING image (raw detector data): its look differs from FOR PRESENTATION images",
            DicomWarning,
            stacklevel=2,
        )
    return image


def read_header(path: str | Path, *, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> Dataset:
    """The data set of a single-frame DICOM image, pixel data not yet decoded; raise ImageReadError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "file not found: expected a DICOM file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes): expected a DICOM file")
    try:
        ds = pydicom.dcmread(path, defer_size="1 MB")
        _check_image_module(path, ds, max_pixels, min_side)
    except ImageReadError:
        raise
    except InvalidDicomError as err:
        raise ImageReadError(path, "not a DICOM file: expected a 128-byte preamble followed by 'DICM'") from err
    except Exception as err:  # any parse failure; pydicom's message may quote header values, so it is not shown
        raise ImageReadError(
            path, f"corrupt DICOM header ({type(err).__name__}): expected a readable data set"
        ) from err
    return ds


def _check_image_module(path: Path, ds: Dataset, max_pixels: int, min_side: int) -> None:
    """Raise ImageReadError unless `ds` is a single-frame image within the size limits."""
    if "PixelData" not in ds:
        kind = getattr(ds.get("SOPClassUID"), "name", "unknown SOP class")
        raise ImageReadError(
            path, f"no Pixel Data (7FE0,0010) in this {kind} DICOM (non-image, truncated or corrupt): expected an image"
        )
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames != 1:
        raise ImageReadError(path, f"multi-frame DICOM ({frames} frames): expected a single-frame radiograph")
    if "Rows" not in ds or "Columns" not in ds:
        raise ImageReadError(path, "DICOM without Rows/Columns: expected an image pixel module")
    check_image_size(path, ds.Rows, ds.Columns, max_pixels=max_pixels, min_side=min_side)
    interpretation = ds.get("PhotometricInterpretation", "")
    if interpretation not in (*MONOCHROME, "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"):
        raise ImageReadError(path, f"photometric interpretation {interpretation!r}: expected MONOCHROME1/2 or RGB")


def write_dicom_like(
    source_path: str | Path,
    array: np.ndarray,
    out_path: str | Path,
    *,
    burned_in_text_removed: bool = False,
    derivation: str = DERIVATION,
) -> Path:
    """Write `array` (H, W) in [0, 1] as a derived DICOM that keeps the source's header.

    The new file gets new SOP Instance and Series UIDs, Image Type DERIVED, `derivation` as
    Derivation Description, a Source Image Sequence pointing at the source and, when
    `burned_in_text_removed`, Burned In Annotation "NO" (PS3.15 Annex E). Pixels are stored in the
    source's Bits Allocated/Stored, signedness and MONOCHROME1/2, uncompressed (Explicit VR Little
    Endian), as display values: the Modality LUT becomes identity and the window spans the full
    stored range, so read_dicom returns `array` (to the stored precision). `array` must have the
    source's shape (pixel spacing stays valid). The source file is only read.
    """
    check_not_source(out_path, source_path)
    ds = read_header(source_path)
    pixels = check_unit_image(out_path, array)
    if pixels.shape != (ds.Rows, ds.Columns):
        raise ImageWriteError(
            out_path, f"array has shape {pixels.shape}: expected the source's {(ds.Rows, ds.Columns)}"
        )
    if ds.PhotometricInterpretation not in MONOCHROME or ds.BitsAllocated not in (8, 16):
        raise ImageWriteError(
            out_path,
            f"source is {ds.PhotometricInterpretation}, {ds.BitsAllocated}-bit: expected MONOCHROME1/2, 8 or 16 bit",
        )
    signed = ds.get("PixelRepresentation", 0) == 1
    low, high = (-(2 ** (ds.BitsStored - 1)), 2 ** (ds.BitsStored - 1) - 1) if signed else (0, 2**ds.BitsStored - 1)
    display = 1 - pixels if ds.PhotometricInterpretation == "MONOCHROME1" else pixels
    stored = np.rint(low + display * (high - low)).astype(f"{'int' if signed else 'uint'}{ds.BitsAllocated}")

    source_sop = (ds.get("SOPClassUID"), ds.get("SOPInstanceUID"))
    for keyword in _STALE_PIXEL_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    # LINEAR window that maps every stored value to itself (PS3.3 C.11.2.1.2.1).
    ds.WindowCenter, ds.WindowWidth = (low + high + 1) / 2, high - low + 1
    ds.set_pixel_data(stored, ds.PhotometricInterpretation, ds.BitsStored)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.ImageType = ["DERIVED", *list(ds.get("ImageType", ["DERIVED", "PRIMARY"]))[1:]]
    ds.DerivationDescription = derivation
    if all(source_sop):
        reference = Dataset()
        reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID = source_sop
        ds.SourceImageSequence = [reference]
    if burned_in_text_removed:
        ds.BurnedInAnnotation = "NO"
    with atomic_path(out_path) as temporary:
        ds.save_as(temporary, enforce_file_format=True)
    return Path(out_path)


def _decode(path: str | Path, ds: Dataset) -> np.ndarray:
    """The stored pixel values, (H, W) or (H, W, 3), Bits Stored respected (pydicom masks the rest)."""
    syntax = ds.file_meta.get("TransferSyntaxUID")
    ds.pixel_array_options(decoding_plugin=_plugin(syntax))
    try:
        stored = ds.pixel_array
    except Exception as err:  # decoder plugins raise many types; their messages hold no header values
        name = getattr(syntax, "name", "unknown transfer syntax")
        raise ImageReadError(path, f"cannot decode pixel data ({name}): {err}") from err
    expected = 2 if ds.get("SamplesPerPixel", 1) == 1 else 3
    if stored.ndim != expected:
        raise ImageReadError(path, f"decoded pixel data has shape {stored.shape}: expected {expected} dimensions")
    return stored


def _plugin(syntax: str | None) -> str:
    """The first of _SAFER_PLUGINS installed for `syntax`, else "" (pydicom's own order)."""
    try:
        available = get_decoder(syntax).available_plugins
    except (NotImplementedError, TypeError):  # no decoder for this syntax, or none given
        return ""
    return next((name for name in _SAFER_PLUGINS if name in available), "")


def _display(ds: Dataset, stored: np.ndarray) -> np.ndarray:
    """Modality LUT → VOI LUT → [0, 1] → MONOCHROME1 inverted; float32 (H, W)."""
    values = apply_modality_lut(stored, ds)
    if _has_voi_lut_sequence(ds):
        if values.dtype.kind == "f":
            values = np.rint(values).astype(np.int64)  # LUT entries are indexed by integer values
        low, high = 0.0, 2.0 ** ds.VOILUTSequence[0].LUTDescriptor[2] - 1
        shown = apply_voi_lut(values, ds)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        # The window's output range (pydicom's y_min..y_max) is what it gives for extreme inputs.
        with np.errstate(over="ignore"):
            low, high = apply_windowing(np.array([-1e300, 1e300]), ds)
        shown = apply_voi_lut(values, ds, prefer_lut=False)
    else:  # documented fallback: stretch the modality values from their minimum to their maximum
        shown, low, high = values, float(values.min()), float(values.max())
    unit = np.zeros(shown.shape) if high == low else (shown.astype(np.float64) - low) / (high - low)
    unit = unit.clip(0, 1)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        unit = 1 - unit
    return unit.astype(np.float32)


def _has_voi_lut_sequence(ds: Dataset) -> bool:
    """True when the first VOI LUT Sequence item has both a LUT Descriptor and LUT Data."""
    items = ds.get("VOILUTSequence")
    return bool(items) and "LUTDescriptor" in items[0] and "LUTData" in items[0]
