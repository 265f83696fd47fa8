"""A run folder opened for review: the films of A's audit in review order, their pictures, and the decisions log.

Read from the run folder (docs/run-directory.md): config.yaml (the dataset root and the audited split), audit/a.csv,
explain/a/ (the iGOS++ maps), text/detections.csv (the boxes) and covidx_pp/manifest.csv (the cleaned copies).
The source films are only read; decisions are appended to review/decisions.csv, written atomically (reports.review
reads and judges them).
"""

from __future__ import annotations

import csv
import io
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from datasets.atomic import MISSING, file_sha256, write_text
from flows.config import ConfigError, load_config
from pipeline.audit import upsample_saliency
from pipeline.clean import CleanError, resolve_splits
from pipeline.explain import ExplainError, load_saliency
from pipeline.text import TextBox, read_detections
from reports import crops
from reports.figures import Panel, panels_png
from reports.review import COLUMNS, DECISION_VALUES, DECISIONS, carried_decisions, read_decisions, review_order

SIDE = 512  # long side (px) of a film in the review picture: every `step`-th pixel of larger films


class ReviewError(ValueError):
    """A run folder that cannot be reviewed, or a decision that cannot be recorded; the message says why."""


@dataclass
class ReviewRun:
    """The films of one run to review (`films`: A's audit table in review order) and where their files are."""

    root: Path
    split: str
    source_root: Path
    image_dir: Path  # the audited split's image folder, relative to source_root
    films: pd.DataFrame
    saliency: Mapping[str, np.ndarray]
    boxes: Mapping[str, list[TextBox]]
    manifest: Mapping[str, pd.Series]  # source → its covidx_pp/manifest.csv row
    reviewer: str
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, run_dir: Path, reviewer: str) -> ReviewRun:
        """The run at `run_dir`; ReviewError when it has no audit of A or its source films are not on this machine.
        A missing iGOS++ map, detection or COVIDx++ copy only leaves its panel empty."""
        try:
            config = load_config(run_dir / "config.yaml")
        except ConfigError as error:
            raise ReviewError(f"{error}: not a run folder's config") from error
        audit_csv = run_dir / "audit" / "a.csv"
        if not audit_csv.is_file():
            raise ReviewError(f"{audit_csv}: not found: the run has no audit of A to review (rerun it to the end)")
        source_root, how = crops.source_root(run_dir)
        source_root = source_root.resolve()  # as the audit resolved it (resolve_splits compares resolved paths)
        split_file = config.data.test_splits[config.data.audit_split]
        try:
            image_dir = next(iter(resolve_splits(source_root, [split_file]).values()))
        except CleanError as error:
            raise ReviewError(f"the source films are not here ({how}): {error}") from error
        try:
            saliency = load_saliency(run_dir / "explain" / "a")
        except ExplainError:
            saliency = {}
        manifest_csv = run_dir / "covidx_pp" / "manifest.csv"
        manifest = pd.read_csv(manifest_csv, dtype=str, keep_default_na=False) if manifest_csv.is_file() else None
        return cls(run_dir, config.data.audit_split, source_root, image_dir.relative_to(source_root),
                   review_order(pd.read_csv(audit_csv, dtype={"filename": str})), saliency,
                   read_detections(run_dir / "text" / "detections.csv", config.data.audit_split),
                   {row["source"]: row for _, row in manifest.iterrows()} if manifest is not None else {}, reviewer)

    def source(self, filename: str) -> str:
        """The film's path relative to the dataset root (the decisions' `source`); KeyError when not audited."""
        if not self.films["filename"].eq(filename).any():
            raise KeyError(filename)
        return (self.image_dir / filename).as_posix()

    def picture(self, filename: str) -> bytes:
        """PNG: the film | A's iGOS++ map over it | the detected text boxes | its COVIDx++ copy (reports.figures);
        films with a long side over SIDE px shown every `step`-th pixel. KeyError or crops.FilmError (a message
        safe to show) when the film cannot be shown."""
        film, cleaned = self._films(filename)
        step = max(1, math.ceil(max(film.shape) / SIDE))
        image = film.display(step=step) / 255.0
        boxes = [(b.x0 / step, b.y0 / step, b.x1 / step, b.y1 / step) for b in self.boxes.get(filename, [])]
        stored = self.saliency.get(filename)
        panels = [Panel("image", image),
                  Panel("iGOS++ overlay (A)", image, upsample_saliency(stored, image.shape))
                  if stored is not None else Panel("no iGOS++ map", image),
                  Panel(f"detected text boxes: {len(boxes)}", image, boxes=boxes),
                  Panel("COVIDx++ (text inpainted)", cleaned.display(step=step) / 255.0)
                  if cleaned is not None else Panel("no COVIDx++ copy", np.ones_like(image))]
        return panels_png(panels)

    def removed(self, filename: str, column: str = "boxes") -> list[crops.Window]:
        """The boxes COVIDx++ removed from the film (the manifest's `column`: also "refused_boxes", "kept_boxes")."""
        row = self.manifest.get(self.source(filename))
        return [crops.as_window(b) for b in crops.parse_boxes(row.get(column))] if row is not None else []

    def crop(self, filename: str) -> bytes | None:
        """PNG: before | after (COVIDx++) at full resolution around the largest removed box (reports.crops), or
        None when no text was removed from the film."""
        removed = self.removed(filename)
        if not removed:
            return None
        film, cleaned = self._films(filename)
        if cleaned is None:
            return None
        left = self.removed(filename, "refused_boxes") + self.removed(filename, "kept_boxes")
        largest = max(removed, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        return crops.png(crops.box_crop(film, cleaned, largest, left)[0])

    def _films(self, filename: str) -> tuple[crops.Film, crops.Film | None]:
        """The source film and its COVIDx++ copy (None when there is none or it cannot be read)."""
        source = self.source(filename)
        row = self.manifest.get(source)
        before = self.source_root / source
        after = self.root / "covidx_pp" / ((row["output"] or source) if row is not None else source)
        try:
            return crops.read_pair(before, after)
        except crops.FilmError:
            return crops.read_film(before), None

    def decide(self, filename: str, decision: str, note: str = "") -> dict[str, str]:
        """Append one decision on the film as it is now (its sha256) to review/decisions.csv; returns the row."""
        if decision not in DECISION_VALUES:
            raise ReviewError(f"decision {decision!r} is not one of {', '.join(DECISION_VALUES)}")
        source = self.source(filename)
        sha256 = file_sha256(self.source_root / source)
        if sha256 == MISSING:
            raise ReviewError(f"{filename}: the film cannot be read from {self.source_root}: nothing recorded")
        row = {"filename": filename, "split": self.split, "source": source, "image_sha256": sha256,
               "decision": decision, "note": note.strip(), "reviewer": self.reviewer,
               "decided_at": datetime.now(UTC).isoformat(timespec="seconds"), "carried_from": ""}
        self.append([row])
        return row

    def carry_from(self, earlier_run: Path) -> pd.DataFrame:
        """Add the earlier run's decisions (reports.review.carried_decisions); returns the rows added."""
        rows = carried_decisions(self.root, earlier_run)
        self.append(rows.to_dict("records"))
        return rows

    def append(self, rows: list[dict[str, str]]) -> None:
        """Write review/decisions.csv again with `rows` after its rows (atomically, one writer at a time)."""
        if not rows:
            return
        path = self.root / DECISIONS
        with self._lock:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows([*read_decisions(path).to_dict("records"), *rows])
            write_text(path, buffer.getvalue())
