"""Offline Prefect settings (docs/architecture.md §4.7), applied by the CLI before Prefect is imported.

With PREFECT_API_URL unset, the first flow of a process starts a temporary local API server with SQLite
under PREFECT_HOME; analytics and telemetry off, so no connection leaves the machine, and a generous
start-up timeout for loaded machines. Values the user has already set are kept.
"""

from __future__ import annotations

import os

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
