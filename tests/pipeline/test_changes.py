"""pipeline.changes: what changed between two completed runs into one folder, on hand-made tables with known
answers, and the snapshot's write / read-back, including a run killed between its two renames."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from datasets.atomic import MISSING
from pipeline.changes import RunSnapshot, inventory_table, read_snapshot, since_last_run, write_snapshot


def audit_table(rows: list[tuple[str, str, float, bool]]) -> pd.DataFrame:
    """(filename, source, text_share, flagged) rows as an audit/a.csv table (label "normal")."""
    return pd.DataFrame([{"filename": f, "source": s, "label": "normal", "text_share": t, "flagged": g}
                         for f, s, t, g in rows])


BEFORE = RunSnapshot(
    inventory_table({"train": [("t1.png", "aa"), ("t2.png", "bb")],
                     "test": [("x1.png", "11"), ("x2.png", "22"), ("x3.png", "33")]}),
    audit_table([("x1.png", "h1", 0.5, True), ("x2.png", "h1", 0.1, False), ("x3.png", "h2", 0.3, True)]),
    "2026-12-01T00:00:00+00:00")


def test_added_removed_changed_unreadable_and_unchanged_images_are_counted_per_split():
    after = inventory_table({"train": [("t1.png", "aa"), ("t3.png", "cc")],  # t2 removed, t3 added
                             "test": [("x1.png", "11"), ("x2.png", "2X"), ("x3.png", MISSING), ("x4.png", MISSING)]})
    images = since_last_run(BEFORE, after, BEFORE.audit)["images"]
    assert {kind: images[kind] for kind in ("added", "removed", "changed", "unreadable", "unchanged")} == {
        "added": 1, "removed": 1, "changed": 1, "unreadable": 2, "unchanged": 2}
    assert images["per_split"] == {"test": {"added": 0, "removed": 0, "changed": 1, "unreadable": 2},
                                   "train": {"added": 1, "removed": 1, "changed": 0, "unreadable": 0}}
    assert images["listed"] == {"added": ["train/t3.png"], "removed": ["train/t2.png"], "changed": ["test/x2.png"],
                                "unreadable": ["test/x3.png", "test/x4.png"]}


def test_new_and_gone_flags_count_only_films_audited_both_times():
    after = audit_table([("x1.png", "h1", 0.5, False), ("x2.png", "h1", 0.4, True), ("x4.png", "h3", 0.9, True)])
    flags = since_last_run(BEFORE, BEFORE.inventory, after)["flags"]
    assert flags == {"audited_both_times": 2, "new": 1, "gone": 1, "listed_new": ["x2.png"],
                     "listed_gone": ["x1.png"]}


def test_per_source_share_and_flag_rate_of_both_runs_with_n_and_none_for_an_absent_source():
    after = audit_table([("x1.png", "h1", 0.2, False), ("x2.png", "h1", 0.4, True), ("x4.png", "", 0.9, True)])
    rows = {row["source"]: row for row in since_last_run(BEFORE, BEFORE.inventory, after)["by_source"]}
    assert rows["h1"] == {"source": "h1", "n_before": 2, "text_share_before": 0.3, "flag_rate_before": 0.5,
                          "n_after": 2, "text_share_after": 0.3, "flag_rate_after": 0.5}
    assert rows["h2"]["n_before"] == 1 and rows["h2"]["n_after"] is None and rows["h2"]["flag_rate_after"] is None
    assert rows["(no source)"]["n_after"] == 1 and rows["(no source)"]["text_share_after"] == 0.9
    json.dumps(rows, allow_nan=False)  # JSON-ready: None, never NaN


def test_identical_runs_change_nothing():
    since = since_last_run(BEFORE, BEFORE.inventory, BEFORE.audit)
    assert since["images"]["unchanged"] == 5
    assert not any(since["images"][kind] for kind in ("added", "removed", "changed", "unreadable"))
    assert since["flags"]["new"] == since["flags"]["gone"] == 0


def test_a_snapshot_reads_back_replaces_the_last_one_and_survives_a_kill_between_renames(tmp_path: Path):
    assert read_snapshot(tmp_path) is None
    audit_csv = tmp_path / "audit.csv"
    BEFORE.audit.assign(patient_id="P1", extra=1).to_csv(audit_csv, index=False)
    first = write_snapshot(tmp_path, BEFORE.inventory, audit_csv)
    back = read_snapshot(tmp_path)
    pd.testing.assert_frame_equal(back.inventory, BEFORE.inventory)
    pd.testing.assert_frame_equal(back.audit, BEFORE.audit)  # only the columns it compares: no patient_id
    assert back.finished_at == first.finished_at

    smaller = BEFORE.inventory.head(2)
    write_snapshot(tmp_path, smaller, audit_csv)
    assert len(read_snapshot(tmp_path).inventory) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.csv", "last_run"]

    (tmp_path / "last_run").rename(tmp_path / "last_run.old")  # killed after the first rename
    assert len(read_snapshot(tmp_path).inventory) == 2
    write_snapshot(tmp_path, BEFORE.inventory, audit_csv)
    assert len(read_snapshot(tmp_path).inventory) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.csv", "last_run"]
