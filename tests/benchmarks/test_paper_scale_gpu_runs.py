"""The paper-scale GPU benchmark runs end to end in its --small setting on the CPU: two whole audits by the command
line (masks 7 and 64, the second in the first's folder), every stage timed, the projection by its stated formula,
and a results file that says these are not GPU figures (timings are never compared with a target here)."""

import json

import pytest

from benchmarks import paper_scale_gpu as module

pytestmark = pytest.mark.slow  # two `cxr-audit demo` processes, each with its own Prefect server (~2 min)

STAGES = ("prepare data", "text detection", "train A", "predict A", "iGOS++ of A", "audit A", "COVIDx++", "train B",
          "predict B", "iGOS++ of B", "audit B", "compare", "other")


def test_small_run_times_every_stage_and_projects_by_the_formula(tmp_path):
    out = tmp_path / "paper_scale_gpu.md"
    assert module.main(["--small", "--out", str(out), "--work-dir", str(tmp_path / "work")]) == 0

    result = json.loads(out.with_suffix(".json").read_text())
    n_train, n_test = 60, 12
    assert (result["device"], result["small"], result["reuse"]) == ("cpu", True, True)
    assert (result["n_train"], result["n_test"], result["project_to"]) == (n_train, n_test, [30_000, 400])
    assert result["mask_sizes"] == [7, 64] and [run["mask_size"] for run in result["runs"]] == [7, 64]
    assert result["settings"]["train"]["mixed_precision"] is True  # paper.yaml's GPU options, as run
    assert result["settings"]["explain"]["mode"] == "faithful" and result["settings"]["explain"]["device"] == "cpu"
    for run in result["runs"]:
        assert set(STAGES) <= set(run["stages"])
        assert run["stages"]["text detection"]["images"] == n_train + n_test
        assert run["stages"]["iGOS++ of A"]["images"] == run["stages"]["iGOS++ of B"]["images"] == n_test
        assert run["wall_seconds"] > run["flow_seconds"] > 0 and run["epochs_run"] == {"a": 2, "b": 2}
    # The second mask size ran in the first's folder: its shared stages are the first run's, the maps its own.
    first, second = result["stages"]
    assert second["text detection"] == first["text detection"] == result["runs"][0]["stages"]["text detection"]
    assert second["iGOS++ of A"] == result["runs"][1]["stages"]["iGOS++ of A"]
    assert (tmp_path / "work" / "run" / "explain" / "a" / "index.csv").is_file()  # one folder for both

    for stages, projection, run in zip(result["stages"], result["projection"], result["runs"], strict=True):
        rows = projection["stages"]
        assert "prepare data" not in rows and rows["start-up"]["seconds"] == run["startup_seconds"]
        assert rows["text detection"]["factor"] == pytest.approx((30_000 + 400) / (n_train + n_test), abs=1e-3)
        assert rows["iGOS++ of B"]["seconds"] == pytest.approx(stages["iGOS++ of B"]["seconds"] * 400 / n_test, abs=0.1)
        assert rows["train A"]["seconds"] == pytest.approx(stages["train A"]["seconds"] * 30_000 / n_train, abs=0.1)
        assert rows["other"]["factor"] == 1.0
        assert projection["seconds"] == pytest.approx(sum(row["seconds"] for row in rows.values()), abs=0.2)

    text = out.read_text()
    assert text.startswith("# The paper-scale audit on one GPU (CPU run: NOT GPU figures)")
    assert "are not GPU figures" in text and "python -m benchmarks.paper_scale_gpu --small --out" in text
    assert "| iGOS++ of A | 12 |" in text and "| **total** |" in text
