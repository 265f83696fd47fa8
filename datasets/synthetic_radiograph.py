"""Synthetic text-free frontal chest radiographs of a known class, with their lesion and lung-field masks.

`chest_radiograph` draws lung fields, mediastinum, heart, ribs, clavicles, diaphragm, soft tissue and
vessels for a patient (its seed), a class-specific lesion (lobar consolidation for pneumonia, bilateral
peripheral ground glass for COVID-19), then pose, exposure and noise for one film of that patient.
Burned-in text is added by `datasets.synthetic_text`; the dataset on disk is written by `datasets.synthetic`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

LABELS = ("normal", "pneumonia", "COVID-19")


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

