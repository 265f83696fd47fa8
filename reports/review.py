"""Reviewers' decisions on the films of A's audit (`<run>/review/decisions.csv`) and what they say about the flags.

A reviewer (`cxr-audit review`, flows/review_app.py) marks films "relies on text", "does not" or "unsure". Each
row records the sha256 of the source film it was made on, so a decision counts only while the film is unchanged
(`current_decisions`): an edited film needs review again, and a later run of the same dataset takes over the
decisions of its unchanged films (`carried_decisions`). The file is an append-only log: the last current row of
a film is its decision. Nothing here writes; the app writes the file atomically.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from datasets.atomic import MISSING, file_sha256
from reports import crops

DECISIONS = Path("review") / "decisions.csv"
RELIES, DOES_NOT, UNSURE = "relies on text", "does not", "unsure"
DECISION_VALUES = (RELIES, DOES_NOT, UNSURE)
# source: the film's path relative to the dataset root (config.yaml data.root, or the run's data/ when synthetic).
COLUMNS = ("filename", "split", "source", "image_sha256", "decision", "note", "reviewer", "decided_at",
           "carried_from")
REQUIRED = ("filename", "split", "source", "image_sha256", "decision", "decided_at")
FILM = ["split", "filename"]  # a film of the run
CHANGED = "stale: the film changed since it was reviewed"
GONE = "stale: the film is no longer found"
# The same as pipeline.compare.MIN_INTERVAL_N (reports may not import pipeline; a test checks it).
MIN_INTERVAL_N = 10
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class DecisionsError(ValueError):
    """A decisions file that cannot be used; the message names the file and the line."""


def read_decisions(path: str | Path) -> pd.DataFrame:
    """The rows of a decisions CSV in file order, every column of COLUMNS as text (an empty table when there is no
    file); DecisionsError names the file and line of a missing column or value, an unknown decision, a malformed
    hash or time."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS, dtype=str)
    rows = []
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in REQUIRED if column not in (reader.fieldnames or [])]
            if missing:
                raise DecisionsError(f"{path}:1: missing column(s) {', '.join(missing)}: expected a header with "
                                     f"{', '.join(COLUMNS)}")
            line = reader.line_num + 1
            for row in reader:
                _check(row, f"{path}:{line}")
                rows.append({column: row.get(column) or "" for column in COLUMNS})
                line = reader.line_num + 1
    except (UnicodeDecodeError, csv.Error) as error:
        raise DecisionsError(f"{path}: not a UTF-8 CSV file ({error})") from error
    return pd.DataFrame(rows, columns=COLUMNS, dtype=str)


def _check(row: Mapping[str | None, object], where: str) -> None:
    if None in row:
        raise DecisionsError(f"{where}: more fields than the header has columns")
    for column in REQUIRED:
        if not row.get(column):
            raise DecisionsError(f"{where}: no {column}")
    if row["decision"] not in DECISION_VALUES:
        raise DecisionsError(f"{where}: decision {row['decision']!r} is not one of "
                             f"{', '.join(repr(value) for value in DECISION_VALUES)}")
    if not _SHA256.match(str(row["image_sha256"])):
        raise DecisionsError(f"{where}: image_sha256 {row['image_sha256']!r} is not a sha256 (64 lowercase hex digits)")
    try:
        zone = datetime.fromisoformat(str(row["decided_at"])).tzinfo
    except ValueError:
        zone = None
    if zone is None:
        raise DecisionsError(f"{where}: decided_at {row['decided_at']!r} is not an ISO time with a UTC offset "
                             "(e.g. 2026-12-05T10:00:00+00:00)")


@dataclass(frozen=True)
class Review:
    """Decisions judged against the films as they are now.

    current: per film, its last decision made on the film's present bytes. stale: the films that have decisions
    but none on their present bytes (to review again): the last decision, with `why` (CHANGED or GONE).
    """

    current: pd.DataFrame
    stale: pd.DataFrame


