"""Prefect for the flow tests: a temporary home and a local test server, offline (docs/environment.md)."""

import os

import pytest

from flows.settings import use_offline_prefect


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A Prefect test harness (temporary database and API server) shared by the flow tests."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    use_offline_prefect()
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
