"""The memory benchmark runs end to end in its quick setting: two whole audits by the command line, one row
per N with real measurements (memory and time are never compared with a target here)."""

import json
import math

import pytest

from benchmarks import audit_memory as module

pytestmark = pytest.mark.slow  # two `cxr-audit demo` processes, each with its own Prefect server


def test_quick_memory_benchmark_writes_a_row_per_size(tmp_path):
    assert module.main(["--quick", "--out-dir", str(tmp_path)]) == 0

    result = json.loads((tmp_path / "audit_memory.json").read_text())
    rows = result["rows"]
    assert [row["n"] for row in rows] == list(module.QUICK_SIZES)
    for row in rows:
        assert row["n_train"] + 2 * row["n_test"] == row["n"]
        for key in ("wall_seconds", "flow_seconds", "peak_tree_rss_mb", "peak_flow_process_rss_mb",
                    "kernel_maxrss_mb"):
            assert math.isfinite(row[key]) and row[key] > 0, (row["n"], key, row[key])
        assert row["wall_seconds"] > row["flow_seconds"]
        assert row["peak_tree_rss_mb"] >= row["peak_flow_process_rss_mb"] > 100  # torch alone is more
        assert row["kernel_maxrss_mb"] >= 0.95 * row["peak_flow_process_rss_mb"]  # samples are real RSS
        assert row["max_processes"] >= 2  # the flow and its temporary Prefect server
        assert set(module.STAGES) <= set(row["stages"])  # every stage of the flow ran and was timed
        for stage in row["stages"].values():
            assert stage["tasks"] >= 1 and stage["seconds"] > 0
            assert stage["peak_rss_mb"] is None or stage["peak_rss_mb"] > 0  # None: over before the next sample
        assert row["stages"]["detect-text"]["peak_rss_mb"] > 100  # the long stages are sampled
        assert sum(stage["seconds"] for stage in row["stages"].values()) <= row["flow_seconds"]
    verdict = result["verdict"]
    assert isinstance(verdict["holds"], bool)
    preload = rows[-1]["n_train"] * result["settings"]["train"]["image_size"] ** 2 / 2**20
    assert verdict["limit_mb"] == pytest.approx(module.SLACK * rows[0]["peak_tree_rss_mb"] + 3 * preload, abs=0.2)
    sampled = {name for name in module.STAGES if all(row["stages"][name]["peak_rss_mb"] for row in rows)}
    assert set(verdict["stages"]) == sampled and "detect-text" in sampled
    for name, stage in verdict["stages"].items():
        before = rows[0]["stages"][name]["peak_rss_mb"]
        assert stage["limit_mb"] == pytest.approx(module.STAGE_SLACK * before + 3 * preload, abs=0.2), name
        assert stage["holds"] == (rows[-1]["stages"][name]["peak_rss_mb"] <= stage["limit_mb"]), name
    assert verdict["holds"] == (rows[-1]["peak_tree_rss_mb"] <= verdict["limit_mb"]
                                and all(stage["holds"] for stage in verdict["stages"].values()))
    assert math.isfinite(verdict["slope_mb_per_1000_images"])

    text = (tmp_path / "audit_memory.md").read_text()
    for row in rows:
        assert f"| {row['n']} | {row['n_train']} / {row['n_test']} / {row['n_test']} | {row['wall_seconds']} |" in text
    assert "**Bound: peak tree RSS(N=48)" in text
    assert "python -m benchmarks.audit_memory --quick --out-dir" in text
    assert "| explain-chunk |" in text and "torch 2" in text
