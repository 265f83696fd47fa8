"""Synthetic chest radiographs with a known burned-in text shortcut and ground truth.

Two generators live here:

- `sample` / `render` (in memory, used by the quick demo): a simple frontal film with a
  class-specific lesion and one text habit per class's source.
- `generate` (on disk): a synthetic COVIDx folder (`train/`, `test/`, `test_decorrelated/`, COVIDx
  split files, ground truth per image) drawn by `chest_radiograph` (lung fields, mediastinum, heart,
  ribs, clavicles, diaphragm, soft tissue, vessels, exposure, noise, pose) and burned-in text from
  five synthetic hospitals named after real COVIDx sources, each with its own text habits.

With probability `shortcut` an image comes from its class's own source, so the source text predicts
the label; the lesion and text ground truth come with every image.
"""

from __future__ import annotations

import datetime
import functools
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from datasets.atomic import write_bytes, write_text
from datasets.covidx import Record, read_split, write_split

LABELS = ("normal", "pneumonia", "COVID-19")


@dataclass
class BurnedText:
    """Axis-aligned box of one burned-in string, pixels of the image: [x0, x1) × [y0, y1).

    kind: what the string is ("laterality", "view", "portable", "site", "date"; "" from `render`);
    dark: dark text (on a light plate or light background) rather than white text.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    text: str
    kind: str = ""
    dark: bool = False


@dataclass
class SyntheticImage:
    """image: (H, W) float32 in [0, 1]; clean: the same without text; lesion: (H, W) bool."""

    image: np.ndarray
    clean: np.ndarray
    lesion: np.ndarray
    label: str
    source: str
    text_boxes: list[BurnedText] = field(default_factory=list)


SPLITS = ("train", "test", "test_decorrelated")
SPLIT_FILES = {split: f"{split}_synthetic.txt" for split in SPLITS}
# Seed stream of each split's radiographs; test_decorrelated reuses test's radiographs.
_SPLIT_CODES = {"train": 1, "test": 2, "test_decorrelated": 2}
_PREFIXES = {"train": "tr", "test": "te", "test_decorrelated": "te"}
MANIFEST = "synthetic.json"

_SIMPLEX, _DUPLEX, _COMPLEX = cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX
_TRIPLEX, _PLAIN, _ITALIC = cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_ITALIC
_ANCHORS = ("tl", "tr", "bl", "br", "top", "bottom", "left", "right")


@dataclass(frozen=True)
class TextHabit:
    """One string a hospital burns into its films.

    kind: "laterality", "view", "portable", "site" or "date"; choices: the strings to pick from (for
    "date", strftime formats); anchor: a corner ("tl", "tr", "bl", "br") or an edge ("top", "bottom",
    "left", "right"); probability: how often a film carries it; height: cap height as a fraction of
    the image side; weight: stroke thickness factor; dark: dark text (else white); plate: drawn on a
    filled label plate of the opposite polarity.
    """

    kind: str
    choices: tuple[str, ...]
    anchor: str
    probability: float = 1.0
    font: int = _SIMPLEX
    height: float = 0.045
    weight: float = 1.0
    dark: bool = False
    plate: bool = False


@dataclass(frozen=True)
class Hospital:
    """A synthetic hospital; `name` is a real COVIDx source name so split files read as COVIDx."""

    name: str
    habits: tuple[TextHabit, ...]


HOSPITALS = (
    Hospital("rsna", (
        TextHabit("laterality", ("R",), "tl", 0.95, _SIMPLEX, 0.075, 1.4),
        TextHabit("date", ("%d/%m/%Y",), "br", 0.35, _PLAIN, 0.03),
    )),
    Hospital("cohen", (
        TextHabit("view", ("AP", "PA"), "tr", 0.9, _DUPLEX, 0.05),
        TextHabit("laterality", ("L",), "right", 0.7, _DUPLEX, 0.05, plate=True),
    )),
    Hospital("ricord", (
        TextHabit("portable", ("PORTABLE",), "top", 0.95, _DUPLEX, 0.04, 1.0, dark=True, plate=True),
        TextHabit("view", ("AP",), "tl", 0.8, _SIMPLEX, 0.045),
        TextHabit("date", ("%Y-%m-%d",), "bl", 0.5, _SIMPLEX, 0.03),
    )),
    Hospital("sirm", (
        TextHabit("site", ("OSP BG", "OSP MI"), "bl", 0.9, _COMPLEX | _ITALIC, 0.035),
        TextHabit("laterality", ("R", "L"), "tr", 0.8, _COMPLEX, 0.06),
        TextHabit("date", ("%d.%m.%y",), "br", 0.6, _COMPLEX, 0.03),
    )),
    Hospital("actmed", (
        TextHabit("site", ("ACTUALMED",), "bottom", 0.85, _PLAIN, 0.035, 1.0, dark=True),
        TextHabit("laterality", ("L",), "tl", 0.8, _TRIPLEX, 0.06, 1.0, dark=True, plate=True),
        TextHabit("portable", ("PORT",), "left", 0.4, _SIMPLEX, 0.035),
    )),
)
HOSPITAL_NAMES = tuple(hospital.name for hospital in HOSPITALS)
# The shortcut: each label's own hospital. COVID-19 films come from `ricord` with its "PORTABLE" plate.
HOME_HOSPITAL = {"normal": "rsna", "pneumonia": "cohen", "COVID-19": "ricord"}


@dataclass
class Film:
    """A text-free radiograph: clean (H, W) float32 in [0, 1], lesion and lung-field masks (H, W) bool, and how
    it was drawn (severity in [0, 1], pose and exposure)."""

    clean: np.ndarray
    lesion: np.ndarray
    lungs: np.ndarray
    label: str
    severity: float
    pose: dict[str, float]


@dataclass
class ImageTruth:
    """Ground truth of one generated image; paths are relative to the dataset root."""

    filename: str
    patient_id: str
    label: str
    source: str
    home_source: bool
    severity: float
    lesion: str
    clean: str
    text_boxes: list[BurnedText]


# ---- the radiograph ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Anatomy:
    """Patient-level geometry in image fractions (x right, y down; the patient's right lung is on the left)."""

    body: float
    top: float
    base: float
    dome: float
    medial: float
    lateral: float
    heart_x: float
    heart_rx: float
    heart_ry: float
    heart_angle: float
    breasts: float
    bubble: bool
    ribs: float
    vessels: int


def _anatomy_of(rng: np.random.Generator) -> _Anatomy:
    return _Anatomy(
        body=rng.uniform(0.42, 0.46), top=rng.uniform(0.10, 0.16), base=rng.uniform(0.70, 0.80),
        dome=rng.uniform(0.06, 0.10), medial=rng.uniform(0.045, 0.065), lateral=rng.uniform(0.34, 0.38),
        heart_x=rng.uniform(0.04, 0.07), heart_rx=rng.uniform(0.13, 0.17), heart_ry=rng.uniform(0.10, 0.13),
        heart_angle=rng.uniform(-25, -5), breasts=rng.uniform(0.03, 0.08) if rng.random() < 0.5 else 0.0,
        bubble=bool(rng.random() < 0.6), ribs=rng.uniform(0.05, 0.09), vessels=int(rng.integers(5, 9)),
    )


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised coordinates (1, W) and (H, 1), float32 in [0, 1)."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    return axis[None, :], axis[:, None]


def _points(size: int, xy: np.ndarray) -> np.ndarray:
    """Fractions (N, 2) to OpenCV points with 4 fractional bits."""
    return np.round(np.asarray(xy) * size * 16).astype(np.int32).reshape(-1, 1, 2)


def _blur(canvas: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(canvas, (0, 0), max(sigma, 0.3)) if sigma > 0 else canvas


def _lowfreq(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth random field (H, W), roughly zero mean and unit spread."""
    coarse = rng.standard_normal((cells, cells), dtype=np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


def _lung_outline(a: _Anatomy, side: int) -> np.ndarray:
    """Polygon (N, 2) of one lung field; side −1 is the image-left (patient's right) lung."""
    m, lat = 0.5 + side * a.medial, 0.5 + side * a.lateral
    top, base = a.top + (0.01 if side > 0 else 0.0), a.base + (0.025 if side > 0 else 0.0)
    dome = base - a.dome
    s = np.linspace(0, 1, 14)
    width = 0.35 + 0.65 * (1 - (1 - s) ** 2.2)
    lateral = np.stack([m + (lat - m) * width, top + (base - top) * s], 1)
    u = np.linspace(0, 1, 12)[1:]
    floor = np.stack([lat + (m - lat) * u, base - (base - dome) * np.sin(np.pi / 2 * np.minimum(u * 1.25, 1))], 1)
    medial = np.array([[m, top + 0.3 * (base - top)], [m + 0.1 * (lat - m), top + 0.08 * (base - top)]])
    return np.concatenate([lateral, floor, medial])


def _draw_anatomy(a: _Anatomy, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, list]:
    """Density (H, W) float32 (0 air … ~0.8 soft tissue), the lung-field mask (H, W) and both lung polygons."""
    px = size / 256
    xs, ys = _grid(size)
    # Body outline: neck, shoulders, chest wall.
    bw = a.body
    body_xy = np.array([[0.5 - 0.08, -0.02], [0.5 - 0.1, 0.06], [0.5 - bw * 0.95, 0.11], [0.5 - bw - 0.04, 0.2],
                        [0.5 - bw, 0.55], [0.5 - bw + 0.05, 1.02], [0.5 + bw - 0.05, 1.02], [0.5 + bw, 0.55],
                        [0.5 + bw + 0.04, 0.2], [0.5 + bw * 0.95, 0.11], [0.5 + 0.1, 0.06], [0.5 + 0.08, -0.02]])
    body = np.zeros((size, size), np.float32)
    cv2.fillPoly(body, [_points(size, body_xy)], 1.0, cv2.LINE_8, 4)
    # Thicker soft tissue laterally (the chest wall seen tangentially).
    wall = np.clip(np.abs(xs - 0.5) / bw, 0, 1) ** 4
    density = _blur(body, 4 * px) * (0.66 + 0.1 * wall)

    lungs = np.zeros((size, size), np.float32)
    outlines = [_lung_outline(a, side) for side in (-1, 1)]
    cv2.fillPoly(lungs, [_points(size, o) for o in outlines], 1.0, cv2.LINE_8, 4)
    lungs = _blur(lungs, 2.5 * px)

    solid = np.zeros((size, size), np.float32)  # heart, mediastinum, aortic knob
    hx, hy = 0.5 + a.heart_x, a.base - 0.08
    cv2.ellipse(solid, (round(hx * size * 16), round(hy * size * 16)),
                (round(a.heart_rx * size * 16), round(a.heart_ry * size * 16)), a.heart_angle, 0, 360, 1.0, -1,
                cv2.LINE_8, 4)
    cv2.fillPoly(solid, [_points(size, np.array([[0.5 - a.medial * 0.9, 0.0], [0.5 + a.medial * 0.9, 0.0],
                                                 [0.5 + a.medial, a.base], [0.5 - a.medial, a.base]]))],
                 1.0, cv2.LINE_8, 4)
    cv2.circle(solid, (round((0.5 + a.medial + 0.01) * size * 16), round((a.top + 0.16) * size * 16)),
               round(0.035 * size * 16), 1.0, -1, cv2.LINE_8, 4)
    solid = _blur(solid, 2.5 * px)
    field = lungs * (1 - solid)

    bones = np.zeros((size, size), np.float32)
    rib_width = max(1, round(0.018 * size))
    for side in (-1, 1):
        sign = side
        for k in range(10):  # posterior ribs: from the spine out and down
            y0 = a.top - 0.03 + k * (a.base - a.top + 0.02) / 9.3
            t = np.linspace(0, 1, 10)
            x = 0.5 + sign * (0.03 + (a.lateral + 0.03) * t)
            y = y0 - 0.03 * t + 0.17 * t**2.5
            cv2.polylines(bones, [_points(size, np.stack([x, y], 1))], False, 0.7, rib_width, cv2.LINE_8, 4)
        for k in range(6):  # anterior ribs: from the chest wall down towards the sternum, fainter
            y0 = a.top + 0.05 + k * 0.085
            t = np.linspace(0, 1, 8)
            x = 0.5 + sign * (a.lateral + 0.02 - (a.lateral - 0.08) * t)
            y = y0 + 0.13 * t - 0.04 * t**2
            cv2.polylines(bones, [_points(size, np.stack([x, y], 1))], False, 0.35, max(1, rib_width - 1),
                          cv2.LINE_8, 4)
        # Clavicle: from the sternum out and up to the shoulder, slightly S-shaped.
        t = np.linspace(0, 1, 10)
        x = 0.5 + sign * (0.04 + 0.3 * t)
        y = a.top + 0.05 - 0.07 * t + 0.015 * np.sin(2 * np.pi * t)
        cv2.polylines(bones, [_points(size, np.stack([x, y], 1))], False, 1.0, max(1, round(0.024 * size)),
                      cv2.LINE_8, 4)
        # Humeral head at the shoulder.
        cv2.circle(bones, (round((0.5 + sign * (bw + 0.02)) * size * 16), round((a.top + 0.02) * size * 16)),
                   round(0.055 * size * 16), 0.8, -1, cv2.LINE_8, 4)
    bones = _blur(bones, 1.2 * px)
    # Spine: a column of vertebral bodies behind the mediastinum.
    vertebrae = (0.5 + 0.5 * np.cos(2 * np.pi * ys / 0.045)) * np.exp(-(((xs - 0.5) / 0.03) ** 2))

    vessels = np.zeros((size, size), np.float32)
    for side in (-1, 1):
        hilum = np.array([0.5 + side * (a.medial + 0.04), a.top + 0.28 * (a.base - a.top) + 0.1])
        for _ in range(a.vessels):
            angle = rng.uniform(-1.2, 1.2) + (np.pi if side < 0 else 0.0)
            start, width = hilum, max(1, round(0.012 * size))
            for _level in range(3):
                length = rng.uniform(0.05, 0.09)
                end = start + length * np.array([np.cos(angle), np.sin(angle)])
                cv2.line(vessels, tuple(_points(size, start).ravel()), tuple(_points(size, end).ravel()), 1.0,
                         width, cv2.LINE_8, 4)
                start, width, angle = end, max(1, width - 1), angle + rng.uniform(-0.5, 0.5)
    vessels = _blur(vessels, 0.8 * px)

    density = density - 0.44 * field + 0.04 * solid + 0.06 * vertebrae * solid
    density += bones * (a.ribs * (0.4 + 0.6 * lungs) + 0.03)
    density += field * (0.07 * vessels * (1.1 - np.abs(xs - 0.5) / 0.4) + 0.025 * _lowfreq(rng, size, 24))
    density += field * 0.1 * np.clip((a.top + 0.12 - ys) / 0.12, 0, 1)  # apices under the shoulder girdle
    if a.breasts:
        for side in (-1, 1):
            shadow = np.exp(-(((xs - 0.5 - side * 0.25) / 0.14) ** 2 + ((ys - a.base + 0.02) / 0.08) ** 2))
            density += a.breasts * shadow * np.clip((ys - a.base + 0.14) / 0.06, 0, 1)
    if a.bubble:  # gastric air under the left hemidiaphragm (image right)
        bubble = np.zeros((size, size), np.float32)
        cv2.ellipse(bubble, (round((0.5 + a.lateral * 0.55) * size * 16), round((a.base + 0.07) * size * 16)),
                    (round(0.05 * size * 16), round(0.03 * size * 16)), 0, 0, 360, 1.0, -1, cv2.LINE_8, 4)
        density -= 0.2 * _blur(bubble, 2 * px)
    return density, lungs, outlines


def _draw_lesion(label: str, a: _Anatomy, lungs: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Lesion shape (H, W) float32, peak 1: focal lobar consolidation or bilateral peripheral GGO (0 if normal).

    Draws the same numbers from `rng` for every label, so one seed gives one anatomy whatever the label.
    """
    texture = _lowfreq(rng, size, 14)
    side = -1 if rng.random() < 0.5 else 1
    zone = rng.choice(3, p=[0.3, 0.3, 0.4])
    focal_y = a.top + (a.base - a.top) * rng.uniform(*[(0.2, 0.35), (0.42, 0.58), (0.62, 0.78)][zone])
    focal_x = 0.5 + side * (a.medial + (a.lateral - a.medial) * rng.uniform(0.35, 0.7))
    focal_r = rng.uniform(0.08, 0.13, 2)
    patches = [(s, rng.uniform(0.62, 0.88), rng.uniform(0.01, 0.05), rng.uniform(0.06, 0.1), rng.uniform(0.6, 1.0))
               for s in (-1, 1) for _ in range(3)]
    counts = rng.integers(1, 4, 2)
    weak_side = -1 if rng.random() < 0.5 else 1
    weak = rng.uniform(0.6, 1.0)
    canvas = np.zeros((size, size), np.float32)
    if label == "normal":
        return canvas
    if label == "pneumonia":
        cv2.ellipse(canvas, (round(focal_x * size * 16), round(focal_y * size * 16)),
                    (round(focal_r[0] * size * 16), round(focal_r[1] * size * 16)), 0, 0, 360, 1.0, -1,
                    cv2.LINE_8, 4)
        if zone == 0:  # upper lobe: sharp lower border along the horizontal fissure
            canvas[int((focal_y + focal_r[1] * 0.5) * size):] = 0
        shape = _blur(canvas, focal_r.mean() * size * 0.3) * (0.85 + 0.15 * texture)
        if zone == 0:
            shape[int((focal_y + focal_r[1] * 0.5) * size):] *= 0.15
        shape = np.clip(shape * 1.25, 0, 1) * lungs
        return shape / max(float(shape.max()), 1e-6)
    for index, (s, fy, inset, radius, strength) in enumerate(patches):
        if index % 3 >= counts[(s + 1) // 2]:
            continue
        y = a.top + (a.base - a.top) * fy
        x = 0.5 + s * (a.lateral - inset - radius * 0.6)
        weight = strength * (weak if s == weak_side else 1.0)
        cv2.circle(canvas, (round(x * size * 16), round(y * size * 16)), round(radius * size * 16), weight, -1,
                   cv2.LINE_8, 4)
    shape = np.clip(_blur(canvas, 0.032 * size), 0, 1) * np.clip(0.9 + 0.2 * texture, 0.6, 1.2) * lungs
    return shape / max(float(shape.max()), 1e-6)


def chest_radiograph(label: str, *, size: int = 256, seed: int | Sequence[int] = 0, image: int = 0,
                     severity: float | None = None) -> Film:
    """A text-free frontal chest film of `label`, size×size, deterministic by (`seed`, `image`).

    `seed` names the patient: anatomy, vessel pattern and lesion site come from it, so two films of
    one patient (`image` 0 and 1) show the same chest in another pose and exposure, with the lesion
    severity varying a little. The anatomy, pose, exposure and noise do not depend on the label or
    the severity. `severity` in [0, 1] overrides the drawn one (0: the faintest lesion, 1: the densest).
    Returns clean (H, W) float32 in [0, 1], lesion (H, W) bool (where the opacity is) and the lung fields.
    """
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    if severity is not None and not 0 <= severity <= 1:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    key = [int(seed)] if isinstance(seed, int | np.integer) else [int(value) for value in seed]
    patient_rng, lesion_rng = np.random.default_rng([*key, 0]), np.random.default_rng([*key, 1])
    pose_rng, noise_rng = np.random.default_rng([*key, 10 + image, 0]), np.random.default_rng([*key, 10 + image, 1])

    anatomy = _anatomy_of(patient_rng)
    drawn = float(np.clip(lesion_rng.uniform(0, 1) ** 0.8 * pose_rng.uniform(0.85, 1.15), 0, 1))
    severity = 0.0 if label == "normal" else drawn if severity is None else float(severity)
    breath = pose_rng.uniform(-0.02, 0.02)
    anatomy = replace(anatomy, base=anatomy.base + breath)
    density, lungs, _ = _draw_anatomy(anatomy, patient_rng, size)
    shape = _draw_lesion(label, anatomy, lungs, lesion_rng, size)
    amplitude = {"normal": 0.0, "pneumonia": 0.07 + 0.37 * severity, "COVID-19": 0.05 + 0.27 * severity}[label]
    density = density + amplitude * shape

    angle, zoom = pose_rng.uniform(-4, 4), pose_rng.uniform(0.95, 1.06)
    shift = pose_rng.uniform(-0.03, 0.03, 2)
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, zoom)
    matrix[:, 2] += shift * size
    density = cv2.warpAffine(density, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
    shape = cv2.warpAffine(shape, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
    lungs = cv2.warpAffine(lungs, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)

    contrast, brightness = pose_rng.uniform(0.85, 1.2), pose_rng.uniform(-0.06, 0.06)
    gamma, heel = pose_rng.uniform(0.8, 1.25), pose_rng.uniform(-0.06, 0.06)
    sigma = pose_rng.uniform(0.008, 0.025)
    _, ys = _grid(size)
    film = np.clip((density - 0.4) * contrast + 0.45 + brightness + heel * (ys - 0.5), 0, 1) ** gamma
    film = _blur(film.astype(np.float32), 0.6 * size / 256)
    film += noise_rng.standard_normal((size, size), dtype=np.float32) * sigma
    clean = np.clip(film, 0, 1).astype(np.float32)
    pose = {"angle": float(angle), "zoom": float(zoom), "shift_x": float(shift[0]), "shift_y": float(shift[1]),
            "contrast": float(contrast), "brightness": float(brightness), "gamma": float(gamma),
            "noise": float(sigma)}
    return Film(clean, shape > 0.3, lungs > 0.5, label, severity, pose)


def burn_text(clean: np.ndarray, hospital: Hospital, rng: np.random.Generator) -> tuple[np.ndarray, list[BurnedText]]:
    """Burn `hospital`'s text habits into a copy of `clean` (H, W) in [0, 1]; pixels change only inside the boxes.

    Each habit is drawn with its probability, at its anchor (stacked away from the edge when several
    share one), with random size, offset and grey value. Returns the image and one box per string
    (the plate, or the tight box of the drawn strokes).
    """
    size = clean.shape[0]
    image = clean.copy()
    boxes: list[BurnedText] = []
    used = dict.fromkeys(_ANCHORS, 0)
    margin, gap, spread = max(2, round(size * 0.02)), max(1, round(size * 0.01)), max(1, round(size * 0.025))
    for habit in hospital.habits:
        present = rng.random() < habit.probability
        text = _habit_text(habit, rng)
        height = max(4.0, habit.height * size * rng.uniform(0.85, 1.15))
        jx, jy = (int(v) for v in rng.integers(0, spread + 1, 2))
        value = rng.uniform(0.0, 0.12) if habit.dark else rng.uniform(0.92, 1.0)
        plate_value = rng.uniform(0.82, 0.95) if habit.dark else rng.uniform(0.02, 0.1)
        if not present:
            continue
        scale = height / cv2.getTextSize("H", habit.font, 1.0, 1)[0][1]
        thickness = max(1, round(height / 7 * habit.weight))
        pad = max(1, round(height * 0.3)) if habit.plate else thickness + 1
        (width, text_height), baseline = cv2.getTextSize(text, habit.font, scale, thickness)
        room = size - 2 * margin - 2 * pad
        if width > room:
            scale *= room / width
            (width, text_height), baseline = cv2.getTextSize(text, habit.font, scale, thickness)
        w, h = width + 2 * pad, text_height + baseline + 2 * pad
        anchor = habit.anchor
        if anchor in ("tl", "bl", "left"):
            x = margin + jx
        elif anchor in ("tr", "br", "right"):
            x = size - margin - w - jx
        else:
            x = (size - w) // 2 + jx - spread // 2
        if anchor in ("tl", "tr", "top"):
            y = margin + used[anchor] + jy
        elif anchor in ("bl", "br", "bottom"):
            y = size - margin - used[anchor] - h - jy
        else:
            y = (size - h) // 2 + used[anchor] + jy
        used[anchor] += h + gap + jy
        x, y = min(max(x, 0), size - w), min(max(y, 0), size - h)
        if w > size or h > size:
            continue
        ink = np.zeros((h, w), np.uint8)
        cv2.putText(ink, text, (pad, pad + text_height), habit.font, scale, 255, thickness, cv2.LINE_AA)
        if not ink.any():
            continue
        alpha = ink.astype(np.float32) / 255
        region = np.full((h, w), plate_value, np.float32) if habit.plate else image[y : y + h, x : x + w]
        image[y : y + h, x : x + w] = region * (1 - alpha) + value * alpha
        if habit.plate:
            boxes.append(BurnedText(x, y, x + w, y + h, text, habit.kind, habit.dark))
        else:
            rows, cols = np.nonzero(ink)
            boxes.append(BurnedText(x + int(cols.min()), y + int(rows.min()), x + int(cols.max()) + 1,
                                 y + int(rows.max()) + 1, text, habit.kind, habit.dark))
    return image, boxes


def _habit_text(habit: TextHabit, rng: np.random.Generator) -> str:
    choice = habit.choices[int(rng.integers(len(habit.choices)))]
    day = datetime.date(2019, 6, 1) + datetime.timedelta(days=int(rng.integers(0, 900)))
    return day.strftime(choice).upper() if habit.kind == "date" else choice


def sample(count: int, *, size: int = 128, seed: int = 0, shortcut: float = 0.9) -> list[SyntheticImage]:
    """Draw `count` images in memory, labels cycling through LABELS, deterministically from `seed`.

    Each is a `chest_radiograph` (patient (seed, index)) with the text of its hospital burned in.

    Args:
        shortcut: probability that an image comes from its label's own hospital (HOME_HOSPITAL),
            else from a hospital drawn uniformly.
    """
    rng = np.random.default_rng(seed)
    by_name = {hospital.name: hospital for hospital in HOSPITALS}
    images = []
    for index in range(count):
        label = LABELS[index % len(LABELS)]
        home = rng.random() < shortcut
        hospital = by_name[HOME_HOSPITAL[label]] if home else HOSPITALS[int(rng.integers(len(HOSPITALS)))]
        film = chest_radiograph(label, size=size, seed=(seed, index))
        image, boxes = burn_text(film.clean, hospital, rng)
        images.append(SyntheticImage(image, film.clean, film.lesion, label, hospital.name, boxes))
    return images


# ---- the dataset on disk -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Planned:
    patient: int
    image: int
    patient_id: str
    filename: str
    label: str
    source: str
    decorrelated_source: str


def _plan(split: str, count: int, seed: int, shortcut: float, repeat_fraction: float) -> list[_Planned]:
    """Patients (1 or 2 images each), labels balanced by image count, and sources for `split`."""
    code, prefix = _SPLIT_CODES[split], _PREFIXES[split]
    rng = np.random.default_rng([seed, code, 1_000_000])
    other = np.random.default_rng([seed, code, 1_000_001])
    sizes, remaining = [], count
    while remaining:
        size = 2 if remaining >= 2 and rng.random() < repeat_fraction else 1
        sizes.append(size)
        remaining -= size
    per_label = [0] * len(LABELS)
    planned = []
    for patient, size in enumerate(sizes):
        order = rng.permutation(len(LABELS))
        label = LABELS[min(order, key=lambda index: per_label[index])]
        per_label[LABELS.index(label)] += size
        aligned, anywhere = rng.random() < shortcut, HOSPITAL_NAMES[int(rng.integers(len(HOSPITALS)))]
        source = HOME_HOSPITAL[label] if aligned else anywhere
        decorrelated = HOSPITAL_NAMES[int(other.integers(len(HOSPITALS)))]
        patient_id = f"synth-{prefix}-{patient:05d}"
        planned += [_Planned(patient, image, patient_id, f"{patient_id}-{image}.png", label, source, decorrelated)
                    for image in range(size)]
    return planned


def _png(array: np.ndarray) -> bytes:
    """8-bit grayscale PNG of (H, W) in [0, 1] or bool."""
    pixels = array.astype(np.uint8) * 255 if array.dtype == bool else np.rint(np.clip(array, 0, 1) * 255)
    ok, encoded = cv2.imencode(".png", pixels.astype(np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError("OpenCV could not encode a PNG")
    return encoded.tobytes()


_OWN_NAMES = frozenset({*SPLITS, "clean", "lesions", "ground_truth", MANIFEST, *SPLIT_FILES.values()})


def _prepare(root: Path, overwrite: bool) -> None:
    """Refuse a non-empty `root` unless `overwrite` and it holds only what `generate` writes (then clear it)."""
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root}: exists and is not a folder: expected a folder for the synthetic dataset")
    entries = sorted(root.iterdir()) if root.exists() else []
    if not entries:
        return
    if not overwrite:
        raise FileExistsError(f"{root}: folder is not empty: pass overwrite=True (CLI: --overwrite) to replace "
                              "a synthetic dataset")
    foreign = [entry.name for entry in entries if entry.name not in _OWN_NAMES and not entry.name.startswith(".")]
    if foreign:
        raise FileExistsError(f"{root}: holds files that generate() did not write ({', '.join(foreign[:5])}): "
                              "refusing to overwrite; choose an empty folder")
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def generate(
    root: str | Path,
    *,
    n_train: int = 600,
    n_test: int = 200,
    image_size: int = 256,
    seed: int = 0,
    shortcut: float = 0.9,
    repeat_fraction: float = 0.25,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write a synthetic COVIDx folder at `root` and return `root`.

    Layout (all files written atomically; `synthetic.json`, written last, marks a complete dataset):

        train/ test/ test_decorrelated/          8-bit PNG radiographs with burned-in text
        train_synthetic.txt test_synthetic.txt test_decorrelated_synthetic.txt
                                                 COVIDx split files: `<patient_id> <filename> <label> <source>`
        clean/<split>/<filename>                 the same radiograph without text (for inpainting checks)
        lesions/<split>/<filename>               lesion mask (0/255; empty for normal)
        ground_truth/<split>.json                per image: label, source, severity, mask paths, text boxes
                                                 with their strings, kind and polarity
        synthetic.json                           the parameters, counts per split and the hospitals

    Labels are balanced by image count; `repeat_fraction` of patients have two films (same chest,
    another pose and exposure), so splitting by patient matters; train and test share no patient.
    Sources are the five `HOSPITALS` (named as real COVIDx sources, so `datasets.covidx.read_split`
    accepts the files). In `train` and `test` a patient's hospital is its label's `HOME_HOSPITAL`
    with probability `shortcut`, else drawn uniformly from all five. `test_decorrelated` holds the
    very radiographs of `test` (same patients, same clean images) with the hospital drawn uniformly,
    independently of the label: a paired, counterfactual test set in which only the text changes.

    Deterministic by `seed`. Raises FileExistsError for a non-empty `root` unless `overwrite`, and
    then only if the folder holds nothing but a previous synthetic dataset. `progress(k)` is called
    after every k images written.
    """
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if value < len(LABELS):
            raise ValueError(f"{name} must be at least {len(LABELS)} (one image per label), got {value}")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    if not 0 <= shortcut <= 1:
        raise ValueError(f"shortcut must be in [0, 1], got {shortcut}")
    if not 0 <= repeat_fraction <= 1:
        raise ValueError(f"repeat_fraction must be in [0, 1], got {repeat_fraction}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    root = Path(root)
    _prepare(root, overwrite)
    hospitals = {hospital.name: hospital for hospital in HOSPITALS}
    counts: dict[str, dict[str, int]] = {}
    for split, count in (("train", n_train), ("test", n_test)):
        plan = _plan(split, count, seed, shortcut, repeat_fraction)
        targets = [(split, "source", 2)]
        if split == "test":
            targets.append(("test_decorrelated", "decorrelated_source", 3))
        truths: dict[str, list[ImageTruth]] = {target: [] for target, _, _ in targets}
        for item in plan:
            code = _SPLIT_CODES[split]
            film = chest_radiograph(item.label, size=image_size, seed=(seed, code, item.patient), image=item.image)
            clean_png, lesion_png = _png(film.clean), _png(film.lesion)
            for target, attribute, stream in targets:
                source = getattr(item, attribute)
                text_rng = np.random.default_rng([seed, code, item.patient, 10 + item.image, stream])
                image, boxes = burn_text(film.clean, hospitals[source], text_rng)
                write_bytes(root / target / item.filename, _png(image))
                write_bytes(root / "clean" / target / item.filename, clean_png)
                write_bytes(root / "lesions" / target / item.filename, lesion_png)
                truths[target].append(ImageTruth(
                    item.filename, item.patient_id, item.label, source, source == HOME_HOSPITAL[item.label],
                    round(film.severity, 4), f"lesions/{target}/{item.filename}", f"clean/{target}/{item.filename}",
                    boxes))
                if progress is not None:
                    progress(1)
        for target, items in truths.items():
            write_split([Record(t.patient_id, t.filename, t.label, t.source) for t in items],
                        root / SPLIT_FILES[target])
            document = {"split": target, "split_file": SPLIT_FILES[target], "image_folder": target,
                        "image_size": image_size, "seed": seed, "shortcut": shortcut if target != "test_decorrelated"
                        else None, "images": [_truth_json(t) for t in items]}
            write_text(root / "ground_truth" / f"{target}.json", json.dumps(document, indent=1) + "\n")
            counts[target] = {label: sum(t.label == label for t in items) for label in LABELS}
    manifest = {
        "generator": "datasets.synthetic.generate", "format": 1, "seed": seed, "image_size": image_size,
        "n_train": n_train, "n_test": n_test, "shortcut": shortcut, "repeat_fraction": repeat_fraction,
        "labels": list(LABELS), "home_hospital": HOME_HOSPITAL,
        "splits": {split: {"split_file": SPLIT_FILES[split], "images": sum(counts[split].values()),
                           "per_label": counts[split]} for split in SPLITS},
        "hospitals": {h.name: [{"kind": t.kind, "choices": list(t.choices), "anchor": t.anchor,
                                "probability": t.probability, "dark": t.dark, "plate": t.plate} for t in h.habits]
                      for h in HOSPITALS},
    }
    write_text(root / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return root


def _truth_json(truth: ImageTruth) -> dict:
    entry = {key: value for key, value in truth.__dict__.items() if key != "text_boxes"}
    entry["text_boxes"] = [box.__dict__.copy() for box in truth.text_boxes]
    return entry


def split_records(root: str | Path, split: str, *, clean: bool = False) -> list[Record]:
    """The records of a generated `split`, image paths resolved (`clean=True`: the text-free copies)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    return read_split(root / SPLIT_FILES[split], root / "clean" / split if clean else root / split)


def read_truth(root: str | Path, split: str) -> list[ImageTruth]:
    """The ground truth of a generated `split`, in split-file order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    document = json.loads((Path(root) / "ground_truth" / f"{split}.json").read_text(encoding="utf-8"))
    return [ImageTruth(**{**entry, "text_boxes": [BurnedText(**box) for box in entry["text_boxes"]]})
            for entry in document["images"]]
