"""Project exceptions for bad dataset input, and the shared input checks that raise them.

Every error names the file (and the line, for split files) and says what was expected. Messages
never contain values from DICOM headers that could identify a patient.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The memory bound of reading one image: larger ones are refused from the header, before decoding.
# A read peaks at about 6–8 bytes per pixel for gray PNG/JPEG (up to ~18 for 16-bit RGBA) and 36 for a
# windowed DICOM (tests/test_bad_inputs.py), so under 2 GB at this limit; 10,000 × 10,000 is refused.
MAX_PIXELS = 50_000_000
# Smaller than this on either side is not a usable radiograph.
MIN_SIDE = 16


class DatasetError(ValueError):
    """Bad dataset input: `path`, optional 1-based `line`, and what was wrong."""

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {message}")


class SplitFileError(DatasetError):
    """A COVIDx split file that cannot be used as it is."""


class PatientLeakError(DatasetError):
    """The same patient appears in two splits that must be disjoint (e.g. train and test)."""


class ImageReadError(DatasetError):
    """An image file (PNG, JPEG, DICOM) that cannot be read into a float32 H×W array."""


class ImageWriteError(DatasetError):
    """An array that cannot be written in the requested format."""


class FileWriteError(OSError):
    """An output file that could not be written (disk full, file name too long): FileWriteError(errno, what
    happened, path). `filename` is the file meant, never the temporary beside it; the OSError that stopped the
    write is the __cause__. Not a DatasetError: the input is fine, the output's place is not."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


class DicomWarning(UserWarning):
    """A DICOM that reads, but whose pixels may not mean what a viewer shows (e.g. FOR PROCESSING)."""


def check_image_size(
    path: str | Path, height: int, width: int, *, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE
) -> None:
    """Raise ImageReadError unless `height`×`width` (from the file header) is within the limits."""
    if height * width > max_pixels:
        raise ImageReadError(
            path, f"image is {width}×{height} pixels; expected at most {max_pixels:,} pixels (max_pixels): downscale it"
        )
    if min(height, width) < min_side:
        raise ImageReadError(path, f"image is {width}×{height} pixels; expected at least {min_side} on each side")


def check_unit_image(path: str | Path, array: np.ndarray) -> np.ndarray:
    """`array` as float64 H×W if it is finite and within [0, 1]; else raise ImageWriteError naming `path`."""
    pixels = np.asarray(array, dtype=np.float64)
    if pixels.ndim != 2:
        raise ImageWriteError(path, f"array has shape {pixels.shape}: expected H×W (grayscale)")
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 1:
        raise ImageWriteError(path, "array has values outside [0, 1] or NaN: expected finite values in [0, 1]")
    return pixels


def check_not_source(out_path: str | Path, source_path: str | Path) -> None:
    """Raise ImageWriteError if `out_path` is the source file: source files are only ever read."""
    out, source = Path(out_path), Path(source_path)
    if out.resolve() == source.resolve() or (out.exists() and out.samefile(source)):
        raise ImageWriteError(out, "refusing to overwrite the source image: expected a different output path")
