"""What changed since the last run of the same dataset into the same run folder.

A completed run leaves a snapshot of itself in `<run>/last_run/`: the images it read (split, filename, sha256)
and classifier A's audit table. The next completed run compares itself with that snapshot (`since_last_run`)
and then replaces it, so a scheduled audit says which films were added, removed or changed, which films are
newly flagged as text-reliant, and how the text share and the flag rate moved per source. A run that fails
leaves the snapshot alone: the comparison is always between two completed runs.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from datasets.atomic import MISSING, write_text

SNAPSHOT = "last_run"
AUDIT_COLUMNS = ["filename", "source", "label", "text_share", "flagged"]
NO_SOURCE = "(no source)"
LISTED = 20  # filenames listed per kind of change; the counts cover all


@dataclass(frozen=True)
class RunSnapshot:
    """One completed run: `inventory` (split, filename, sha256), `audit` (AUDIT_COLUMNS of audit/a.csv) and when
    it finished (UTC, ISO 8601)."""

    inventory: pd.DataFrame
    audit: pd.DataFrame
    finished_at: str


def inventory_table(images: dict[str, list[tuple[str, str]]]) -> pd.DataFrame:
    """The images a run read: `images` maps a split to (filename, sha256) pairs."""
    rows = [(split, name, digest) for split, pairs in images.items() for name, digest in pairs]
    return pd.DataFrame(rows, columns=["split", "filename", "sha256"])


def read_audit(path: Path) -> pd.DataFrame:
    """The AUDIT_COLUMNS of an audit table (audit/a.csv or a snapshot's copy), names and classes as text."""
    return pd.read_csv(path, dtype={"filename": str, "source": str, "label": str})[AUDIT_COLUMNS]


def read_snapshot(run_dir: Path) -> RunSnapshot | None:
    """The snapshot the last completed run left in `run_dir`, or None (a first run, or a folder from before
    snapshots existed)."""
    folder = run_dir / SNAPSHOT
    if not folder.exists():  # a run killed between write_snapshot's two renames left the previous one here
        folder = run_dir / f"{SNAPSHOT}.old"
    try:
        about = json.loads((folder / "run.json").read_text())
        inventory = pd.read_csv(folder / "inventory.csv", dtype=str, keep_default_na=False)
        audit = read_audit(folder / "audit_a.csv")
    except FileNotFoundError:
        return None
    return RunSnapshot(inventory, audit, about["finished_at"])


def write_snapshot(run_dir: Path, inventory: pd.DataFrame, audit_csv: Path) -> RunSnapshot:
    """Replace `run_dir`'s snapshot with this run's: `inventory` (inventory_table) and A's audit table. The
    files are written to a new folder that then takes the old one's place, so a crash leaves one or the other."""
    audit = read_audit(audit_csv)
    snapshot = RunSnapshot(inventory, audit, datetime.now(UTC).isoformat(timespec="seconds"))
    staging = run_dir / f"{SNAPSHOT}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write_text(staging / "inventory.csv", inventory.to_csv(index=False, lineterminator="\n"))
    write_text(staging / "audit_a.csv", audit.to_csv(index=False, lineterminator="\n"))
    write_text(staging / "run.json", json.dumps({"finished_at": snapshot.finished_at}) + "\n")
    final, old = run_dir / SNAPSHOT, run_dir / f"{SNAPSHOT}.old"
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return snapshot


def since_last_run(previous: RunSnapshot, inventory: pd.DataFrame, audit: pd.DataFrame) -> dict:
    """How this run (its `inventory` and A's `audit` table) differs from `previous`: a JSON-ready dict with
    the images added, removed, changed and listed but now unreadable (sha256 "missing"; per split, counts and
    up to LISTED filenames each), the films
    flagged now but not before and the reverse (among films audited both times), and per source the mean text
    share and flag rate of both runs with their n."""
    return {"previous_finished_at": previous.finished_at,
            "images": _image_changes(previous.inventory, inventory),
            "flags": _flag_changes(previous.audit, audit),
            "by_source": _by_source(previous.audit, audit)}


def _image_changes(before: pd.DataFrame, after: pd.DataFrame) -> dict:
    merged = before.merge(after, on=["split", "filename"], how="outer", suffixes=("_before", "_after"),
                          indicator=True)
    listed_now = merged["_merge"] != "left_only"
    unreadable = listed_now & (merged.sha256_after == MISSING)
    kinds = {"added": (merged["_merge"] == "right_only") & ~unreadable, "removed": merged["_merge"] == "left_only",
             "changed": (merged["_merge"] == "both") & (merged.sha256_before != merged.sha256_after) & ~unreadable,
             "unreadable": unreadable}
    changes: dict = {kind: int(chosen.sum()) for kind, chosen in kinds.items()}
    changes["unchanged"] = int(((merged["_merge"] == "both") & ~kinds["changed"] & ~unreadable).sum())
    changes["per_split"] = {split: {kind: int((chosen & (merged.split == split)).sum())
                                    for kind, chosen in kinds.items()} for split in sorted(set(merged.split))}
    changes["listed"] = {kind: sorted(f"{row.split}/{row.filename}" for row in merged[chosen].itertuples())[:LISTED]
                         for kind, chosen in kinds.items()}
    return changes


def _flag_changes(before: pd.DataFrame, after: pd.DataFrame) -> dict:
    both = before.merge(after, on="filename", suffixes=("_before", "_after"))
    flagged_before, flagged_after = both.flagged_before.astype(bool), both.flagged_after.astype(bool)
    new, gone = both[flagged_after & ~flagged_before], both[flagged_before & ~flagged_after]
    return {"audited_both_times": len(both), "new": len(new), "gone": len(gone),
            "listed_new": sorted(new.filename)[:LISTED], "listed_gone": sorted(gone.filename)[:LISTED]}


def _by_source(before: pd.DataFrame, after: pd.DataFrame) -> list[dict]:
    def per_source(table: pd.DataFrame) -> pd.DataFrame:
        table = table.assign(source=table.source.fillna(NO_SOURCE).replace("", NO_SOURCE),
                             flagged=table.flagged.astype(bool))
        return table.groupby("source").agg(n=("filename", "size"), text_share=("text_share", "mean"),
                                           flag_rate=("flagged", "mean"))

    joined = per_source(before).join(per_source(after), how="outer", suffixes=("_before", "_after"))
    return [{"source": source, **{column: _number(row[column], column.startswith("n_")) for column in joined.columns}}
            for source, row in joined.iterrows()]


def _number(value: float, count: bool) -> float | int | None:
    """A JSON-ready number: None for a source absent from one run, a count as int, a mean to 4 places."""
    if pd.isna(value):
        return None
    return int(value) if count else round(float(value), 4)
