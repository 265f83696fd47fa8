"""Full-resolution crops of COVIDx++ films for the report: where text was removed, and where none was found.

A crop's pixels are the film's own pixels, cut out and never resampled: shown 1:1, or enlarged by a whole
factor with nearest neighbour. Films are read from the run's source root (config.yaml `data.root`; null:
the synthetic demo's `<run>/data`) and its `covidx_pp` copy, as data only.

Display values (8-bit gray): 8-bit PNG/JPEG as stored (RGB to gray with ITU-R 601 weights, so a gray RGB
film keeps its values); 16-bit PNG min-max stretched over the source film, the same mapping for before and
after; DICOM (uncompressed, one frame, one sample per pixel) stored values min-max stretched per film,
nothing else applied. No DICOM header field is shown or kept, and a DICOM failure is reported by kind only.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pydicom
import yaml
from PIL import Image as PILImage

Window = tuple[int, int, int, int]  # x0, y0, x1, y1: columns [x0, x1), rows [y0, y1), in film pixels

MIN_MARGIN = 24  # px of context on each side of a removed box, at least
MAX_MARGIN = 160  # px of context on each side, at most (the margin is otherwise the box's size)
CORNER = 0.12  # side of a corner square, as a fraction of the film's long side
STRIP = 0.08  # height of the top and bottom strips, as a fraction of the film's height
STRIP_WIDTH = 1024  # widest strip shown at full resolution (px); wider ones are subsampled
OVERVIEW_SIDE = 256  # long side (px) of the downsampled whole-film overview
ZOOM_SIDE = 192  # crops with a smaller long side are enlarged (whole factor, nearest neighbour) ...
MAX_ZOOM = 4  # ... by at most this factor
GAP = 6  # px of white between panels
REMOVED = (0, 255, 0)  # outline of a removed box (before panel only)
LEFT = (255, 0, 0)  # outline of a box left in the film (refused by the text guard, or a kept laterality marker)
WHITE = 255


class FilmError(Exception):
    """A film that cannot be shown; the message is safe to print (never a header value)."""


@dataclass(frozen=True)
class Film:
    """A radiograph's stored gray values `pixels` (H, W); `lo` and `hi` are shown as black and white."""

    pixels: np.ndarray
    lo: float
    hi: float
    kind: str  # "png8", "png16", "jpeg" or "dicom"

    @property
    def shape(self) -> tuple[int, int]:
        return self.pixels.shape[:2]

    def display(self, window: Window | None = None, step: int = 1) -> np.ndarray:
        """(h, w) uint8 display values of `window` (whole film if None), every `step`-th pixel."""
        x0, y0, x1, y1 = window or (0, 0, self.shape[1], self.shape[0])
        cut = self.pixels[y0:y1:step, x0:x1:step].astype(np.float64)
        scale = 255.0 / (self.hi - self.lo) if self.hi > self.lo else 0.0
        return np.clip(np.round((cut - self.lo) * scale), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Crop:
    """One embedded picture: PNG bytes, a caption, and whether its pixels are the film's at full resolution."""

    caption: str
    png: bytes
    full_resolution: bool = True


# ---------------------------------------------------------------- reading


def source_root(run_root: Path) -> tuple[Path, str]:
    """The folder the manifest's `source` paths are relative to, and where that came from (for the report).

    config.yaml's `data.root` (a relative one is taken from the current directory); null or absent: the
    synthetic dataset `<run>/data`. The file is read as data only (yaml.safe_load).
    """
    path = run_root / "config.yaml"
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return run_root / "data", "config.yaml is missing or unreadable, so the run's data/ folder was tried"
    data = config.get("data") if isinstance(config, dict) else None
    root = data.get("root") if isinstance(data, dict) else None
    if not root:
        return run_root / "data", "the synthetic dataset in the run's data/ folder (config.yaml data.root is null)"
    return Path(str(root)).expanduser().absolute(), "the run's source dataset (config.yaml data.root)"


def _kind(path: Path, start: bytes) -> str:
    if start.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png16" if len(start) > 24 and start[24] == 16 else "png8"
    if start.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if start[128:132] == b"DICM":
        return "dicom"
    raise FilmError(f"{path.name}: not a PNG, JPEG or DICOM file")


def _gray(pixels: np.ndarray) -> np.ndarray:
    """(H, W) gray of (H, W), (H, W, 2) gray+alpha, (H, W, 3|4) RGB(A): ITU-R 601 weights, rounded."""
    if pixels.ndim == 2:
        return pixels
    if pixels.shape[2] <= 2:
        return pixels[..., 0]
    weights = np.array([0.299, 0.587, 0.114])
    return np.round(pixels[..., :3].astype(np.float64) @ weights)


def _read_dicom(path: Path) -> Film:
    """Stored values of an uncompressed one-frame gray DICOM, min-max stretched; FilmError otherwise."""
    try:
        with warnings.catch_warnings():  # pydicom's warnings may quote header values
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(path)
            syntax = dataset.file_meta.get("TransferSyntaxUID")
            if syntax is None or syntax.is_compressed:
                raise FilmError("not shown: DICOM with compressed (or unknown) pixel encoding")
            if int(dataset.get("SamplesPerPixel", 1)) != 1 or int(dataset.get("NumberOfFrames", 1) or 1) != 1:
                raise FilmError("not shown: DICOM with colour or several frames")
            pixels = np.asarray(dataset.pixel_array)
    except FilmError:
        raise
    except Exception as error:  # pydicom raises many kinds; only the kind is reported, never a value
        raise FilmError(f"not shown: DICOM unreadable ({type(error).__name__})") from None
    if pixels.ndim != 2:
        raise FilmError("not shown: DICOM pixel data is not one gray frame")
    return Film(pixels, float(pixels.min()), float(pixels.max()), "dicom")


def read_film(path: Path) -> Film:
    """The film at `path` (PNG 8/16-bit gray or RGB, JPEG, simple DICOM); FilmError says why not."""
    try:
        with path.open("rb") as handle:
            start = handle.read(132)
    except OSError as error:
        raise FilmError(f"{path.name}: {'not found' if isinstance(error, FileNotFoundError) else 'unreadable'}") \
            from None
    kind = _kind(path, start)
    if kind == "dicom":
        return _read_dicom(path)
    try:
        with PILImage.open(path) as image:
            if image.mode in ("P", "PA", "1"):
                image = image.convert("L")
            pixels = _gray(np.asarray(image))
    except Exception as error:  # decoders of damaged files raise many kinds
        raise FilmError(f"{path.name}: cannot decode ({type(error).__name__}: {error})") from None
    if kind == "png16":
        return Film(pixels, float(pixels.min()), float(pixels.max()), kind)
    return Film(pixels, 0.0, 255.0, kind)


def read_pair(before: Path, after: Path) -> tuple[Film, Film]:
    """Source and COVIDx++ film; a 16-bit PNG's copy is shown with the source's mapping. FilmError if unusable."""
    source = read_film(before)
    try:
        cleaned = read_film(after)
    except FilmError as error:
        raise FilmError(f"COVIDx++ copy: {error}") from None
    if cleaned.shape != source.shape:
        raise FilmError(f"COVIDx++ copy is {cleaned.shape[1]}×{cleaned.shape[0]} px, the source "
                        f"{source.shape[1]}×{source.shape[0]} px")
    if source.kind == "png16":
        cleaned = replace(cleaned, lo=source.lo, hi=source.hi)
    return source, cleaned


def safe_join(root: Path, relative: str) -> Path | None:
    """`root / relative`, or None when `relative` is absolute or climbs out with `..`."""
    parts = PurePosixPath(str(relative).replace("\\", "/"))
    if not str(relative) or parts.is_absolute() or ".." in parts.parts:
        return None
    return root / parts


# ---------------------------------------------------------------- geometry and pictures


def parse_boxes(text: object) -> list[dict]:
    """The manifest's JSON list of boxes ({x0, y0, x1, y1, score, ...}); empty when blank or unreadable."""
    if not isinstance(text, str) or not text.strip():
        return []
    try:
        boxes = json.loads(text)
    except ValueError:
        return []
    return [b for b in boxes if isinstance(b, dict) and {"x0", "y0", "x1", "y1"} <= set(b)] \
        if isinstance(boxes, list) else []


def as_window(box: Mapping) -> Window:
    return int(box["x0"]), int(box["y0"]), int(box["x1"]), int(box["y1"])


def box_window(box: Window, shape: tuple[int, int], min_margin: int = MIN_MARGIN,
               max_margin: int = MAX_MARGIN) -> Window:
    """The crop around `box`: a margin of the box's own width (height) on each side, clipped to
    [min_margin, max_margin] px, and the crop clipped to the film of `shape` (H, W) (so is a box outside it)."""
    height, width = shape
    x0, x1 = sorted(int(np.clip(x, 0, width)) for x in (box[0], box[2]))
    y0, y1 = sorted(int(np.clip(y, 0, height)) for y in (box[1], box[3]))
    margin_x = int(np.clip(x1 - x0, min_margin, max_margin))
    margin_y = int(np.clip(y1 - y0, min_margin, max_margin))
    return max(0, x0 - margin_x), max(0, y0 - margin_y), min(width, x1 + margin_x), min(height, y1 + margin_y)


def corner_windows(shape: tuple[int, int], fraction: float = CORNER) -> dict[str, Window]:
    """Squares of `fraction` × the long side (at most the short side) at the four corners of a film (H, W)."""
    height, width = shape
    side = max(1, min(round(fraction * max(height, width)), height, width))
    return {"top-left": (0, 0, side, side), "top-right": (width - side, 0, width, side),
            "bottom-left": (0, height - side, side, height), "bottom-right": (width - side, height - side, width,
                                                                             height)}


def edge_window(shape: tuple[int, int], edge: str, fraction: float = STRIP) -> Window:
    """The full-width strip of the top or bottom (`edge`) `fraction` of a film (H, W)."""
    height, width = shape
    rows = max(1, round(fraction * height))
    return (0, 0, width, rows) if edge == "top" else (0, height - rows, width, height)


def rgb(gray: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 of an (h, w) uint8."""
    return np.repeat(gray[..., None], 3, axis=2)


def outline(picture: np.ndarray, box: Window, window: Window, colour: tuple[int, int, int], step: int = 1) -> None:
    """Draw `box` (film pixels) in place on `picture` (h, w, 3), the crop of `window` taken every `step`-th
    pixel: a 1-px line just outside the box, so the box's own pixels stay as they are."""
    height, width = picture.shape[:2]
    left, top = (box[0] - window[0]) // step - 1, (box[1] - window[1]) // step - 1
    right, bottom = -(-(box[2] - window[0]) // step), -(-(box[3] - window[1]) // step)
    columns = slice(max(left, 0), max(min(right + 1, width), 0))
    rows = slice(max(top, 0), max(min(bottom + 1, height), 0))
    for row in (top, bottom):
        if 0 <= row < height:
            picture[row, columns] = colour
    for column in (left, right):
        if 0 <= column < width:
            picture[rows, column] = colour


def side_by_side(panels: Sequence[np.ndarray], gap: int = GAP) -> np.ndarray:
    """Panels (h, w_i[, 3]) of one height in a row, `gap` white columns between them."""
    spacer = np.full((panels[0].shape[0], gap, *panels[0].shape[2:]), WHITE, np.uint8)
    row: list[np.ndarray] = []
    for panel in panels:
        row += [spacer, panel] if row else [panel]
    return np.concatenate(row, axis=1)


def stacked(rows: Sequence[np.ndarray], gap: int = GAP) -> np.ndarray:
    """Rows (h_i, w[, 3]) of one width one above the other, `gap` white rows between them."""
    return np.swapaxes(side_by_side([np.swapaxes(r, 0, 1) for r in rows], gap), 0, 1)


def zoom_factor(shape: tuple[int, ...], target: int = ZOOM_SIDE, most: int = MAX_ZOOM) -> int:
    """The whole factor that brings a small crop (h, w) towards `target` px on its long side (1 to `most`)."""
    return max(1, min(most, target // max(1, *shape[:2])))


def enlarge(picture: np.ndarray, factor: int) -> np.ndarray:
    """Each pixel as a factor × factor block (nearest neighbour): the values are unchanged."""
    return picture if factor == 1 else picture.repeat(factor, axis=0).repeat(factor, axis=1)


def png(picture: np.ndarray) -> bytes:
    """PNG bytes of an (h, w) or (h, w, 3) uint8 array, lossless."""
    buffer = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(picture)).save(buffer, format="PNG")
    return buffer.getvalue()


def _step_note(step: int) -> str:
    return "every pixel" if step == 1 else f"1 pixel in {step} along each axis"


def _zoom_note(factor: int) -> str:
    return "film pixels 1:1" if factor == 1 else f"film pixels enlarged {factor}× (nearest neighbour)"


# ---------------------------------------------------------------- what the report shows


def box_crop(before: Film, after: Film, box: Window, left: Iterable[Window] = ()) -> tuple[np.ndarray, Window, int]:
    """Before | after around a removed `box`, its outline (and those of boxes `left` in the film) on the
    before panel only; returns the (h, w, 3) uint8 picture, the crop window and the enlargement factor."""
    window = box_window(box, before.shape)
    first = rgb(before.display(window))
    for other in left:
        outline(first, other, window, LEFT)
    outline(first, box, window, REMOVED)
    factor = zoom_factor(first.shape)
    return side_by_side([enlarge(first, factor), enlarge(rgb(after.display(window)), factor)]), window, factor


def overview(before: Film, after: Film, boxes: Sequence[Window], left: Sequence[Window]) -> tuple[np.ndarray, str]:
    """Whole films before | after with the boxes outlined on before: every `step`-th pixel when the long side
    exceeds OVERVIEW_SIDE, else enlarged towards it; returns the (h, w, 3) uint8 picture and its scale in words."""
    step = max(1, math.ceil(max(before.shape) / OVERVIEW_SIDE))
    first = rgb(before.display(step=step))
    whole = (0, 0, before.shape[1], before.shape[0])
    for box in left:
        outline(first, box, whole, LEFT, step)
    for box in boxes:
        outline(first, box, whole, REMOVED, step)
    factor = zoom_factor(before.shape, OVERVIEW_SIDE) if step == 1 else 1
    picture = side_by_side([enlarge(first, factor), enlarge(rgb(after.display(step=step)), factor)])
    return picture, _step_note(step) if step > 1 else _zoom_note(factor)


def corners(film: Film) -> tuple[np.ndarray, int, int]:
    """The four corner squares in a 2 × 2 grid as on the film; returns the (h, w) uint8 picture, the square's
    side (film px) and the enlargement factor."""
    windows = corner_windows(film.shape)
    side = windows["top-left"][2]
    factor = zoom_factor((side, side))
    squares = {name: enlarge(film.display(window), factor) for name, window in windows.items()}
    grid = stacked([side_by_side([squares["top-left"], squares["top-right"]]),
                    side_by_side([squares["bottom-left"], squares["bottom-right"]])])
    return grid, side, factor


def edge_strip(film: Film, edge: str, widest: int = STRIP_WIDTH) -> tuple[np.ndarray, str]:
    """The top or bottom (`edge`) strip at full resolution (enlarged when narrow), or every `step`-th pixel
    when wider than `widest`; returns the (h, w) uint8 picture and its scale in words."""
    window = edge_window(film.shape, edge)
    step = max(1, math.ceil(film.shape[1] / widest))
    if step > 1:
        return film.display(window, step), f"{_step_note(step)} (downsampled to fit)"
    strip = film.display(window)
    factor = zoom_factor(strip.shape)
    return enlarge(strip, factor), _zoom_note(factor)


@dataclass(frozen=True)
class Shown:
    """What a crops section shows: pictures in order, the number of films shown, films not shown and why."""

    items: list[Crop]
    films: int
    skipped: list[tuple[str, str]]


def _film_paths(row: pd.Series, root: Path, pp_root: Path) -> tuple[Path, Path]:
    output = row.get("output")
    before = safe_join(root, row["source"])
    after = safe_join(pp_root, output if isinstance(output, str) and output else row["source"])
    if before is None or after is None:
        raise FilmError("path in the manifest is absolute or leaves its folder")
    if not before.is_file():
        raise FilmError(f"source not found under {root}")
    return before, after


def cleaned_crops(cleaned: pd.DataFrame, root: Path, pp_root: Path, films: int, boxes_per_film: int) -> Shown:
    """For the `films` cleaned films with the largest masked area (first readable ones): a whole-film overview and
    full-resolution before | after crops of at most `boxes_per_film` removed boxes each (largest first)."""
    items: list[Crop] = []
    skipped: list[tuple[str, str]] = []
    shown = 0
    for _, row in cleaned.sort_values(["masked_fraction", "source"], ascending=[False, True]).iterrows():
        if shown == films or len(skipped) >= 3 * films:
            break
        removed = [as_window(b) for b in parse_boxes(row.get("boxes"))]
        left = [as_window(b) for column in ("refused_boxes", "kept_boxes") for b in parse_boxes(row.get(column))]
        if not removed:
            skipped.append((row["source"], "no removed box recorded in the manifest"))
            continue
        try:
            before, after = read_pair(*_film_paths(row, root, pp_root))
        except FilmError as error:
            skipped.append((row["source"], str(error)))
            continue
        shown += 1
        picture, scale = overview(before, after, removed, left)
        height, width = before.shape
        items.append(Crop(f"{row['source']} ({width}×{height} px, {row['masked_fraction']:.3f} of the film masked): "
                          f"whole film, before | after (COVIDx++), {scale}; green: removed text, red: "
                          "boxes left in the film", png(picture), full_resolution=False))
        largest = sorted(removed, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
        for number, box in enumerate(largest[:boxes_per_film], 1):
            picture, window, factor = box_crop(before, after, box, left)
            items.append(Crop(
                f"{row['source']}, removed box {number} of {len(removed)}: x {box[0]}–{box[2]}, y {box[1]}–{box[3]} "
                f"({box[2] - box[0]}×{box[3] - box[1]} px); crop x {window[0]}–{window[2]}, y {window[1]}–{window[3]}; "
                f"left: before (box outlined in green), right: after (COVIDx++); {_zoom_note(factor)}",
                png(picture)))
    return Shown(items, shown, skipped)


def pick_unchanged(manifest: pd.DataFrame, shares: Mapping[str, float] | None, n: int) -> pd.DataFrame:
    """`n` films with status "unchanged" and no box detected at all (none kept or refused either): those with the
    highest share in `shares` (source → share) first, then by name."""
    rows = manifest[manifest["status"] == "unchanged"]
    for column in ("boxes", "kept_boxes", "refused_boxes"):
        if column in rows:
            rows = rows[np.array([not parse_boxes(text) for text in rows[column]], dtype=bool)]
    share = rows["source"].map(lambda source: (shares or {}).get(source, -1.0))
    return rows.assign(_share=share).sort_values(["_share", "source"], ascending=[False, True]).head(n)


def unchanged_crops(films: pd.DataFrame, root: Path) -> Shown:
    """Full-resolution corner squares and the top and bottom strips of each film (where burned-in text
    usually sits)."""
    items: list[Crop] = []
    skipped: list[tuple[str, str]] = []
    for _, row in films.iterrows():
        before = safe_join(root, row["source"])
        try:
            if before is None:
                raise FilmError("path in the manifest is absolute or leaves its folder")
            film = read_film(before)
        except FilmError as error:
            skipped.append((row["source"], str(error)))
            continue
        height, width = film.shape
        picture, side, factor = corners(film)
        items.append(Crop(f"{row['source']} ({width}×{height} px), no text detected: the four corners "
                          f"({side}×{side} px each, placed as on the film), {_zoom_note(factor)}; check that no "
                          "text was missed", png(picture)))
        for edge in ("top", "bottom"):
            strip, scale = edge_strip(film, edge)
            rows = edge_window(film.shape, edge)
            items.append(Crop(f"{row['source']}, no text detected: the {edge} {rows[3] - rows[1]} px, full width, "
                              f"{scale}", png(strip), full_resolution="downsampled" not in scale))
    return Shown(items, len(items) // 3, skipped)
