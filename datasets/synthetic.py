"""Synthetic chest radiographs with a known burned-in text shortcut and ground truth.

Each image is a plausible frontal chest film (lung fields, mediastinum and heart shadow, ribs,
diaphragm, soft tissue, noise) with a class-specific lesion and the text habit of its source
hospital. With probability `shortcut` an image comes from its class's own source, so the source
text predicts the label; the lesion and text ground truth come with every image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

LABELS = ("normal", "pneumonia", "COVID-19")


@dataclass(frozen=True)
class Source:
    """A synthetic hospital: what it burns into its films, where, and how bright."""

    name: str
    texts: tuple[str, ...]
    corner: str  # "tl", "tr", "bl" or "br"
    scale: float
    dark: bool = False


# One source per label, in LABELS order (the shortcut), with distinct text habits.
SOURCES = (
    Source("rsna_like", ("R",), "tl", 0.9),
    Source("cohen_like", ("L", "AP"), "tr", 0.6),
    Source("ricord_like", ("PORTABLE",), "tl", 0.5, dark=True),
)


@dataclass
class TextBox:
    """Axis-aligned box of one burned-in string, pixels of the image: [x0, x1) × [y0, y1)."""

    x0: int
    y0: int
    x1: int
    y1: int
    text: str


@dataclass
class SyntheticImage:
    """image: (H, W) float32 in [0, 1]; clean: the same without text; lesion: (H, W) bool."""

    image: np.ndarray
    clean: np.ndarray
    lesion: np.ndarray
    label: str
    source: str
    text_boxes: list[TextBox] = field(default_factory=list)


def sample(count: int, *, size: int = 128, seed: int = 0, shortcut: float = 0.9) -> list[SyntheticImage]:
    """Draw `count` images with labels cycling through LABELS, deterministically from `seed`.

    Args:
        shortcut: probability that an image's source is its label's own source (else uniform).
    """
    rng = np.random.default_rng(seed)
    images = []
    for index in range(count):
        label = index % len(LABELS)
        source = label if rng.random() < shortcut else int(rng.integers(len(SOURCES)))
        images.append(render(LABELS[label], SOURCES[source], rng, size))
    return images


def render(label: str, source: Source, rng: np.random.Generator, size: int) -> SyntheticImage:
    """One radiograph of `label` from `source`, size×size."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    anatomy, lungs = _anatomy(rng, size)
    lesion = _lesion(label, lungs, rng, size)
    clean = anatomy + lesion * rng.uniform(0.18, 0.3)
    clean = cv2.GaussianBlur(clean.astype(np.float32), (0, 0), size / 256)
    clean = np.clip(clean + rng.normal(0, 0.02, clean.shape), 0, 1).astype(np.float32)
    image, boxes = _burn_text(clean, source, rng)
    return SyntheticImage(image, clean, lesion > 0.2, label, source.name, boxes)


def _anatomy(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Background film (H, W) in [0, 1] and the lung-field mask (H, W) in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    dx, dy = rng.normal(0, 0.02, 2)
    body = 0.55 * np.exp(-(((xx - 0.5 - dx) / 0.45) ** 8 + ((yy - 0.55 - dy) / 0.6) ** 8))
    lungs = np.zeros((size, size))
    for side in (-1, 1):
        cx, cy = 0.5 + side * 0.2 + dx, 0.47 + dy
        field = np.exp(-(((xx - cx) / 0.14) ** 4 + ((yy - cy) / 0.3) ** 4))
        dome = yy > 0.68 + dy + 0.12 * ((xx - cx) / 0.14) ** 2  # below the hemidiaphragm
        lungs = np.maximum(lungs, np.where(dome, 0.0, field))
    mediastinum = np.exp(-(((xx - 0.5 - dx) / 0.07) ** 2)) * (yy > 0.15 + dy)
    heart = np.exp(-(((xx - 0.55 - dx) / 0.13) ** 2 + ((yy - 0.66 - dy) / 0.12) ** 2))
    ribs = 0.5 + 0.5 * np.cos(2 * np.pi * (8 * (yy - dy) + 2.0 * (xx - 0.5 - dx) ** 2))
    film = body - 0.38 * lungs + 0.12 * mediastinum + 0.15 * heart + 0.1 * ribs * lungs
    film = film * rng.uniform(0.85, 1.15) + rng.uniform(-0.04, 0.04)
    return np.clip(film, 0, 1), lungs


def _lesion(label: str, lungs: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Opacity (H, W) in [0, 1]: none, one focal consolidation, or bilateral lower-zone haze."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    if label == "normal":
        return np.zeros((size, size))
    if label == "pneumonia":
        side = rng.choice([-1, 1])
        cx, cy = 0.5 + side * 0.19 + rng.normal(0, 0.03), rng.uniform(0.35, 0.65)
        radius = rng.uniform(0.06, 0.1)
        return np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / radius**2) ** 2) * (lungs > 0.3)
    haze = np.zeros((size, size))
    for side in (-1, 1):
        cx = 0.5 + side * rng.uniform(0.25, 0.29)
        haze += np.exp(-(((xx - cx) / 0.08) ** 2 + ((yy - rng.uniform(0.58, 0.68)) / 0.14) ** 2))
    return np.clip(haze, 0, 1) * (lungs > 0.3) * 0.8


def _burn_text(clean: np.ndarray, source: Source, rng: np.random.Generator) -> tuple[np.ndarray, list[TextBox]]:
    """Write the source's strings near its corner; returns the image and one box per string."""
    size = clean.shape[0]
    image = clean.copy()
    boxes = []
    scale = source.scale * size / 128
    thickness = max(1, round(scale * 1.5))
    margin = max(2, size // 32)
    y = margin
    for text in source.texts:
        (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        x = margin if source.corner[1] == "l" else size - margin - width
        top = y if source.corner[0] == "t" else size - y - height - baseline
        origin = (int(x), int(top + height))
        value = 0.02 if source.dark else rng.uniform(0.9, 1.0)
        ink = np.zeros(image.shape, dtype=np.uint8)  # OpenCV draws text on 8-bit images only
        cv2.putText(ink, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness, cv2.LINE_AA)
        alpha = ink.astype(np.float32) / 255
        image = image * (1 - alpha) + value * alpha
        boxes.append(TextBox(int(x), int(top), int(x + width), int(top + height + baseline), text))
        y += height + baseline + margin
    return image, boxes
