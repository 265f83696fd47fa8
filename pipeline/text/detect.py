"""The entry points: a detector for a config, and boxes of images, arrays or files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datasets.errors import DatasetError
from datasets.images import read_image
from pipeline.text.boxes import TextBox
from pipeline.text.config import TextConfig, TextDetector
from pipeline.text.craft import CraftDetector
from pipeline.text.tesseract import TesseractDetector

_DETECTORS: dict[TextConfig, TextDetector] = {}


def make_detector(config: TextConfig | None = None) -> TextDetector:
    """A detector for `config` (cached per config, so repeated calls reuse one loaded network)."""
    config = config or TextConfig()
    if config not in _DETECTORS:
        _DETECTORS[config] = CraftDetector(config) if config.backend == "craft" else TesseractDetector(config)
    return _DETECTORS[config]


def detect_text(image: np.ndarray, *, detector: TextDetector | None = None,
                config: TextConfig | None = None) -> list[TextBox]:
    """Text boxes in one image (H, W) float32 in [0, 1], in its own pixels, sorted top to bottom.

    `detector`: a loaded detector to reuse (its own config applies); else one is made for `config`.
    """
    return detect_text_many([image], detector=detector, config=config)[0]


@dataclass
class Detection:
    """The result for one item of `detect_text_many`: boxes, or the error that made it unreadable."""

    item: str
    boxes: list[TextBox] = field(default_factory=list)
    shape: tuple[int, int] | None = None
    error: str | None = None


def detect_text_many(items: Sequence[np.ndarray | str | Path], *, detector: TextDetector | None = None,
                     config: TextConfig | None = None, chunk: int = 16) -> list[list[TextBox]]:
    """Text boxes for each image (H, W) float32 array or image path (PNG, JPEG, DICOM), in input order.

    Paths are read with `datasets.images.read_image`; an unreadable file raises its ImageReadError
    (use `detect_files` to record failures instead). Images are processed `chunk` at a time.
    """
    detector = detector or make_detector(config)
    out: list[list[TextBox]] = []
    for start in range(0, len(items), chunk):
        arrays = [_as_array(item) for item in items[start : start + chunk]]
        out.extend(detector.detect(arrays))
    return out


def detect_files(paths: Sequence[str | Path], *, detector: TextDetector | None = None,
                 config: TextConfig | None = None) -> list[Detection]:
    """Like `detect_text_many` for files, but a file that cannot be read is returned with its error."""

    detector = detector or make_detector(config)
    out = []
    for path in paths:
        try:
            image = read_image(path)
        except DatasetError as err:
            out.append(Detection(str(path), error=str(err)))
            continue
        out.append(Detection(str(path), detector.detect([image])[0], image.shape))
    return out


def _as_array(item: np.ndarray | str | Path) -> np.ndarray:
    if isinstance(item, str | Path):
        return read_image(item)
    return np.asarray(item)


