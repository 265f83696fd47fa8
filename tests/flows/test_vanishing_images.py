"""Images that disappear or become unreadable in the middle of a run become rejected rows, not a failed run.

The run is a copy of the shared audit run (conftest's `local_run`) with classifier B removed, so the rerun
reuses A and its predictions and then trains B. Just before B is trained, one test_decorrelated image is
deleted and another truncated (the wrapper below is the fault: the real training runs). A predicted both
images, B cannot read them: each is a rejected row naming it, and the paired comparison is made on the
images both classifiers predicted.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from datasets.covidx import read_split
from datasets.synthetic import SPLIT_FILES
from pipeline import train as train_stage
from tests.flows.conftest import tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("flow-runs")]  # uses the shared audit run (local_run)


def test_images_lost_between_classifier_a_and_b_are_rejected_rows(local_run, tmp_path, monkeypatch):
    from flows.audit import run_audit

    run_dir, summary = local_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    for stale in [copy / "models" / "b.safetensors", copy / "models" / "b.json"]:
        stale.unlink()
    split = read_split(copy / "data" / SPLIT_FILES["test_decorrelated"])
    deleted, truncated = (copy / "data" / "test_decorrelated" / record.filename for record in split[:2])
    train = train_stage.train_classifier

    def lose_two_images_before_b(records, out_path, config, **options):
        if Path(out_path).stem == "b":
            deleted.unlink()
            truncated.write_bytes(truncated.read_bytes()[:100])
        return train(records, out_path, config, **options)

    monkeypatch.setattr(train_stage, "train_classifier", lose_two_images_before_b)
    again = run_audit(tiny_config(copy))

    rejected = pd.read_csv(copy / "rejected.csv", dtype=str)
    lost = rejected[rejected.filename.isin([deleted.name, truncated.name])]
    assert set(lost.stage) == {"predict", "compare"}
    assert set(lost[lost.stage == "compare"].filename) == {deleted.name, truncated.name}
    assert "file not found" in lost[(lost.stage == "predict") & (lost.filename == deleted.name)].reason.iloc[0]
    predicted_by_a = pd.read_csv(copy / "predictions" / "a_test_decorrelated.csv", dtype={"filename": str})
    predicted_by_b = pd.read_csv(copy / "predictions" / "b_test_decorrelated.csv", dtype={"filename": str})
    assert {deleted.name, truncated.name} <= set(predicted_by_a.filename)
    assert not {deleted.name, truncated.name} & set(predicted_by_b.filename)
    mcnemar = pd.read_csv(copy / "compare" / "mcnemar.csv")
    paired = mcnemar[(mcnemar.split == "test_decorrelated") & (mcnemar.stratum_kind == "all")]
    assert int(paired.n.iloc[0]) == len(split) - 2
    for measure in ("covid_recall", "accuracy"):  # A and its predictions were reused (macro F1 is the paired one)
        assert again["a"][measure] == summary["a"][measure]
    assert json.loads((copy / "summary.json").read_text())["dataset"] == summary["dataset"]
    since = json.loads((copy / "changes.json").read_text())  # against the shared run's snapshot, copied with it
    assert since["images"]["listed"] == {"added": [], "removed": [], "changed": [f"test_decorrelated/{truncated.name}"],
                                         "unreadable": [f"test_decorrelated/{deleted.name}"]}
    assert since["flags"]["new"] == since["flags"]["gone"] == 0  # A's audit was reused
