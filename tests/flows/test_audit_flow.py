"""The whole audit as a real Prefect flow on a tiny synthetic dataset: every stage, real files, real CRAFT.

One run with the local runner, a rerun that recomputes nothing, and a run on a 2-worker local Dask
cluster that must give the same outputs.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.audit import run_audit
from flows.config import load_config

pytestmark = pytest.mark.slow

TINY = {
    "data.synthetic": {"n_train": 36, "n_test": 12, "image_size": 96, "seed": 1},
    "train": {"architecture": "small_cnn", "image_size": 48, "epochs": 2, "batch_size": 8, "schedule": "onecycle",
              "patience": 2, "val_fraction": 0.2},
    "explain": {"mask_size": 7, "iterations": 2, "ig_steps": 2, "chunk_size": 6},
    "text": {"long_side": 384},
    "compare": {"bootstrap": 100},
    "audit": {"gallery_size": 2},
}
CONTRACT = ["config.yaml", "text/detections.csv", "covidx_pp/manifest.csv", "models/a.safetensors", "models/a.json",
            "models/a_history.csv", "models/b.safetensors", "predictions/a_test.csv", "predictions/b_test.csv",
            "predictions/a_test_decorrelated.csv", "predictions/b_test_pp.csv", "predictions/a_test_pp.csv",
            "explain/a/index.csv", "explain/a/chunk_0.npz", "explain/b/index.csv", "audit/a.csv",
            "audit/a_by_class.csv", "audit/a_by_source.csv", "audit/a_gallery.npz", "audit/b.csv",
            "compare/metrics.csv", "compare/mcnemar.csv", "compare/confusion.csv", "summary.json", "report.html",
            "summary.md"]
SUMMARY_KEYS = ["a", "b", "mcnemar_p", "flag_precision", "flag_recall", "share_roc_auc", "text_share_a",
                "text_share_b", "seconds", "covidx_pp"]


def tiny_config(run_dir: Path, **runner):
    return load_config(None, run_dir=run_dir, **TINY, **{f"runner.{k}": v for k, v in runner.items()})


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def local_run(prefect_server, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "local"
    summary = run_audit(tiny_config(run_dir))
    return run_dir, summary


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


def test_a_rerun_recomputes_nothing_and_never_touches_the_source(local_run):
    run_dir, summary = local_run
    source = digests(run_dir / "data")
    watched = ["models/a.safetensors", "models/b.safetensors", "explain/a/chunk_0.npz", "covidx_pp/manifest.csv",
               "text/chunks/train_0000.csv", "predictions/b_test_pp.csv"]
    before = {name: (run_dir / name).stat().st_mtime_ns for name in watched}
    again = run_audit(tiny_config(run_dir))
    assert {name: (run_dir / name).stat().st_mtime_ns for name in watched} == before
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in summary.items() if k != "seconds"}
    assert digests(run_dir / "data") == source


def test_a_two_worker_dask_cluster_gives_the_same_outputs(local_run, tmp_path):
    run_dir, _ = local_run
    dask_dir = tmp_path / "dask"
    run_audit(tiny_config(dask_dir, dask_workers=2))
    for name in ["predictions/a_test.csv", "predictions/b_test_decorrelated.csv", "audit/a.csv", "text/detections.csv",
                 "compare/mcnemar.csv"]:
        local, distributed = (pd.read_csv(folder / name) for folder in (run_dir, dask_dir))
        pd.testing.assert_frame_equal(local.drop(columns=["seconds"], errors="ignore"),
                                      distributed.drop(columns=["seconds"], errors="ignore"), check_exact=False,
                                      rtol=1e-5)
    with np.load(run_dir / "explain/a/chunk_0.npz") as a, np.load(dask_dir / "explain/a/chunk_0.npz") as b:
        np.testing.assert_allclose(a["saliency"], b["saliency"], atol=1e-5)
