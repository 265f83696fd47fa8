"""Kill an audit run (SIGKILL) during text detection, again during iGOS++ and again while COVIDx++ is being
built, rerun the same command: it completes, the chunks and images finished before each kill are not
recomputed, the source dataset is byte-identical, and the outputs equal those of an uninterrupted run with
the same seed (conftest's `local_run`)."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmarks.common import tiny_yaml

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("flow-runs")]  # one worker runs every flow run
BIN = Path(sys.executable).parent


def start(config: Path, run_dir: Path, env: dict, cwd: Path | None = None, *options: str) -> subprocess.Popen:
    """`cxr-audit demo [options]` into `run_dir` (relative to `cwd`, default the run folder's parent)."""
    cwd = cwd or run_dir.parent
    out = os.path.relpath(run_dir, cwd)
    return subprocess.Popen([str(BIN / "cxr-audit"), "demo", "--config", str(config), "--out", out, *options], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=cwd)


def kill_when(process: subprocess.Popen, ready, timeout: float = 600, poll: float = 0.1) -> None:
    """SIGKILL the run's whole process group as soon as `ready()` holds (checked every `poll` seconds)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"the run ended before the kill point: {process.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "kill point not reached"
        time.sleep(poll)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_killed_three_times_then_resumed_equals_an_uninterrupted_run(local_run, tmp_path):
    local_dir, local_summary = local_run
    config = tiny_yaml(tmp_path / "tiny.yaml")
    # COVIDx++ writes its manifest every 2 images (not 50), so a kill lands between two checkpoints;
    # checkpoint_every decides no pixel, so the outputs still equal local_run's.
    settings = yaml.safe_load(config.read_text())
    settings.setdefault("clean", {})["checkpoint_every"] = 2
    config.write_text(yaml.safe_dump(settings))
    run_dir = tmp_path / "run"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "OMP_NUM_THREADS": "1"}
    env.pop("PREFECT_API_URL", None)
    chunks = run_dir / "text" / "chunks"

    kill_when(start(config, run_dir, env), lambda: len(list(chunks.glob("*.csv"))) >= 2)
    # Contents, not mtimes: a kill between writing a chunk and Prefect persisting the task's result makes the
    # rerun call detect_split again, which keeps every finished row (nothing re-detected) and rewrites the file.
    detected = {path.name: path.read_bytes() for path in chunks.glob("*.csv")}
    assert not (run_dir / "text" / "detections.csv").exists()
    source = digests(run_dir / "data")

    first_map = run_dir / "explain" / "a" / "chunk_0.npz"
    kill_when(start(config, run_dir, env), first_map.is_file)
    explained = first_map.stat().st_mtime_ns
    assert not (run_dir / "explain" / "a" / "index.csv").exists()

    manifest = run_dir / "covidx_pp" / "manifest.csv"
    kill_when(start(config, run_dir, env), manifest.is_file, poll=0.005)
    partial = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    assert not (run_dir / "models" / "b.safetensors").exists()
    built = {row.output: (run_dir / "covidx_pp" / row.output).stat().st_mtime_ns for row in partial.itertuples()}

    # A scheduled rerun may start elsewhere: --out is then another relative path to the same folder.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    final = start(config, run_dir, env, cwd=elsewhere)
    _, errors = final.communicate(timeout=900)
    assert final.returncode == 0, errors[-3000:]
    assert {name: (chunks / name).read_bytes() for name in detected} == detected
    assert first_map.stat().st_mtime_ns == explained
    assert 0 < len(partial) < len(pd.read_csv(manifest)), "the kill should fall inside the COVIDx++ build"
    assert {output: (run_dir / "covidx_pp" / output).stat().st_mtime_ns for output in built} == built
    assert digests(run_dir / "data") == source
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["a"] == local_summary["a"] and summary["b"] == local_summary["b"]
    for name in ["predictions/b_test_decorrelated.csv", "audit/a.csv", "covidx_pp/manifest.csv"]:
        pd.testing.assert_frame_equal(pd.read_csv(local_dir / name), pd.read_csv(run_dir / name), check_exact=False,
                                      rtol=1e-4, atol=1e-6)
    assert not [p for p in run_dir.rglob(".*") if p.is_file() and ".prefect" not in p.parts]  # no temporaries
