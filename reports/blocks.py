"""The building blocks of the report: paragraphs, tables, figures and sections, read access to a run folder, and
how numbers are shown (3 decimals, p-values to 2 significant digits, intervals with their n)."""

from __future__ import annotations

import base64
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

LOG = logging.getLogger(__name__)

SPLIT_ORDER = ("test", "test_decorrelated", "test_pp")
COLLAPSED_ROWS = 12  # a detail table with more rows is shown collapsed


@dataclass(frozen=True)
class Text:
    """A paragraph."""

    text: str
    kind: str = "text"


@dataclass(frozen=True)
class Code:
    """Preformatted text."""

    text: str
    kind: str = "code"


@dataclass(frozen=True)
class Table:
    """A table of display strings (see `display`), sortable in the HTML."""

    caption: str
    frame: pd.DataFrame
    kind: str = "table"

    @property
    def long(self) -> bool:
        """Shown collapsed in the detail sections (the caption, with its row count, opens it)."""
        return len(self.frame) > COLLAPSED_ROWS

    def html(self) -> str:
        return self.frame.to_html(index=False, classes="sortable", border=0, escape=True)


@dataclass(frozen=True)
class Image:
    """A PNG figure (HTML only); `full_resolution`: shown at its own size, never scaled by the browser."""

    caption: str
    png: bytes
    full_resolution: bool = False
    kind: str = "image"

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


Block = Text | Code | Table | Image


@dataclass
class Section:
    """One numbered report section; `missing` lists the run files whose absence left it not run."""

    number: int
    title: str
    blocks: list[Block] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return f"section-{self.number}"


def split_key(split: str) -> tuple[int, str]:
    """The contract's split order first, other splits after, alphabetically."""
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


class Run:
    """Read access to a run directory's files; a missing or unreadable file reads as None."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def csv(self, relative: str) -> pd.DataFrame | None:
        path = self.root / relative
        if not path.is_file():
            return None
        try:
            return pd.read_csv(path)
        except (OSError, ValueError) as error:  # pandas' parser errors are ValueErrors
            LOG.warning("%s: unreadable (%s): treated as not run", path, error)
            return None

    def text(self, relative: str) -> str | None:
        path = self.root / relative
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def json(self, relative: str) -> dict | None:
        text = self.text(relative)
        try:
            return json.loads(text) if text is not None else None
        except ValueError as error:
            LOG.warning("%s: unreadable JSON (%s)", self.root / relative, error)
            return None

    def npz(self, relative: str) -> dict[str, np.ndarray] | None:
        path = self.root / relative
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}

    def predictions(self, model: str) -> dict[str, pd.DataFrame]:
        """The model's readable predictions per test split, in the contract's split order."""
        found = [path.stem[len(model) + 1:] for path in (self.root / "predictions").glob(f"{model}_*.csv")]
        frames = {split: self.csv(f"predictions/{model}_{split}.csv") for split in sorted(found, key=split_key)}
        return {split: frame for split, frame in frames.items() if frame is not None}


# ---------------------------------------------------------------- formatting


def number(value: object, digits: int = 3) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{value:.{digits}f}"
    return "" if value is None else str(value)


def p_value(value: float) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.2g}"


def with_ci(value: float, low: float, high: float, n: float | None = None) -> str:
    """"value [low, high] (n=N)": a defined value without an interval rests on too few images for one
    (pipeline.compare.MIN_INTERVAL_N) and says so; `n` None: a table written before metrics counted images."""
    interval = f" [{number(low)}, {number(high)}]" if not (math.isnan(low) or math.isnan(high)) else ""
    if n is None or math.isnan(n):
        return number(value) + interval
    if not interval and not math.isnan(value):
        return f"{number(value)} (n={int(n)}: too few images for an interval)"
    return f"{number(value)}{interval} (n={int(n)})"


def interval_cells(metrics: pd.DataFrame) -> list[str]:
    """`with_ci` of every metrics row (with its n when the table has one)."""
    counts = metrics["n"] if "n" in metrics else pd.Series(np.nan, index=metrics.index)
    return [with_ci(value, low, high, n) for value, low, high, n in
            zip(metrics["value"], metrics["ci_low"], metrics["ci_high"], counts, strict=True)]


def display(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as its display string: floats with 3 decimals, p-values with 2 significant digits."""
    shown = frame.copy()
    for column in shown.columns:
        format_cell = p_value if column == "p_value" else number
        shown[column] = [format_cell(value) for value in shown[column].tolist()]
    return shown


def table_block(caption: str, frame: pd.DataFrame) -> Table:
    return Table(caption, display(frame.drop(columns=["patient_id"], errors="ignore")))


def not_run(what: str, *paths: str) -> Text:
    return Text(f"{what}: not run ({', '.join(paths)} missing).")


def source_of(frame: pd.DataFrame) -> pd.Series:
    return frame["source"].fillna("").astype(str).replace("", "(none)")
