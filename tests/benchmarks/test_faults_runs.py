"""The fault-run benchmark runs end to end on kinds that need no baseline run (refused before any work): a
bad config, a bad usage and `report` on a folder that is not a run; its table has one row per kind."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
KINDS = ("unknown-key", "same-stem-test-splits", "report-not-a-run")


def test_cheap_fault_kinds_write_their_rows(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks.faults", "--only", ",".join(KINDS), "--work",
                             str(tmp_path / "work"), "--out-dir", str(tmp_path)], capture_output=True, text=True,
                            timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]

    rows = {row["kind"]: row for row in json.loads((tmp_path / "faults.json").read_text())["rows"]}
    assert set(rows) == set(KINDS)
    for row in rows.values():
        assert row["code"] == 2 and row["passed"] and row["source_unchanged"], row
        assert row["message"].startswith("error: ") and str(tmp_path) not in row["message"]
    assert not (tmp_path / "work" / "baseline").exists()  # these kinds need no baseline run

    table = (tmp_path / "faults.md").read_text()
    assert "| unknown-key | config | train.epochz: 2 (a typo) |" in table
    assert "epochz" in table.split("| unknown-key |")[1].splitlines()[0]
    assert "| report-not-a-run | run-folder damage |" in table
    assert f"**{len(KINDS)} kinds, {len(KINDS)} passed, 0 failed.**" in table
    assert "nproc " in table  # the machine
