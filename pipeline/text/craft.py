"""CRAFT (Baek et al. 2019) through EasyOCR: score maps of images and boxes from them."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from pipeline.text.boxes import TextBox
from pipeline.text.config import POLARITIES, TextConfig, TextDetectionError, WeightsError, canvas_long_side
from pipeline.text.postprocess import check_image, finish_boxes
from pipeline.text.weights import WEIGHTS_PACKAGE, verify_weights

# ImageNet mean and std of CRAFT's input normalisation (RGB, on the 0–255 scale).
_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


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
        # Channels-last memory layout: oneDNN's convolutions run the VGG backbone faster this way on CPU.
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
        checked = [check_image(image) for image in images]
        jobs = []  # (image index, canvas, scale_x, scale_y, pad): one network input per image and polarity
        for index, image in enumerate(checked):
            for polarity in polarities:
                source = image if polarity == "positive" else 1 - image
                jobs.append((index, *_canvas(source, canvas_long_side(image.shape, config), config.edge_pad)))
        maps: list[np.ndarray | None] = [None] * len(checked)
        groups: dict[tuple[int, int], list[int]] = {}
        for job, (_, canvas, *_) in enumerate(jobs):
            groups.setdefault(canvas.shape[:2], []).append(job)
        for members in groups.values():
            for start in range(0, len(members), config.batch_size):
                chunk = members[start : start + config.batch_size]
                for job, output in zip(chunk, self._forward([jobs[j][1] for j in chunk]), strict=True):
                    index = jobs[job][0]
                    maps[index] = output if maps[index] is None else np.maximum(maps[index], output)
        scales = {index: (scale_x, scale_y, pad) for index, _, scale_x, scale_y, pad in jobs}
        return [ScoreMaps(m[:, :, 0], m[:, :, 1], scales[i][0], scales[i][1], image, scales[i][2])
                for i, (m, image) in enumerate(zip(maps, checked, strict=True))]

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
    pixel; image: the (H, W) float32 image in [0, 1] that was scored (for plate growth); pad: canvas
    pixels of mirrored film on every side of the film in the canvas (`TextConfig.edge_pad`).
    """

    region: np.ndarray
    link: np.ndarray
    scale_x: float
    scale_y: float
    image: np.ndarray
    pad: int = 0

    def combine(self, other: ScoreMaps) -> ScoreMaps:
        """The element-wise maximum of two scorings of the same image at the same canvas (e.g. the two polarities)."""
        if self.region.shape != other.region.shape or self.image.shape != other.image.shape:
            raise ValueError(f"maps of shape {self.region.shape} and {other.region.shape} cannot be combined")
        return replace(self, region=np.maximum(self.region, other.region), link=np.maximum(self.link, other.link))

    def upsampled(self) -> tuple[np.ndarray, np.ndarray]:
        """(region, link) resized to the image's own (H, W), bilinear, float32."""
        height, width = self.image.shape
        h, w = round(height * self.scale_y / 2), round(width * self.scale_x / 2)
        top = round(self.pad / 2)
        return tuple(cv2.resize(np.ascontiguousarray(m[top : top + h, top : top + w]), (width, height),
                                interpolation=cv2.INTER_LINEAR) for m in (self.region, self.link))

    def boxes(self, config: TextConfig) -> list[TextBox]:
        """Boxes in image pixels from these maps with `config`'s thresholds and post-processing (the canvas
        settings of `config` are not used: the maps already have theirs)."""
        from easyocr.craft_utils import getDetBoxes_core

        polys, labels, mapper = getDetBoxes_core(self.region, self.link, config.text_threshold,
                                                 config.link_threshold, config.low_text)
        boxes = []
        for poly, component in zip(polys, mapper, strict=True):
            score = float(self.region[labels == component].max())
            points = (np.asarray(poly, np.float64) * 2 - self.pad) / np.array([self.scale_x, self.scale_y])
            x0, y0 = points.min(axis=0)
            x1, y1 = points.max(axis=0)
            boxes.append(TextBox(math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1), min(score, 1.0),
                                 tuple((float(x), float(y)) for x, y in points)))
        return finish_boxes(boxes, self.image, config)


def _canvas(image: np.ndarray, long_side: int | None, edge_pad: float = 0.0) -> tuple[np.ndarray, float, float, int]:
    """RGB float32 canvas (multiple of 32 on each side, zero padded), the x/y scale image → canvas, and the
    canvas pixels of mirrored film on every side: text cut by the film's edge, completed by its mirror
    image, looks like text to CRAFT. The border (`edge_pad` × the canvas long side) is part of the
    `long_side`: the film is resized to fill the rest, so the border costs resolution, not network time."""
    height, width = image.shape
    pad = round(edge_pad * (long_side or max(height, width)))
    ratio = 1.0 if long_side is None else max(1, long_side - 2 * pad) / max(height, width)
    new_w, new_h = max(1, round(width * ratio)), max(1, round(height * ratio))
    gray = np.clip(image * 255, 0, 255).astype(np.float32)
    if (new_w, new_h) != (width, height):
        interpolation = cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR
        gray = cv2.resize(gray, (new_w, new_h), interpolation=interpolation)
    pad = min(pad, new_w - 1, new_h - 1)
    if pad > 0:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    padded_h, padded_w = gray.shape
    canvas = np.zeros((-(-padded_h // 32) * 32, -(-padded_w // 32) * 32, 3), np.float32)
    canvas[:padded_h, :padded_w] = gray[:, :, None]
    return canvas, new_w / width, new_h / height, pad


