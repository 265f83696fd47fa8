"""The COVIDx++ manifest: one row per image of a build (`pipeline.clean.build_clean_dataset`), its CSV form,
and reading and writing `manifest.csv` and `rejected.csv` (columns in docs/run-directory.md).

A manifest that cannot be read (missing columns, bad JSON) reads as empty, so every image is processed again.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from datasets.atomic import write_text
from pipeline.text import TextBox

LOG = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
REJECTED = "rejected.csv"
STATUSES = ("cleaned", "unchanged", "rejected")
_COLUMNS = ("source", "output", "split_files", "status", "reason", "boxes", "kept_boxes", "refused_boxes",
            "masked_pixels", "masked_fraction", "source_sha256", "output_sha256", "config_digest")


@dataclass(frozen=True)
class RefusedBox:
    """A detected box the text guard left in the image, and why (the measured stroke contrast and edges)."""

    box: TextBox
    reason: str

    def to_dict(self) -> dict:
        return {**self.box.to_dict(), "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict) -> RefusedBox:
        return cls(TextBox.from_dict(data), str(data.get("reason", "")))


@dataclass
class ManifestRow:
    """One image of the COVIDx++ build; paths relative to the source and destination roots."""

    source: str
    output: str
    split_files: str
    status: str
    reason: str = ""
    boxes: list[TextBox] = field(default_factory=list)
    kept_boxes: list[TextBox] = field(default_factory=list)
    refused_boxes: list[RefusedBox] = field(default_factory=list)
    masked_pixels: int = 0
    masked_fraction: float = 0.0
    source_sha256: str = ""
    output_sha256: str = ""
    config_digest: str = ""
    reused: bool = False  # not written: True when a rerun found this row done
    transient: bool = False  # not written: a reject that a retry may cure (a rerun retries every rejected row)

    def to_csv(self) -> dict[str, str]:
        values = {**{key: getattr(self, key) for key in _COLUMNS}}
        values["boxes"] = json.dumps([box.to_dict() for box in self.boxes])
        values["kept_boxes"] = json.dumps([box.to_dict() for box in self.kept_boxes])
        values["refused_boxes"] = json.dumps([refused.to_dict() for refused in self.refused_boxes])
        values["masked_fraction"] = f"{self.masked_fraction:.6f}"
        return {key: str(value) for key, value in values.items()}

    @classmethod
    def from_csv(cls, row: Mapping[str, str]) -> ManifestRow:
        return cls(row["source"], row["output"], row["split_files"], row["status"], row["reason"],
                   [TextBox.from_dict(item) for item in json.loads(row["boxes"] or "[]")],
                   [TextBox.from_dict(item) for item in json.loads(row["kept_boxes"] or "[]")],
                   [RefusedBox.from_dict(item) for item in json.loads(row.get("refused_boxes") or "[]")],
                   int(row["masked_pixels"] or 0), float(row["masked_fraction"] or 0), row["source_sha256"],
                   row["output_sha256"], row["config_digest"])


@dataclass
class Manifest:
    """The result of `build_clean_dataset`: one row per image, and where the tables were written."""

    rows: list[ManifestRow]
    path: Path
    rejected_path: Path
    split_files: list[Path]

    def counts(self) -> dict[str, int]:
        """Images per status, plus "reused" (rows a rerun did not redo)."""
        out = {status: sum(row.status == status for row in self.rows) for status in STATUSES}
        out["reused"] = sum(row.reused for row in self.rows)
        return out

    def row(self, source: str) -> ManifestRow:
        """The row of a source path relative to the source root (as written in the split file folder)."""
        for row in self.rows:
            if row.source == source:
                return row
        raise KeyError(source)


def read_manifest(path: Path) -> dict[str, ManifestRow]:
    """The rows of the manifest at `path` by source path; empty when there is none or it is unreadable."""
    if not path.is_file():
        return {}
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return {row["source"]: ManifestRow.from_csv(row) for row in csv.DictReader(handle)}
    except (KeyError, ValueError, json.JSONDecodeError) as err:
        LOG.warning("%s: unreadable manifest (%s): every image is processed again", path, err)
        return {}


def write_manifest(dst: Path, rows: Sequence[ManifestRow]) -> tuple[Path, Path]:
    """Write `dst/manifest.csv` (every row) and `dst/rejected.csv` (the rejected rows) atomically; returns both."""

    def table(selected: Iterable[ManifestRow]) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(row.to_csv() for row in selected)
        return buffer.getvalue()

    manifest = write_text(dst / MANIFEST, table(rows))
    rejected = write_text(dst / REJECTED, table(row for row in rows if row.status == "rejected"))
    return manifest, rejected

