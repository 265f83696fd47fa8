"""SIGTERM to the CLI during an audit on a local Dask cluster: the CLI dies of the signal and takes every process
it started with it (Prefect's temporary API server and the Dask workers, which report to that one server). That the
rerun of a run killed by a signal resumes is tested in test_resume.py (SIGKILL) and, after SIGTERM, by the
fault benchmark (benchmarks/faults.py)."""

import os
import signal
import time
from contextlib import suppress

import psutil
import pytest

from benchmarks.common import tiny_yaml
from tests.flows.test_resume import start

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("flow-runs")]  # one worker runs every flow run
DASK = ("--dask-workers", "2")


def running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The processes still running (a zombie has ended: only its exit status is left for a parent to read)."""
    out = []
    for process in processes:
        with suppress(psutil.NoSuchProcess):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                out.append(process)
    return out


def command(process: psutil.Process) -> str:
    """The process's command line ("" once it has gone)."""
    with suppress(psutil.Error):
        return " ".join(process.cmdline())
    return ""


def test_sigterm_ends_every_child_process(tmp_path):
    config = tiny_yaml(tmp_path / "tiny.yaml")
    run_dir = tmp_path / "run"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "OMP_NUM_THREADS": "1"}
    env.pop("PREFECT_API_URL", None)
    process = start(config, run_dir, env, None, *DASK)
    try:
        deadline = time.monotonic() + 600
        while not list((run_dir / "text" / "chunks").glob("*.csv")):  # the flow runs: the server is up
            assert process.poll() is None, f"the run ended early: {process.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "text detection did not start"
            time.sleep(0.1)
        children = psutil.Process(process.pid).children(recursive=True)
        servers = [child for child in children if "uvicorn" in command(child)]
        assert len(servers) == 1, f"one Prefect server for the CLI and its Dask workers: {servers}"  # one_api_server
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=30) == -signal.SIGTERM
        deadline = time.monotonic() + 15
        while running(children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not running(children), [command(child) for child in running(children)]
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

