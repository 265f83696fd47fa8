"""Burned-in text detection on radiographs, and the boxes it finds.

Entry points: `detect_text(image)` for one float32 (H, W) image in [0, 1], `detect_text_many(items)` for
many images or image paths, `detect_split(records, csv)` for a split into the run folder's
text/detections.csv (resumable), `read_detections(csv)` to read the boxes back. Boxes are `TextBox`es
in the pixels of the given image.

Modules: `config` (settings, errors, the detector protocol), `weights` (the offline CRAFT weights,
md5-checked), `craft` (the CRAFT network through EasyOCR: score maps, boxes), `postprocess` (line
merging, size limits, label plates), `tesseract` (a second backend, for comparison), `detect` (the
entry points), `table` (detections.csv), `boxes` (TextBox, masks, matching against ground truth).
Measured recall, precision and speed of each setting: benchmarks/results/text_detection.md.
"""

from pipeline.text.boxes import TextBox, box_mask, coverage, iou, match_boxes
from pipeline.text.config import (
    BACKENDS,
    PAPER_TEXT_THRESHOLD,
    POLARITIES,
    TextConfig,
    TextDetectionError,
    TextDetector,
    WeightsError,
    canvas_long_side,
)
from pipeline.text.craft import CraftDetector, ScoreMaps
from pipeline.text.detect import Detection, detect_files, detect_text, detect_text_many, make_detector
from pipeline.text.postprocess import finish_boxes, grow_to_plate, merge_lines
from pipeline.text.table import (
    DETECTION_COLUMNS,
    DetectionRow,
    DetectionTable,
    detect_split,
    read_detections,
)
from pipeline.text.tesseract import TesseractDetector
from pipeline.text.weights import (
    WEIGHTS_FILE,
    WEIGHTS_MD5,
    WEIGHTS_PACKAGE,
    default_weights_dir,
    md5_of,
    verify_weights,
)

__all__ = [
    "BACKENDS",
    "DETECTION_COLUMNS",
    "PAPER_TEXT_THRESHOLD",
    "POLARITIES",
    "WEIGHTS_FILE",
    "WEIGHTS_MD5",
    "WEIGHTS_PACKAGE",
    "CraftDetector",
    "Detection",
    "DetectionRow",
    "DetectionTable",
    "ScoreMaps",
    "TesseractDetector",
    "TextBox",
    "TextConfig",
    "TextDetectionError",
    "TextDetector",
    "WeightsError",
    "box_mask",
    "canvas_long_side",
    "coverage",
    "default_weights_dir",
    "detect_files",
    "detect_split",
    "detect_text",
    "detect_text_many",
    "finish_boxes",
    "grow_to_plate",
    "iou",
    "make_detector",
    "match_boxes",
    "md5_of",
    "merge_lines",
    "read_detections",
    "verify_weights",
]
