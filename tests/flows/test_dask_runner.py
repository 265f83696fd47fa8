"""The local Dask cluster's set-up: one temporary Prefect server for the CLI and its workers
(flows.settings.one_api_server; the whole path, workers included, runs in test_signals.py), and workers
started without Dask's MALLOC_TRIM_THRESHOLD_ (flows.audit.make_task_runner)."""

import dask
from distributed.nanny import _get_env_variables
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.audit import make_task_runner
from flows.config import RunConfig, RunnerConfig
from flows.settings import one_api_server

PRE_SPAWN = "distributed.nanny.pre-spawn-environ"


def test_a_configured_server_is_kept_and_no_temporary_one_starts():
    running_before = SubprocessASGIServer().running  # an earlier test of this process may have started it
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:1/api"}):
        with one_api_server():
            assert PREFECT_API_URL.value() == "http://127.0.0.1:1/api"
            assert SubprocessASGIServer().running == running_before
        assert PREFECT_API_URL.value() == "http://127.0.0.1:1/api"


def test_without_a_server_the_block_points_at_the_temporary_one():
    started_here = not SubprocessASGIServer().running
    try:
        with temporary_settings(restore_defaults={PREFECT_API_URL}):
            with one_api_server():
                url = PREFECT_API_URL.value()
                server = SubprocessASGIServer()
                assert server.running and url == server.api_url and url.startswith("http://127.0.0.1:")
            assert PREFECT_API_URL.value() is None
    finally:
        if started_here:  # stopped now, not by atexit once pytest has closed the streams it logs to
            SubprocessASGIServer().stop()


def test_local_cluster_workers_start_without_the_malloc_trim_threshold(monkeypatch):
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with dask.config.set({f"{PRE_SPAWN}.MALLOC_TRIM_THRESHOLD_": 65536}):  # Dask's default
        assert "MALLOC_TRIM_THRESHOLD_" in _get_env_variables(PRE_SPAWN)
        runner = make_task_runner(RunConfig(runner=RunnerConfig(dask_workers=2)))
        assert type(runner).__name__ == "DaskTaskRunner"
        # what the nannies will set in each worker's environment (distributed.nanny.Nanny)
        environ = _get_env_variables(PRE_SPAWN)
        assert "MALLOC_TRIM_THRESHOLD_" not in environ and environ["OMP_NUM_THREADS"] == "1"
