"""The whole audit as a real Prefect flow on a tiny synthetic dataset: every stage, real files, real CRAFT.

One run with the local runner (the `local_run` fixture of conftest.py) and a rerun that recomputes
nothing; test_server.py runs the same audit on a 2-worker Dask cluster against a real Prefect server.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import audit_synthetic
from datasets.synthetic import read_truth
from flows.audit import run_audit
from tests.flows.conftest import tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("flow-runs")]  # one worker runs every flow run

CONTRACT = ["config.yaml", "text/detections.csv", "covidx_pp/manifest.csv", "models/a.safetensors", "models/a.json",
            "models/a_history.csv", "models/b.safetensors", "predictions/a_test.csv", "predictions/b_test.csv",
            "predictions/a_test_decorrelated.csv", "predictions/b_test_pp.csv", "predictions/a_test_pp.csv",
            "explain/a/index.csv", "explain/a/chunk_0.npz", "explain/b/index.csv", "audit/a.csv",
            "audit/a_by_class.csv", "audit/a_by_source.csv", "audit/a_gallery.npz", "audit/b.csv",
            "compare/metrics.csv", "compare/mcnemar.csv", "compare/confusion.csv", "compare/seeds.csv",
            "models/seeds/b_seed1.safetensors", "rejected.csv", "summary.json", "report.html", "summary.md"]
SUMMARY_KEYS = ["a", "b", "mcnemar_p", "flag_precision", "flag_recall", "share_roc_auc", "counterfactual_precision",
                "counterfactual_recall", "truth_share_roc_auc", "text_share_a",
                "text_share_b", "seconds", "covidx_pp"]


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_stage_writes_its_files(local_run):
    run_dir, summary = local_run
    missing = [name for name in CONTRACT if not (run_dir / name).is_file()]
    assert not missing
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk == summary and all(key in summary for key in SUMMARY_KEYS)
    for m in ("a", "b"):
        assert set(summary[m]["covid_recall"]) == {"test", "test_decorrelated", "test_pp"}
    predictions = pd.read_csv(run_dir / "predictions" / "a_test.csv")
    assert len(predictions) == 12 and np.allclose(predictions.filter(like="prob_").sum(axis=1), 1, atol=1e-5)
    assert (run_dir / "report.html").read_text().count("<section") >= 6


def test_the_synthetic_audit_benchmark_reads_a_finished_run(local_run):
    """`python -m benchmarks.audit_synthetic --from-run`: the issue's keys, the counterfactual with the true boxes run
    on exactly the films that carry text, and one row of the CRAFT canvas sweep."""
    run_dir, summary = local_run
    numbers = audit_synthetic.measure(run_dir, upscales=[1.0])
    for key in ("covid_recall_test", "covid_recall_test_decorrelated", "flag_precision", "flag_recall",
                "share_roc_auc", "seconds", "flag_precision_inpainted_truth", "flag_recall_inpainted_truth"):
        assert key in numbers, key
    assert numbers["covid_recall_test"] == summary["a"]["covid_recall"]["test"]
    with_text = sum(bool(item.text_boxes) for item in read_truth(run_dir / "data", "test"))
    assert numbers["truth_boxes_counterfactual_films"] == with_text > 0
    positives = numbers["prediction_changed_without_text"]
    recall = numbers["truth_boxes_counterfactual_recall"]
    assert positives == 0 or (0 <= recall <= 1 and abs(recall * positives - round(recall * positives)) < 1e-3)
    assert numbers["truth_boxes_counterfactual_missed"] == positives - round((recall or 0) * positives)
    [sweep] = numbers["by_upscale"]  # CRAFT run again at 1× the film's side
    assert sweep["upscale"] == 1.0 and 0 <= sweep["films"] <= 12 and sweep["detect_seconds"] > 0
    # The run flags by the counterfactual: against the inpainted truth only the detector can make it miss.
    assert numbers["flag_by"] == summary["flag_by"] == "counterfactual"
    # Films the two truths disagree on account at least for the difference in their positive counts.
    gap = abs(numbers["inpainted_truth_positives"] - numbers["prediction_changed_without_text"])
    assert gap <= numbers["truths_disagree"] <= numbers["images_audited"]


def test_a_rerun_recomputes_nothing_and_never_touches_the_source(local_run):
    run_dir, summary = local_run
    source = digests(run_dir / "data")
    watched = ["models/a.safetensors", "models/b.safetensors", "explain/a/chunk_0.npz", "covidx_pp/manifest.csv",
               "text/chunks/train_0000.csv", "predictions/b_test_pp.csv"]
    before = {name: (run_dir / name).stat().st_mtime_ns for name in watched}
    again = run_audit(tiny_config(run_dir))
    assert {name: (run_dir / name).stat().st_mtime_ns for name in watched} == before
    varies = ("seconds", "since_last_run")
    assert {k: v for k, v in again.items() if k not in varies} == {k: v for k, v in summary.items() if k not in varies}
    since = again["since_last_run"]  # the same data and flags as the run before
    assert {key: value for key, value in since.items() if key != "previous_finished_at"} == {
        "added": 0, "removed": 0, "changed": 0, "unreadable": 0, "new_flags": 0, "flags_gone": 0}
    assert digests(run_dir / "data") == source


def test_timings_cover_every_stage_and_add_up_to_the_summarys_total(local_run):
    run_dir, _ = local_run
    summary = json.loads((run_dir / "summary.json").read_text())  # the last run in the folder (tests rerun it)
    timings = pd.read_csv(run_dir / "timings.csv")
    assert list(timings.stage) == ["prepare data", "text detection", "train A", "predict A", "iGOS++ of A", "audit A",
                                   "COVIDx++", "train B", "predict B", "iGOS++ of B", "audit B", "compare",
                                   "other training seeds", "other", "total"]
    seconds = timings.set_index("stage").seconds
    assert seconds["total"] == summary["seconds"]
    assert abs(seconds.drop("total").sum() - summary["seconds"]) < 0.2
    images = timings.set_index("stage").images
    assert images["text detection"] == summary["dataset"]["train"] + summary["dataset"]["test"]
