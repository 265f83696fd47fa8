"""A split's boxes in the run directory's text/detections.csv: written resumably, read back."""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from datasets.atomic import MISSING, file_sha256, write_text
from datasets.covidx import Record
from datasets.errors import DatasetError
from datasets.images import read_image
from datasets.rejects import Rejected
from pipeline.text.boxes import TextBox
from pipeline.text.config import TextConfig, TextDetector
from pipeline.text.detect import make_detector

LOG = logging.getLogger(__name__)

DETECTION_COLUMNS = ("split", "filename", "status", "reason", "boxes", "seconds", "config_digest", "image_sha256")


@dataclass
class DetectionRow:
    """One image of `text/detections.csv`: status "ok" (boxes in the stored image's pixels) or "rejected".

    seconds: detection time of this image (its share of the batch it ran in), 0 for rejects;
    config_digest: `TextConfig.digest()` of the detector that found the boxes; image_sha256: of the image file
    the boxes were found in. A rerun keeps the row only when both still match.
    """

    split: str
    filename: str
    status: str
    reason: str = ""
    boxes: list[TextBox] = field(default_factory=list)
    seconds: float = 0.0
    config_digest: str = ""
    image_sha256: str = ""
    reused: bool = False  # not written: True when a rerun kept this row
    transient: bool = False  # not written: a reject that a retry may cure (a rerun retries every rejected row)

    def to_csv(self) -> dict[str, str]:
        return {"split": self.split, "filename": self.filename, "status": self.status, "reason": self.reason,
                "boxes": json.dumps([box.to_dict() for box in self.boxes]), "seconds": f"{self.seconds:.3f}",
                "config_digest": self.config_digest, "image_sha256": self.image_sha256}

    @classmethod
    def from_csv(cls, row: dict[str, str]) -> DetectionRow:
        return cls(row["split"], row["filename"], row["status"], row["reason"],
                   [TextBox.from_dict(item) for item in json.loads(row["boxes"] or "[]")],
                   float(row["seconds"] or 0), row.get("config_digest") or "", row.get("image_sha256") or "")


@dataclass
class DetectionTable:
    """The rows of a detections CSV (every split in it) and where it was written."""

    rows: list[DetectionRow]
    path: Path

    def boxes(self, split: str | None = None) -> dict[str, list[TextBox]]:
        """filename → boxes of the "ok" rows (of `split` when given); see `read_detections`."""
        return _boxes_by_filename(self.rows, split, self.path)

    def counts(self) -> dict[str, int]:
        """Rows per status ("ok", "rejected"), plus "reused" (rows a rerun kept)."""
        out = {status: sum(row.status == status for row in self.rows) for status in ("ok", "rejected")}
        return {**out, "reused": sum(row.reused for row in self.rows)}


def read_detections(path: str | Path, split: str | None = None) -> dict[str, list[TextBox]]:
    """filename → boxes (in the stored image's pixels) of the "ok" rows of a detections CSV, of `split`
    when given. Rejected images have no entry. A filename listed in two splits with different boxes
    raises ValueError unless `split` is given."""
    return _boxes_by_filename(_read_detection_rows(Path(path)), split, Path(path))


def _boxes_by_filename(rows: Iterable[DetectionRow], split: str | None, path: Path) -> dict[str, list[TextBox]]:
    out: dict[str, list[TextBox]] = {}
    for row in rows:
        if row.status != "ok" or (split is not None and row.split != split):
            continue
        if out.get(row.filename, row.boxes) != row.boxes:
            raise ValueError(f"{path}: {row.filename} has different boxes in two splits: pass split=")
        out[row.filename] = row.boxes
    return out


def _read_detection_rows(path: Path) -> list[DetectionRow]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        return [DetectionRow.from_csv(row) for row in csv.DictReader(handle)]


def _write_detections(path: Path, rows: Iterable[DetectionRow]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=DETECTION_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(row.to_csv() for row in rows)
    write_text(path, buffer.getvalue())


def detect_split(records: Iterable[Record], out_csv: str | Path, *, detector: TextDetector | None = None,
                 config: TextConfig | None = None, split: str = "", checkpoint_every: int = 50,
                 progress: Callable[[int], None] | None = None) -> DetectionTable:
    """Detect text in the images of one split and write them to `out_csv` (the run directory's
    `text/detections.csv`: split, filename, status, reason, boxes JSON, seconds, config digest).

    records: split-file records whose `path` is the resolved image (`read_split(file, image_dir)`);
    duplicates are detected once. Rows of other splits in `out_csv` are kept as they are; rows of
    `split` are replaced by one row per record, in record order. Resumes: an "ok" row of `split` with
    the same filename, the detector's `TextConfig.digest()` and the image file's sha256 is kept (`reused`), not
    detected again (an edited image is; rejected rows are retried). An unreadable or missing image is a
    "rejected" row with the reason.
    The CSV is written atomically every `checkpoint_every` images and at the end. `progress` is called
    with the number of images just finished. Images go to the detector `config.batch_size` at a time.
    """

    detector = detector or make_detector(config)
    digest = detector.config.digest()
    path = Path(out_csv)
    previous = _read_detection_rows(path)
    others = [row for row in previous if row.split != split]
    done = {row.filename: replace(row, reused=True) for row in previous
            if row.split == split and row.status == "ok" and row.config_digest == digest}
    unique = list({record.filename: record for record in records}.values())
    rows: dict[str, DetectionRow] = {}
    todo, unsaved = [], 0
    hashes = {record.filename: file_sha256(record.path) for record in unique}
    for record in unique:
        kept = done.get(record.filename)
        if kept is not None and kept.image_sha256 == hashes[record.filename] != MISSING:
            rows[record.filename] = kept
        else:
            todo.append(record)
    for start in range(0, len(todo), detector.config.batch_size):
        chunk = todo[start : start + detector.config.batch_size]
        begin = time.perf_counter()
        images = {}
        for record in chunk:
            try:
                if record.path is None:
                    raise DatasetError(f"{record.filename}: no image path (read the split file with its image folder)")
                images[record.filename] = read_image(record.path)
            except (DatasetError, OSError) as err:  # a transient OSError: the flow retries the chunk
                reject = Rejected.of(record.filename, err)
                rows[record.filename] = DetectionRow(split, record.filename, "rejected", reject.reason,
                                                     config_digest=digest, transient=reject.transient)
        found = detector.detect(list(images.values())) if images else []
        seconds = round((time.perf_counter() - begin) / max(1, len(images)), 3)
        for filename, boxes in zip(images, found, strict=True):
            rows[filename] = DetectionRow(split, filename, "ok", "", boxes, seconds, digest, hashes[filename])
        if progress is not None:
            progress(len(chunk))
        unsaved += len(chunk)
        if unsaved >= checkpoint_every:  # a killed run keeps what it did
            unsaved = 0
            _write_detections(path, others + [rows[r.filename] for r in unique if r.filename in rows])
    table = DetectionTable(others + [rows[record.filename] for record in unique], path)
    _write_detections(path, table.rows)
    LOG.info("%s: split %r: %s", path, split, table.counts())
    return table


