"""The pipeline-scale benchmark runs end to end in its quick setting: the whole audit at two sizes, once on a
2-worker Dask cluster (the quick setting's only worker count), and the per-stage throughput (timings are never
compared with a target here)."""

import json
import math

import pytest

from benchmarks import pipeline_scale as module

pytestmark = pytest.mark.slow  # three `cxr-audit demo` processes, each with its own Prefect server


def test_quick_scale_benchmark_writes_its_tables(tmp_path):
    assert module.main(["--quick", "--out-dir", str(tmp_path)]) == 0

    result = json.loads((tmp_path / "pipeline_scale.json").read_text())
    rows = result["scale"]["rows"]
    assert [row["n"] for row in rows] == list(module.QUICK_SIZES)
    for row in rows:
        assert row["dask_workers"] is None
        assert 0 < row["flow_seconds"] < row["wall_seconds"] and math.isfinite(row["wall_seconds"])
    for key in ("fit_wall", "fit_flow"):
        assert math.isfinite(result["scale"][key]["seconds_per_image"])
        assert math.isfinite(result["scale"][key]["intercept_seconds"])

    local, dask = result["runner"]["local"], result["runner"]["dask"]
    assert local == rows[0] and list(dask) == [str(w) for w in module.QUICK_DASK_WORKERS]
    for workers, row in dask.items():
        assert row["n"] == local["n"] and row["dask_workers"] == int(workers)
        assert row["max_processes"] >= local["max_processes"] + int(workers)  # the workers really ran
        assert set(row["stages"]) == set(local["stages"])  # the same flow, every stage timed
        scaling = result["runner"]["scaling"][workers]
        assert scaling["over_local_wall"] == round(row["wall_seconds"] / local["wall_seconds"], 2)
        per_image = sum(row["stages"][s]["seconds"] for s in module.PER_IMAGE_STAGES)
        assert scaling["per_image_seconds"] == round(per_image, 1) and scaling["speed_up"] is None  # no 1-worker run
    for rates in (result["runner"]["local_in_flow_images_per_second"],
                  *result["runner"]["dask_in_flow_images_per_second"].values()):
        assert set(rates) == set(module.FLOW_IMAGES) and all(math.isfinite(r) and r > 0 for r in rates.values())

    stages = result["stages"]
    assert stages["images"] == local["n_test"]
    for key in ("explain", "detect", "clean_detected", "clean_truth"):
        assert len(stages[key]["seconds"]) == stages["repeats"]
        assert math.isfinite(stages[key]["images_per_second"]) and stages[key]["images_per_second"] > 0
    # With the true boxes every image that has text is inpainted; none is rejected.
    assert stages["clean_counts"]["clean_truth"]["cleaned"] == stages["images_with_true_text"] > 0
    assert stages["clean_counts"]["clean_detected"]["rejected"] == 0

    text = (tmp_path / "pipeline_scale.md").read_text()
    for row in rows:
        assert f"| {row['n']} | {row['n_train']} / {row['n_test']} / {row['n_test']} | {row['wall_seconds']} |" in text
    for workers, row in dask.items():
        assert f"| Dask, {workers} workers × 1 thread | {row['wall_seconds']} |" in text
    assert "| explain | pipeline.explain.explain_split |" in text
    assert "python -m benchmarks.pipeline_scale --quick --out-dir" in text