def current_decisions(run_dir: str | Path, decisions: pd.DataFrame | None = None) -> Review:
    """`decisions` (default: the run's review/decisions.csv, `read_decisions`) against the run's source films: a
    decision is current while its image_sha256 equals the sha256 of the film at `source` under the run's dataset
    root (reports.crops.source_root)."""
    run_dir = Path(run_dir)
    if decisions is None:
        decisions = read_decisions(run_dir / DECISIONS)
    root, _ = crops.source_root(run_dir)
    present = {source: file_sha256(crops.safe_join(root, source)) for source in set(decisions["source"])}
    matches = decisions["image_sha256"] == decisions["source"].map(present)
    current = decisions[matches].drop_duplicates(FILM, keep="last")
    decided = pd.MultiIndex.from_frame(current[FILM])
    others = decisions[~matches & ~pd.MultiIndex.from_frame(decisions[FILM]).isin(decided)]
    stale = others.drop_duplicates(FILM, keep="last")
    stale = stale.assign(why=[GONE if present[source] == MISSING else CHANGED for source in stale["source"]])
    return Review(current.reset_index(drop=True), stale.reset_index(drop=True))


def carried_decisions(run_dir: str | Path, earlier_run: str | Path) -> pd.DataFrame:
    """The decisions of `earlier_run` to add to `run_dir`'s, `carried_from` set to the earlier run: for each film
    of the earlier run without a current decision here, its decision on the film's present bytes if it has one (it
    counts here at once), else its last one (it shows here as stale: to review again)."""
    earlier = current_decisions(run_dir, read_decisions(Path(earlier_run) / DECISIONS))
    here = read_decisions(Path(run_dir) / DECISIONS)
    decided = pd.MultiIndex.from_frame(current_decisions(run_dir, here).current[FILM])
    anything = pd.MultiIndex.from_frame(here[FILM])
    rows = pd.concat([earlier.current[~pd.MultiIndex.from_frame(earlier.current[FILM]).isin(decided)],
                      earlier.stale[~pd.MultiIndex.from_frame(earlier.stale[FILM]).isin(anything)]])
    return rows.drop(columns="why").assign(carried_from=str(earlier_run)).reset_index(drop=True)


# ---------------------------------------------------------------- the films to review, the flags against them


def review_order(audit: pd.DataFrame) -> pd.DataFrame:
    """A's audit table in review order: flagged films first, then by text_share and cf_probability_drop
    (highest first), then by filename."""
    ranked = audit.assign(_flagged=audit["flagged"].astype(bool),
                          _drop=pd.to_numeric(audit["cf_probability_drop"], errors="coerce").fillna(-1.0))
    ranked = ranked.sort_values(["_flagged", "text_share", "_drop", "filename"], ascending=[False, False, False, True])
    return ranked.drop(columns=["_flagged", "_drop"]).reset_index(drop=True)


@dataclass(frozen=True)
class Rate:
    """k of n; `value` k / n (None when n < 1); 95 % Wilson interval (None when n < MIN_INTERVAL_N)."""

    k: int
    n: int
    value: float | None
    ci_low: float | None
    ci_high: float | None


def rate(k: int, n: int) -> Rate:
    """k of n as a Rate."""
    if n < 1:
        return Rate(k, n, None, None, None)
    if n < MIN_INTERVAL_N:
        return Rate(k, n, k / n, None, None)
    low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
    return Rate(k, n, k / n, float(low), float(high))


@dataclass(frozen=True)
class FlagReview:
    """A's flags against the reviewers' decisions on the audited films.

    reviewed: audited films with a decision; unsure: those decided "unsure" (left out of both rates).
    precision: flagged films decided "relies on text", of the flagged films decided either way.
    recall: flagged films, of the films decided "relies on text". Films are reviewed flagged first, so unflagged
    films are reviewed less often and this recall is optimistic about the films nobody reviewed.
    """

    reviewed: int
    unsure: int
    precision: Rate
    recall: Rate


def flag_precision_against_review(audit: pd.DataFrame, decisions: pd.DataFrame) -> FlagReview:
    """The flags of `audit` (A's audit table) against `decisions` (the current decisions of the audited split,
    `current_decisions(run).current`), matched on filename; decisions on films not in the audit are ignored."""
    latest = decisions.drop_duplicates("filename", keep="last").set_index("filename")["decision"]
    decided = audit.assign(decision=audit["filename"].astype(str).map(latest)).dropna(subset=["decision"])
    sure = decided[decided["decision"] != UNSURE]
    flagged = sure["flagged"].astype(bool)
    relies = sure["decision"] == RELIES
    return FlagReview(len(decided), int((decided["decision"] == UNSURE).sum()),
                      rate(int((flagged & relies).sum()), int(flagged.sum())),
                      rate(int((flagged & relies).sum()), int(relies.sum())))
