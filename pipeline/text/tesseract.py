"""Tesseract word boxes, a second backend for comparison."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from pipeline.text.boxes import TextBox
from pipeline.text.config import TextConfig, TextDetectionError
from pipeline.text.postprocess import check_image, finish_boxes


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
            image = check_image(image)
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
            out.append(finish_boxes(boxes, image, self.config))
        return out


