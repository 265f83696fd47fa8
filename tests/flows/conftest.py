"""Prefect for the flow tests: a temporary home and a local test server, offline (docs/architecture.md §4.7)."""

import os
from pathlib import Path

import pytest

from benchmarks.common import TINY  # the tiny audit, shared with the fault-run benchmark (benchmarks/faults.py)
from flows.config import RunConfig, load_config
from flows.settings import use_offline_prefect


def tiny_config(run_dir: Path, **runner: object) -> RunConfig:
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
