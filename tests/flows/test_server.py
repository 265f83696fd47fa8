"""A real Prefect server on loopback (`prefect server start`), `cxr-audit serve` of a config that asks for a
2-worker local Dask cluster, and one run of the served deployment: the server records the flow run, its audit
subflow and their artifacts, the audit ran on Dask, and its outputs equal those of the local runner
(conftest's `local_run`)."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml

from benchmarks.common import tiny_yaml

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("flow-runs")]  # one worker runs every flow run
BIN = Path(sys.executable).parent
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def api(url: str, path: str, body: dict | None = None) -> object:
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`prefect server start` on 127.0.0.1 with its own home; yields (API URL, environment for clients)."""
    home = tmp_path_factory.mktemp("server-home")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
           "PREFECT_API_URL": "", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while True:
        try:
            api(url, "/health")
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("prefect server did not start on loopback within 120 s")
            time.sleep(1)
    yield url, {**env, "PREFECT_API_URL": url}
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def serve(config: Path, env: dict, log: Path) -> subprocess.Popen:
    """`cxr-audit serve` of `config` as the deployment 'scheduled-dataset-audit/t', on a cron that does not fire
    during the test (1 January); output to `log`."""
    with log.open("w") as out:
        return subprocess.Popen([str(BIN / "cxr-audit"), "serve", "--config", str(config), "--cron", "0 0 1 1 *",
                                 "--name", "t"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=Path(__file__).parents[2])


def until(ready, process: subprocess.Popen, log: Path, timeout: float, what: str):
    """Poll `ready()` every second until it returns something true, while `process` (output in `log`) runs."""
    deadline = time.monotonic() + timeout
    while not (found := _unless_busy(ready)):
        assert process.poll() is None, f"cxr-audit serve exited: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s: {log.read_text()[-3000:]}"
        time.sleep(1)
    return found


def _unless_busy(ready):
    """`ready()`, or None when the server answers 5xx (its SQLite database busy on a loaded machine: Prefect's
    own clients retry these too)."""
    try:
        return ready()
    except urllib.error.HTTPError as error:
        if error.code < 500:
            raise
        return None


def flow_run_processes(serve_pid: int) -> list[psutil.Process]:
    """The processes serve started for flow runs (and theirs): its descendants but the resource tracker."""
    found = []
    for child in psutil.Process(serve_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):  # it exited meanwhile
            if "resource_tracker" not in " ".join(child.cmdline()):
                found.append(child)
    return found


def ended(url: str, run_id: str) -> dict | None:
    """The flow run's final state; None while it has not ended."""
    state = api(url, f"/flow_runs/{run_id}")["state"]
    return state if state["type"] in FINAL else None


def test_the_served_deployment_runs_the_audit_on_dask_against_a_real_server(server, local_run, tmp_path):
    url, env = server
    local_dir, local_summary = local_run
    config = tiny_yaml(tmp_path / "tiny.yaml")
    run_dir = tmp_path / "dask"
    settings = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**settings, "run_dir": str(run_dir), "runner": {"dask_workers": 2}}))
    log = tmp_path / "serve.log"
    process = serve(config, env, log)
    try:
        deployment = until(lambda: api(url, "/deployments/filter", {"deployments": {"name": {"any_": ["t"]}}}),
                           process, log, 120, "no deployment 't'")[0]
        run_id = until(lambda: api(url, f"/deployments/{deployment['id']}/create_flow_run", {}), process, log, 120,
                       "the server did not create the flow run")["id"]
        state = until(lambda: ended(url, run_id), process, log, 900, "the flow run did not end")
        assert state["type"] == "COMPLETED", f"{state}: {log.read_text()[-3000:]}"
        # The run's process may still be closing its Dask cluster: serve stopped now would kill it and mark the
        # finished run CANCELLED. Stop serve once that process has exited (serve keeps multiprocessing's resource
        # tracker as a child for its whole life).
        until(lambda: not flow_run_processes(process.pid), process, log, 120, "the flow run's process did not exit")
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)

    # The triggered run by its id (the cron's future runs are scheduled, and cancelled when serve stops), and the
    # audit subflow it ran.
    flows = {flow["id"]: flow["name"] for flow in api(url, "/flows/filter", {})}
    every_run = [(flows[run["flow_id"]], run["state_type"], run["id"]) for run in api(url, "/flow_runs/filter", {})]
    triggered = api(url, f"/flow_runs/{run_id}")
    assert (flows[triggered["flow_id"]], triggered["state_type"]) == ("scheduled-dataset-audit", "COMPLETED"), every_run
    subflows = api(url, "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}})
    assert [(flows[run["flow_id"]], run["state_type"]) for run in subflows] == [("dataset-audit", "COMPLETED")], \
        every_run
    keys = {artifact["key"] for artifact in api(url, "/artifacts/filter", {})}
    assert {"audit-headline", "audit-metrics", "audit-report", "text-detection", "explain-a"} <= keys

    for name in ["predictions/a_test.csv", "predictions/b_test_decorrelated.csv", "audit/a.csv", "compare/mcnemar.csv"]:
        local, distributed = (pd.read_csv(folder / name) for folder in (local_dir, run_dir))
        pd.testing.assert_frame_equal(local, distributed, check_exact=False, rtol=1e-4, atol=1e-6)
    detections = [pd.read_csv(folder / "text/detections.csv").drop(columns="seconds")
                  for folder in (local_dir, run_dir)]
    pd.testing.assert_frame_equal(*detections)
    with np.load(local_dir / "explain/a/chunk_0.npz") as a, np.load(run_dir / "explain/a/chunk_0.npz") as b:
        np.testing.assert_allclose(a["saliency"], b["saliency"], atol=1e-5)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["a"] == local_summary["a"] and summary["b"] == local_summary["b"]
    assert summary["task_runner"].startswith("DaskTaskRunner"), summary["task_runner"]
    # The Dask workers persisted their tasks' results in the run folder's store, none in PREFECT_HOME's.
    assert len(os.listdir(run_dir / ".prefect" / "results")) > 10
    assert not list((Path(env["PREFECT_HOME"]) / "storage").glob("*"))
