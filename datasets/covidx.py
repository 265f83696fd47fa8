"""COVIDx split files: parse, validate, write, check patient leakage, carve a validation split.

A line is `<patient_id> <filename> <label> [<source>]`, parsed from the right because SIRM patient
ids contain a space (5 tokens). Labels are 3-class (`normal`, `pneumonia`, `COVID-19`) or binary
(`positive`, `negative`); one file uses one scheme.

Published files are read as they are, including their known faults: v1's train file repeats ~3,000
lines verbatim (read once, counted in `SplitRead.repeated_lines`), and v4's train file lists one image
under two patient ids (by default the first line is kept and the conflict recorded in
`SplitRead.conflicts`; `duplicates="error"` refuses the file instead).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Literal, get_args

import numpy as np

from datasets.atomic import write_text
from datasets.errors import PatientLeakError, SplitFileError

LOG = logging.getLogger(__name__)

LABELS_3CLASS = ("normal", "pneumonia", "COVID-19")
LABELS_BINARY = ("negative", "positive")
# `rnsa` is a real typo for `rsna` in the v9 files; it is kept as written.
SOURCES = frozenset({"cohen", "fig1", "actmed", "sirm", "rsna", "rnsa", "ricord", "bimcv", "stonybrook"})
# Real ids are at most ~40 characters; a longer one means several records ran together on one line.
MAX_PATIENT_ID_LENGTH = 200
# Values quoted in error messages are cut to this many characters, so no message is huge.
QUOTE_LENGTH = 80

# What to do with a filename listed again with a different patient, label or source.
DuplicatePolicy = Literal["keep_first", "error"]
# Line breaks other than \n, \r\n and \r that str.splitlines also breaks at (and str.split() splits on).
_UNUSUAL_LINE_BREAK = re.compile("[\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
# Control characters (Unicode Cc) other than tab and the line breaks above, and a byte-order mark.
_CONTROL_CHARACTER = re.compile("[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f\ufeff]")


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
        tokens = [self.patient_id, self.filename, self.label] + ([self.source] if self.source else [])
        return " ".join(tokens)


@dataclass(frozen=True)
class RepeatedLine:
    """A line whose fields repeat an earlier line exactly: `filename` was read once, from `first_line`."""

    filename: str
    first_line: int
    repeat_lines: tuple[int, ...]


@dataclass(frozen=True)
class FilenameConflict:
    """`filename` listed again with a different patient, label or source: `dropped` was not read."""

    kept_line: int
    kept: Record
    dropped_line: int
    dropped: Record

    @property
    def filename(self) -> str:
        return self.kept.filename

    @property
    def differs(self) -> tuple[str, ...]:
        """The Record fields that differ: some of `patient_id`, `label`, `source`."""
        return tuple(name for name in ("patient_id", "label", "source")
                     if getattr(self.kept, name) != getattr(self.dropped, name))

    def describe(self) -> str:
        """E.g. `filename 'a.png' is on line 1 and again on line 3 with a different patient_id ('p1' vs 'p3')`."""
        changes = ", ".join(
            f"{name} ({_quote(getattr(self.kept, name))} vs {_quote(getattr(self.dropped, name))})"
            for name in self.differs
        )
        return (f"filename {_quote(self.filename)} is on line {self.kept_line} and again on line "
                f"{self.dropped_line} with a different {changes}")


@dataclass(frozen=True)
class SplitRead:
    """A split file as read: one record per filename in file order, and what was found on the way."""

    records: tuple[Record, ...]
    repeated_lines: tuple[RepeatedLine, ...]
    conflicts: tuple[FilenameConflict, ...]

    @property
    def repeated_line_count(self) -> int:
        """How many lines were skipped as exact repeats of an earlier line."""
        return sum(len(repeated.repeat_lines) for repeated in self.repeated_lines)


def parse_line(text: str, *, path: str | Path = "<split>", line: int | None = None) -> Record:
    """Parse one split-file line (3, 4 or 5 tokens) from the right; raise SplitFileError if malformed."""
    tokens = text.split()
    if len(tokens) < 3:
        raise SplitFileError(
            path, f"malformed line {_quote(text.strip())}: expected '<patient_id> <filename> <label> [<source>]'", line
        )
    source = tokens.pop() if len(tokens) >= 4 and tokens[-1] in SOURCES else None
    patient, filename, label = " ".join(tokens[:-2]), tokens[-2], tokens[-1]
    if label not in LABELS_3CLASS + LABELS_BINARY:
        if source is None and tokens[-2] in LABELS_3CLASS + LABELS_BINARY:
            raise SplitFileError(path, f"unknown source {_quote(label)}: expected one of {sorted(SOURCES)}", line)
        severity = "; COVIDx severity labels (level1, level2) are not supported" if label.startswith("level") else ""
        raise SplitFileError(
            path,
            f"unknown label {_quote(label)}: expected 3-class ({', '.join(LABELS_3CLASS)}) "
            f"or binary ({', '.join(LABELS_BINARY)}) labels, one scheme per file{severity}",
            line,
        )
    if len(patient) > MAX_PATIENT_ID_LENGTH:
        raise SplitFileError(
            path,
            f"patient id is {len(patient)} characters, expected at most {MAX_PATIENT_ID_LENGTH}: are several "
            f"records on one line? (line starts {_quote(text.strip())})",
            line,
        )
    _check_filename(filename, path, line)
    return Record(patient, filename, label, source)


def read_split(
    path: str | Path, image_dir: str | Path | None = None, *, duplicates: DuplicatePolicy = "keep_first"
) -> list[Record]:
    """The records of `read_split_checked` (one per filename, in file order), for callers that need no findings."""
    return list(read_split_checked(path, image_dir, duplicates=duplicates).records)


def read_split_checked(
    path: str | Path, image_dir: str | Path | None = None, *, duplicates: DuplicatePolicy = "keep_first"
) -> SplitRead:
    """Read and validate a split file; with `image_dir`, resolve and check every image path.

    Lines end where `str.splitlines` ends them: at `\\n`, `\\r\\n`, `\\r` and also at form feed, vertical
    tab, FS/GS/RS, NEL (U+0085), U+2028 and U+2029, which `str.split()` would otherwise take as spaces and
    so run records together. Line numbers in errors and findings count those breaks too (a warning is
    logged when a file has them, since an editor may number such a file differently). Blank lines count.

    A filename listed again with the same fields is read once and recorded in `repeated_lines`. Listed
    again with a different patient, label or source, the `duplicates` policy decides: `"keep_first"`
    keeps the first line and records the conflict in `conflicts` (and logs a warning), `"error"` raises.

    Raises SplitFileError naming the file, and the line where there is one, for: a file that is not
    UTF-8 text (NUL bytes, undecodable bytes), a control character within a line, a malformed line, an
    unknown label or source, labels of both schemes in one file, a patient id over MAX_PATIENT_ID_LENGTH,
    a filename that escapes `image_dir` (`..`, absolute, symlink out), with `image_dir` a missing image
    file, and with `duplicates="error"` a conflicting duplicate (naming both lines). Values quoted in
    messages are cut to QUOTE_LENGTH characters.
    """
    if duplicates not in get_args(DuplicatePolicy):
        raise ValueError(f"duplicates must be one of {get_args(DuplicatePolicy)}, got {duplicates!r}")
    path = Path(path)
    text = _read_text(path)
    folder = Path(image_dir).resolve() if image_dir is not None else None
    lines = text.splitlines()
    unusual = _UNUSUAL_LINE_BREAK.search(text)
    if unusual:
        line_number = len((text[: unusual.start()] + "x").splitlines())  # "x": the line it ends, even if empty
        LOG.warning("%s: line %d ends in U+%04X, read as a line break (line numbers count these breaks)",
                    path, line_number, ord(unusual.group()))
    records: list[Record] = []
    first: dict[str, tuple[int, Record]] = {}  # filename -> the line it was read from
    repeats: dict[str, list[int]] = defaultdict(list)
    conflicts: list[FilenameConflict] = []
    scheme: tuple[int, str] | None = None  # the first record's line and label: its label scheme is the file's
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        control = _CONTROL_CHARACTER.search(line)
        if control:
            raise SplitFileError(
                path,
                f"control character U+{ord(control.group()):04X} at column {control.start() + 1}: expected "
                "printable text, fields separated by spaces (U+FEFF here usually means concatenated files)",
                number,
            )
        record = parse_line(line, path=path, line=number)
        if scheme is None:
            scheme = (number, record.label)
        elif (record.label in LABELS_BINARY) != (scheme[1] in LABELS_BINARY):
            raise SplitFileError(
                path,
                f"label {record.label!r} mixes binary and 3-class labels (line {scheme[0]} has {scheme[1]!r})",
                number,
            )
        if record.filename in first:
            kept_line, kept = first[record.filename]
            if record == replace(kept, path=None):
                repeats[record.filename].append(number)
                continue
            conflict = FilenameConflict(kept_line, kept, number, replace(record, path=kept.path))
            if duplicates == "error":
                raise SplitFileError(path, f"duplicate {conflict.describe()}: list each image once", number)
            conflicts.append(conflict)
            continue
        if folder is not None:
            record = replace(record, path=_resolve_image(folder, record.filename, path, number))
        first[record.filename] = (number, record)
        records.append(record)
    if not records:
        raise SplitFileError(path, "split file has no records: expected one line per image")
    if conflicts:
        LOG.warning("%s: %d filename(s) listed again with other fields; kept the first line of each, e.g. %s",
                    path, len(conflicts), conflicts[0].describe())
    if repeats:
        LOG.info("%s: %d line(s) repeat an earlier line exactly; read once", path, sum(map(len, repeats.values())))
    repeated = tuple(RepeatedLine(name, first[name][0], tuple(numbers)) for name, numbers in repeats.items())
    return SplitRead(tuple(records), repeated, tuple(conflicts))


def write_split(records: Iterable[Record], path: str | Path) -> Path:
    """Write records as a split file atomically (one line each, `\\n` endings); the inverse of read_split."""
    lines = []
    for number, record in enumerate(records, start=1):
        line = record.to_line()
        if parse_line(line, path=path, line=number) != replace(record, path=None):
            raise SplitFileError(path, f"record {_quote(line)} would not read back as written", number)
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
        examples = ", ".join(_quote(patient) for patient in sorted(shared)[:5])
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


def _quote(value: str | None) -> str:
    """`repr(value)`, a string cut to QUOTE_LENGTH characters (then marked `…` with the full length)."""
    if value is None or len(value) <= QUOTE_LENGTH:
        return repr(value)
    return f"{value[:QUOTE_LENGTH]!r}… ({len(value):,} characters)"


def _read_text(path: Path) -> str:
    """The file as UTF-8 text (a leading BOM dropped); SplitFileError if unreadable, binary or not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SplitFileError(path, f"cannot read split file ({err.__class__.__name__}: {err.strerror})") from err
    nul = data.find(b"\0")
    if nul >= 0:
        raise SplitFileError(path, f"not a text file: NUL byte at offset {nul}: expected a UTF-8 split file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SplitFileError(
            path, f"not UTF-8 text: byte 0x{data[err.start]:02x} at offset {err.start}: expected UTF-8"
        ) from None


def _check_filename(filename: str, path: str | Path, line: int | None) -> None:
    """Reject filenames that could leave the image folder: absolute, drive-rooted, or with `..`."""
    parts = PurePosixPath(filename.replace("\\", "/")).parts
    if filename.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", filename) or ".." in parts:
        raise SplitFileError(
            path, f"filename {_quote(filename)} escapes the image folder: expected a relative name", line
        )


def _resolve_image(folder: Path, filename: str, path: Path, line: int) -> Path:
    """`folder / filename`; raise if it (symlinks followed) lies outside `folder` or is not a file."""
    image = folder / filename
    try:
        target = image.resolve()
        is_file = target.is_file()
    except OSError as err:  # e.g. a name too long for the file system
        raise SplitFileError(
            path, f"image file {_quote(filename)} cannot be looked up in {folder} ({err.strerror})", line
        ) from None
    if not target.is_relative_to(folder):
        raise SplitFileError(path, f"filename {_quote(filename)} resolves outside the image folder {folder}", line)
    if not is_file:
        raise SplitFileError(path, f"image file {_quote(filename)} not found in {folder}", line)
    return image
