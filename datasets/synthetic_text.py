"""Burned-in text of five synthetic hospitals, drawn into synthetic radiographs with its ground-truth boxes.

Each `Hospital` (named after a real COVIDx source) has its text habits (`TextHabit`: laterality, view,
portable, site and date strings at their anchors, fonts, sizes and polarity); `burn_text` draws one
film's strings and returns their boxes (`BurnedText`). `HOME_HOSPITAL` is the shortcut: each label's
own hospital.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class BurnedText:
    """Axis-aligned box of one burned-in string, pixels of the image: [x0, x1) × [y0, y1).

    kind: what the string is ("laterality", "view", "portable", "site", "date"; "": not given);
    dark: dark text (on a light plate or light background) rather than white text.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    text: str
    kind: str = ""
    dark: bool = False


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
