"""What a probe reads about one film (`ProbeFilm`), building them from split records, and the input checks.

A probe trains on the films of the training split and is scored on those of the test split; the two
must share no patient (the split files are split by patient; `check_films` refuses a leak). Everything a
view needs travels with the film: its image path, the text boxes found in it (pixels of the stored image),
a lung-field mask when one is known (the synthetic generator's), and the path of its COVIDx++ copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.covidx import Record, check_disjoint
from datasets.errors import DatasetError
from datasets.images import read_image
from datasets.synthetic import ImageTruth

SPLITS = ("train", "test")


class ProbeError(ValueError):
    """Probe input that cannot give a probe: too few films, sources or classes, or a bad setting."""


@dataclass(frozen=True, eq=False)
class ProbeFilm:
    """One film as the probes see it.

    split: "train" (the probe learns from it) or "test" (it is scored on it). path: the stored film.
    boxes: text boxes (x0, y0, x1, y1), pixels of the stored film, half-open. lungs: (H, W) bool lung
    fields in the stored film's pixels, or None (then `views.lung_field_mask` estimates them).
    cleaned: the film's COVIDx++ copy, or None.
    """

    filename: str
    patient_id: str
    label: str
    source: str
    split: str
    path: Path
    boxes: tuple[tuple[int, int, int, int], ...] = ()
    lungs: np.ndarray | None = None
    cleaned: Path | None = None


def films_from_records(
    records: Sequence[Record], split: str, *, boxes: Mapping[str, Sequence] | None = None,
    lungs: Mapping[str, np.ndarray] | None = None, cleaned_root: str | Path | None = None,
) -> list[ProbeFilm]:
    """ProbeFilms of split records (with image paths: `read_split(..., image_dir)`), for probe split `split`.

    boxes: filename → boxes, each a `pipeline.text.TextBox` or anything with x0, y0, x1, y1 (a
    `datasets.synthetic.BurnedText`) or a 4-tuple; films without an entry have none. lungs: filename →
    (H, W) bool mask. cleaned_root: the folder holding each film's COVIDx++ copy under its filename.
    Raises DatasetError naming the split file's image when a record has no path or no source.
    """
    if split not in SPLITS:
        raise ProbeError(f"split must be one of {SPLITS}, got {split!r}")
    boxes, lungs = boxes or {}, lungs or {}
    films = []
    for record in records:
        if record.path is None:
            raise DatasetError(record.filename, "record has no image path: read the split with its image folder")
        if not record.source:
            raise DatasetError(record.path, "record has no source (the split file's fourth column): a source "
                                            "probe needs one per film")
        films.append(ProbeFilm(
            record.filename, record.patient_id, record.label, record.source, split, Path(record.path),
            tuple(as_box(box) for box in boxes.get(record.filename, ())), lungs.get(record.filename),
            None if cleaned_root is None else Path(cleaned_root) / record.filename))
    return films


def generator_lungs(root: str | Path, truths: Sequence[ImageTruth]) -> dict[str, np.ndarray]:
    """filename → the synthetic generator's lung-field mask (H, W) bool, for the films whose ground truth
    (`datasets.synthetic.read_truth(root, split)`) names one; folders generated before the masks have none."""
    return {truth.filename: read_image(Path(root) / truth.lungs) > 0.5 for truth in truths if truth.lungs}


def as_box(box: object) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a TextBox, a BurnedText or a 4-sequence."""
    if hasattr(box, "x0"):
        return int(box.x0), int(box.y0), int(box.x1), int(box.y1)  # type: ignore[attr-defined]
    x0, y0, x1, y1 = box  # type: ignore[misc]
    return int(x0), int(y0), int(x1), int(y1)


def check_films(films: Sequence[ProbeFilm], *, min_per_split: int = 2) -> tuple[list[ProbeFilm], list[ProbeFilm]]:
    """(train, test) films after the checks every probe needs: known splits, no repeated film in a split,
    no patient in both splits (PatientLeakError naming the first test film), `min_per_split` films each."""
    unknown = sorted({film.split for film in films} - set(SPLITS))
    if unknown:
        raise ProbeError(f"film splits {unknown} are not one of {SPLITS}")
    train = [film for film in films if film.split == "train"]
    test = [film for film in films if film.split == "test"]
    for part in (train, test):
        seen: set[Path] = set()
        for film in part:
            if film.path in seen:
                raise DatasetError(film.path, f"listed twice in the probe's {film.split} films: expected once")
            seen.add(film.path)
    if len(train) < min_per_split or len(test) < min_per_split:
        raise ProbeError(f"{len(train)} training and {len(test)} test films: a probe needs at least {min_per_split} "
                         "of each")
    as_records = [[Record(f.patient_id, f.filename, f.label, f.source, f.path) for f in part] for part in (train, test)]
    check_disjoint(*as_records, test_path=test[0].path)
    return train, test
