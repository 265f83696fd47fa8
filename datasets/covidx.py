"""COVIDx split files: parse, validate, write, check patient leakage, carve a validation split.

A line is `<patient_id> <filename> <label> [<source>]`, parsed from the right because SIRM patient
ids contain a space (5 tokens). Labels are 3-class (`normal`, `pneumonia`, `COVID-19`) or binary
(`positive`, `negative`); one file uses one scheme.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import numpy as np

from datasets.atomic import write_text
from datasets.errors import PatientLeakError, SplitFileError

LOG = logging.getLogger(__name__)

LABELS_3CLASS = ("normal", "pneumonia", "COVID-19")
LABELS_BINARY = ("negative", "positive")
# `rnsa` is a real typo for `rsna` in the v9 files; it is kept as written.
SOURCES = frozenset({"cohen", "fig1", "actmed", "sirm", "rsna", "rnsa", "ricord", "bimcv", "stonybrook"})


@dataclass(frozen=True)
class Record:
    """One split-file line; `path` is the resolved image path when an image folder was given."""

    patient_id: str
    filename: str
    label: str
    source: str | None = None
    path: Path | None = None

    def to_line(self) -> str:
        """The split-file line (no newline)."""
        fields = [self.patient_id, self.filename, self.label] + ([self.source] if self.source else [])
        return " ".join(fields)


def parse_line(text: str, *, path: str | Path = "<split>", line: int | None = None) -> Record:
    """Parse one split-file line (3, 4 or 5 tokens) from the right; raise SplitFileError if malformed."""
    tokens = text.split()
    if len(tokens) < 3:
        raise SplitFileError(
            path, f"malformed line {text.strip()!r}: expected '<patient_id> <filename> <label> [<source>]'", line
        )
    source = tokens.pop() if len(tokens) >= 4 and tokens[-1] in SOURCES else None
    patient, filename, label = " ".join(tokens[:-2]), tokens[-2], tokens[-1]
    if label not in LABELS_3CLASS + LABELS_BINARY:
        if source is None and tokens[-2] in LABELS_3CLASS + LABELS_BINARY:
            raise SplitFileError(path, f"unknown source {label!r}: expected one of {sorted(SOURCES)}", line)
        raise SplitFileError(
            path, f"unknown label {label!r}: expected one of {list(LABELS_3CLASS + LABELS_BINARY)}", line
        )
    _check_filename(filename, path, line)
    return Record(patient, filename, label, source)


def read_split(path: str | Path, image_dir: str | Path | None = None) -> list[Record]:
    """Read and validate a split file; with `image_dir`, resolve and check every image path.

    Raises SplitFileError naming the file and line for: a malformed line, an unknown label or source,
    labels of both schemes in one file, a duplicate filename, a filename that escapes `image_dir`
    (`..`, absolute, symlink out) and, with `image_dir`, a missing image file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise SplitFileError(path, f"cannot read split file ({err.__class__.__name__}): expected UTF-8 text") from err
    folder = Path(image_dir).resolve() if image_dir is not None else None
    records: list[Record] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        record = parse_line(line, path=path, line=number)
        if record.filename in first_line:
            first = first_line[record.filename]
            raise SplitFileError(
                path, f"duplicate filename {record.filename!r} (first on line {first}): list each image once", number
            )
        first_line[record.filename] = number
        if records and (record.label in LABELS_BINARY) != (records[0].label in LABELS_BINARY):
            raise SplitFileError(
                path,
                f"label {record.label!r} mixes binary and 3-class labels (line 1 has {records[0].label!r})",
                number,
            )
        if folder is not None:
            record = replace(record, path=_resolve_image(folder, record.filename, path, number))
        records.append(record)
    if not records:
        raise SplitFileError(path, "split file has no records: expected one line per image")
    return records


def write_split(records: Iterable[Record], path: str | Path) -> Path:
    """Write records as a split file atomically (one line each, `\\n` endings); the inverse of read_split."""
    lines = []
    for number, record in enumerate(records, start=1):
        line = record.to_line()
        if parse_line(line, path=path, line=number) != replace(record, path=None):
            raise SplitFileError(path, f"record {record!r} would not read back as written", number)
        lines.append(line + "\n")
    return write_text(path, "".join(lines))


def patient_overlap(first: Iterable[Record], second: Iterable[Record]) -> set[str]:
    """Patient ids present in both record collections."""
    return {record.patient_id for record in first} & {record.patient_id for record in second}


def check_disjoint(
    train: Sequence[Record], test: Sequence[Record], *, test_path: str | Path = "<test split>", allow: bool = False
) -> set[str]:
    """Raise PatientLeakError if a patient is in both splits, unless `allow` (then warn); return the overlap."""
    shared = patient_overlap(train, test)
    if shared:
        examples = ", ".join(repr(patient) for patient in sorted(shared)[:5])
        message = f"{len(shared)} patient(s) also in the training split, e.g. {examples}: splits must be disjoint"
        if not allow:
            raise PatientLeakError(test_path, message)
        LOG.warning("%s: %s (allowed)", test_path, message)
    return shared


def split_by_patient(
    records: Sequence[Record], *, fraction: float = 0.1, seed: int = 0
) -> tuple[list[Record], list[Record]]:
    """Carve a validation split from `records` by patient, stratified by label; deterministic by seed.

    Patients are grouped by their label set (a patient with images of two labels forms its own
    stratum). From each stratum round(`fraction` × patients) go to validation, at least one and
    at most all but one when the stratum has two or more patients. Returns (train, validation) in
    input order.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    labels: dict[str, set[str]] = defaultdict(set)
    for record in records:
        labels[record.patient_id].add(record.label)
    strata: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for patient, patient_labels in labels.items():
        strata[tuple(sorted(patient_labels))].append(patient)
    rng = np.random.default_rng(seed)
    validation: set[str] = set()
    for key in sorted(strata):
        patients = sorted(strata[key])
        count = round(fraction * len(patients))
        if fraction > 0 and len(patients) >= 2:
            count = min(max(count, 1), len(patients) - 1)
        validation.update(patients[i] for i in rng.permutation(len(patients))[:count])
    return (
        [record for record in records if record.patient_id not in validation],
        [record for record in records if record.patient_id in validation],
    )


def _check_filename(filename: str, path: str | Path, line: int | None) -> None:
    """Reject filenames that could leave the image folder: absolute, drive-rooted, or with `..`."""
    parts = PurePosixPath(filename.replace("\\", "/")).parts
    if filename.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", filename) or ".." in parts:
        raise SplitFileError(path, f"filename {filename!r} escapes the image folder: expected a relative name", line)


def _resolve_image(folder: Path, filename: str, path: Path, line: int) -> Path:
    """`folder / filename`; raise if it (symlinks followed) lies outside `folder` or is not a file."""
    image = folder / filename
    target = image.resolve()
    if not target.is_relative_to(folder):
        raise SplitFileError(path, f"filename {filename!r} resolves outside the image folder {folder}", line)
    if not target.is_file():
        raise SplitFileError(path, f"image file {filename!r} not found in {folder}", line)
    return image
