"""Prefect for the flow tests: a temporary home and a local test server, offline (docs/environment.md)."""

import os
from pathlib import Path

import pytest

from flows.config import AuditConfig, load_config
from flows.settings import use_offline_prefect

TINY = {
    "data.synthetic": {"n_train": 36, "n_test": 12, "image_size": 96, "seed": 1},
    "train": {"architecture": "small_cnn", "image_size": 48, "epochs": 2, "batch_size": 8, "schedule": "onecycle",
              "patience": 2, "val_fraction": 0.2},
    "explain": {"mask_size": 7, "iterations": 2, "ig_steps": 2, "chunk_size": 6},
    "text": {"long_side": 384},
    "compare": {"bootstrap": 100, "extra_train_seeds": [1]},
    "audit": {"gallery_size": 2},
}


def tiny_config(run_dir: Path, **runner: object) -> AuditConfig:
    """The tiny audit (about a minute of work) into `run_dir`, with runner settings."""
    return load_config(None, run_dir=run_dir, **TINY, **{f"runner.{k}": v for k, v in runner.items()})


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A Prefect test harness (temporary database and API server) shared by the flow tests."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    use_offline_prefect()
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def local_run(prefect_server, tmp_path_factory):
    """(run folder, summary) of the tiny audit run once with the local task runner."""
    from flows.audit import run_audit

    run_dir = tmp_path_factory.mktemp("runs") / "local"
    return run_dir, run_audit(tiny_config(run_dir))
