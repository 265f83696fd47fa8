"""Offline Prefect settings (docs/architecture.md §4.7), applied by the CLI before Prefect is imported.

With PREFECT_API_URL unset, the first flow of a process starts a temporary local API server with SQLite
under PREFECT_HOME; analytics and telemetry off, so no connection leaves the machine, and a generous
start-up timeout for loaded machines. Values the user has already set are kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

OFFLINE = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}


def use_offline_prefect(*, verbose: bool = False) -> None:
    """Set the offline settings where the user has not; unless verbose, silence Prefect's own logs (a failed
    task logs its traceback at ERROR; the CLI prints the error's one-line message itself, and `-v` shows
    everything). The project's own warnings go through Python's logging and are still shown."""
    for name, value in OFFLINE.items():
        os.environ.setdefault(name, value)
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")


@contextmanager
def one_api_server() -> Iterator[None]:
    """Within the block, this process and every process it hands a task to use one Prefect API server.

    With PREFECT_API_URL unset, each process that runs a flow or task starts Prefect's temporary API server of
    its own, so every worker of a local Dask cluster would start one (tens of seconds and a few hundred MB
    each, against the same database). Here the temporary server is started once in this process and the URL
    set for the block; Dask workers receive it with the settings sent along with each task. With
    PREFECT_API_URL set (a real server), nothing changes. The server stops when this process exits.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the process's temporary server (one per process), started if not yet
    server.start()
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield
