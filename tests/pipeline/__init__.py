"""Tests of the pipeline stages; helpers shared by the text-detection and cleaning tests."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from datasets.synthetic_radiograph import chest_radiograph
from datasets.synthetic_text import BurnedText
from pipeline.text import TextConfig

# Real Actualmed films (not in the repository): $CXR_AUDIT_REAL_FILMS or the shared/real folder beside the
# checkout; tests that need them skip where neither exists. Their hand-made boxes: benchmarks/annotations/.
ROOT = Path(__file__).resolve().parents[2]
REAL_FILMS = Path(os.environ.get("CXR_AUDIT_REAL_FILMS") or ROOT.parent / "shared" / "real" / "actualmed" / "images")
ANNOTATIONS = ROOT / "benchmarks" / "annotations"

# Small images and a 512-pixel canvas keep one CRAFT pass near a second on one CPU thread; the text
# below is 18–24 px high on the film (32–43 px on the canvas), where CRAFT is reliable. Both polarities
# (not the default) so that the tests run the combined-maps path as well as the plain one.
TEST_TEXT = TextConfig(long_side=512, both_polarities=True)


def burn(image: np.ndarray, text: str, x: int, y: int, height: int, value: float = 0.97,
         font: int = cv2.FONT_HERSHEY_SIMPLEX) -> tuple[np.ndarray, BurnedText]:
    """`image` with `text` burned in, top-left of its cap height at (x, y); returns the tight box of the ink."""
    scale = height / cv2.getTextSize("H", font, 1.0, 1)[0][1]
    thickness = max(1, round(height / 7))
    ink = np.zeros(image.shape, np.uint8)
    cv2.putText(ink, text, (x, y + height), font, scale, 255, thickness, cv2.LINE_AA)
    rows, cols = np.nonzero(ink)
    alpha = ink.astype(np.float32) / 255
    out = (image * (1 - alpha) + value * alpha).astype(np.float32)
    return out, BurnedText(int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1, text)


def film(height: int = 224, width: int = 288, seed: int = 5) -> np.ndarray:
    """A text-free synthetic chest film (H, W) float32 in [0, 1], cropped to a non-square shape."""
    square = chest_radiograph("normal", size=max(height, width), seed=seed).clean
    top, left = (square.shape[0] - height) // 2, (square.shape[1] - width) // 2
    return np.ascontiguousarray(square[top : top + height, left : left + width])


def film_with_word_and_letter(seed: int = 5) -> tuple[np.ndarray, np.ndarray, list[BurnedText]]:
    """(image, clean, truth): a non-square film with the word "PORTABLE" (top) and the letter "R" (left)."""
    clean = film(seed=seed)
    image, word = burn(clean, "PORTABLE", 120, 10, 18)
    image, letter = burn(image, "R", 12, 60, 24)
    return image, clean, [word, letter]


def as_tuple(box) -> tuple[int, int, int, int]:
    return (box.x0, box.y0, box.x1, box.y1)
